from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("usage/", include("allocation.urls")),
    path("allocation/", include("allocation.urls_allocation")),
    path("mappings/", include("allocation.urls_mapping")),
    path("pricing/unpriced/", include("allocation.urls_rating")),
    path("pricing/", include("pricing.urls")),
    path("api/v1/", include("allocation.api.urls")),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
