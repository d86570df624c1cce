"""The page of unpriced usage, mounted at /pricing/unpriced/ beside the price books."""

from django.urls import path

from . import views_rating

urlpatterns = [
    path("", views_rating.unpriced_usage_report, name="unpriced-usage"),
]
