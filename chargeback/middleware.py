"""Every page's access rule, checked before its view runs (`allocation/access.py` decides).

The API's views check the same rules themselves, after DRF has authenticated their
tokens (`allocation.api.access.AccessRulePermission`), so this middleware leaves them be.
"""

from collections.abc import Callable

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render

from allocation.access import PERMISSION_HOLDERS, Permission, access_allows, url_rule

__all__ = ["AccessMiddleware"]


class AccessMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        if getattr(view_func, "cls", None) is not None:
            return None  # a DRF view: AccessRulePermission checks it
        match = request.resolver_match
        rule = url_rule(match.url_name if match else None, match.namespace if match else "")
        if rule is None:
            return _refused(request, "This page declares no access rule, so no one may open it.", status=404)
        permission = rule.permission_for(request.method)
        if permission is None:
            return HttpResponseNotAllowed(["GET", "HEAD"] if rule.read else [])
        if permission in (Permission.PUBLIC, Permission.ADMIN_SITE):
            return None  # the admin site checks its own staff flag
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not access_allows(request.user, permission):
            what = "open this page" if request.method in ("GET", "HEAD") else "do this"
            holders = PERMISSION_HOLDERS[permission]
            message = (
                f"{request.user.get_username()} may not {what}: only {holders} may. "
                "Ask a finance approver or the platform team if you need it."
            )
            return _refused(request, message, status=403)
        return None


def _refused(request: HttpRequest, message: str, *, status: int) -> HttpResponse:
    return render(request, "refused.html", {"message": message, "status": status}, status=status)
