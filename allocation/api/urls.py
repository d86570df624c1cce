from django.urls import include, path
from rest_framework.routers import DefaultRouter

from allocation.api import views

# No trailing slashes anywhere in the API: `/api/v1/usage/summary`, `/api/v1/teams/3`.
router = DefaultRouter(trailing_slash=False)
router.register("cost-centers", views.CostCenterViewSet)
router.register("teams", views.TeamViewSet)
router.register("features", views.FeatureViewSet)
router.register("tenants", views.TenantViewSet)
router.register("allocation-runs", views.AllocationRunViewSet, basename="api-allocation-run")
router.register("usage/batches", views.UsageBatchViewSet, basename="api-usage-batch")

urlpatterns = [
    path("usage/events", views.UsageEventsIngestApi.as_view(), name="usage-events"),
    path("usage/summary", views.UsageSummaryApi.as_view(), name="usage-summary"),
    path("usage/tag-coverage", views.TagCoverageApi.as_view(), name="usage-tag-coverage"),
    path("", include(router.urls)),
]
