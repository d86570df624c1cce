"""Pages of allocation runs, mounted at /allocation/."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
