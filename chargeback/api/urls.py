"""The one `/api/v1` root: each app contributes its own `api/urls.py`; the schema and
its docs describe them all."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from chargeback.api import views

# No trailing slashes, as in allocation's part: `/api/v1/statements/12/lines`.
router = SimpleRouter(trailing_slash=False)
router.register("periods", views.PeriodViewSet, basename="api-period")
router.register("statements", views.StatementViewSet, basename="api-statement")
router.register("disputes", views.DisputeViewSet, basename="api-dispute")
router.register("journal-entries", views.JournalEntryViewSet, basename="api-journal-entry")

urlpatterns = [
    path("", include("allocation.api.urls")),
    path(
        "journal-entries.csv",
        views.JournalEntryViewSet.as_view({"get": "csv"}),
        name="api-journal-entry-csv",
    ),
    path("", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
