"""The site's URLs: each app brings its own pages (`<app>/urls.py`); the one API root
is `chargeback/api/urls.py`."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from chargeback.views import home

urlpatterns = [
    path("", home.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico whatever a page's <link rel="icon"> says.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True), name="favicon"),
    # allocation's /pricing/unpriced/ comes before pricing's /pricing/.
    path("", include("allocation.urls")),
    path("pricing/", include("pricing.urls")),
    path("api/v1/", include("chargeback.api.urls")),
]
