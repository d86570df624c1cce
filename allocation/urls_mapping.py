"""Pages of mapping versions, mounted at /mappings/."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
