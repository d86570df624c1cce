"""Pages of the usage ledger, mounted at /usage/."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.usage_overview, name="usage-overview"),
    path("batches/", views.usage_batch_list, name="usage-batches"),
    path("batches/<int:batch_id>/", views.usage_batch_detail, name="usage-batch"),
    path("batches/<int:batch_id>/rejections.csv", views.usage_batch_rejections_csv, name="usage-batch-rejections"),
    path("organization/", views.organization, name="organization"),
]
