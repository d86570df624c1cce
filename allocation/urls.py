from django.urls import path

from . import views

urlpatterns = [
    path("", views.usage_overview, name="usage-overview"),
]
