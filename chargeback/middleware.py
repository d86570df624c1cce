"""Requests checked before any view reads them: a NUL byte anywhere is refused, and every
page's access rule is applied (`allocation/access.py` decides).

The API's views check their access rules themselves, after DRF has authenticated their
tokens (`allocation.api.access.AccessRulePermission`), so `AccessMiddleware` leaves them be.
"""

from collections.abc import Callable

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import render

from allocation.access import PERMISSION_HOLDERS, Permission, access_allows, url_rule
from chargeback.services.audit import request_id_set
from pricing.errors import NotAllowed

__all__ = ["NUL_IN_REQUEST", "AccessMiddleware", "RefuseNulBytesMiddleware", "RequestIdMiddleware", "error_page"]

NUL_IN_REQUEST = "nul_in_request"


def error_page(request: HttpRequest, *, title: str, code: str, message: str, status: int) -> HttpResponse:
    """The one error page of the site: what happened, its code, and the way home."""
    context = {"title": title, "error": {"code": code, "message": message}}
    return render(request, "error.html", context, status=status)


class RefuseNulBytesMiddleware:
    """A NUL byte (`%00`) in the path or the query string is a 400 in the one error shape.

    No path or parameter of ours can hold one, and PostgreSQL refuses it in any text it
    is asked to compare: a view that looks a raw parameter up (a cost center's code in
    `?cost_center=`) would answer a 500. One check here covers every page and API view,
    on both databases, including those written later.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        found = _nul_in(request)
        if found is None:
            return self.get_response(request)
        where, parameter = found
        named = where if parameter is None else f"query parameter {parameter!r}"
        error = {
            "code": NUL_IN_REQUEST,
            "message": f"The request's {named} holds a NUL byte (%00), which no path or parameter accepts.",
            "extra": {"where": where} if parameter is None else {"where": where, "parameter": parameter},
        }
        if request.path_info.startswith("/api/"):
            return JsonResponse(error, status=400)
        return error_page(
            request, title="The request could not be read", code=NUL_IN_REQUEST, message=error["message"], status=400
        )


def _nul_in(request: HttpRequest) -> tuple[str, str | None] | None:
    """Where the first NUL is: ("path", None) or ("query", the parameter's name)."""
    if "\x00" in request.path_info:
        return "path", None
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            return "query", name.replace("\x00", "%00")
    return None


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
            return error_page(
                request,
                title="Not found",
                code="no_access_rule",
                message="This page declares no access rule, so no one may open it.",
                status=404,
            )
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
            return error_page(request, title="Not allowed", code=NotAllowed.code, message=message, status=403)
        return None


class RequestIdMiddleware:
    """Gives every request an id (the proxy's `X-Request-ID`, or a new one) that audit rows
    record and the response echoes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.request_id = request_id_set(request.headers.get("X-Request-ID"))
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id
        return response
