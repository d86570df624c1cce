"""The one DRF exception handler: every error answers {"code", "message", "extra"}; and
the site's 404 and 500 handlers, which answer a path under /api/ that no view took (or
a server error) in the same shape."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from pricing.errors import ApplicationError

__all__ = ["api_not_found", "api_server_error", "application_exception_handler"]

API_PREFIX = "/api/"


def application_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response({"code": exc.code, "message": exc.message, "extra": exc.extra}, status=exc.http_status)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        body = {"code": "validation_failed", "message": "The request is invalid.", "extra": {"fields": response.data}}
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else response.data
        code = getattr(detail, "code", None) or exc.__class__.__name__.lower()
        body = {"code": str(code), "message": str(detail), "extra": {}}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            body["extra"] = {"wait_seconds": int(exc.wait)}
    response.data = body
    if response.status_code == status.HTTP_403_FORBIDDEN and body["code"] == "not_authenticated":
        response.status_code = status.HTTP_401_UNAUTHORIZED
    return response


def api_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler404`: a path under /api/ that names no endpoint, in the one error shape."""
    if request.path.startswith(API_PREFIX):
        body = {"code": "not_found", "message": f"no API endpoint at {request.path}", "extra": {}}
        return JsonResponse(body, status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)


def api_server_error(request: HttpRequest) -> HttpResponse:
    """`handler500`: an API client gets the one error shape, not an HTML page."""
    if request.path.startswith(API_PREFIX):
        body = {"code": "server_error", "message": "the server failed; it is logged", "extra": {}}
        return JsonResponse(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return defaults.server_error(request)
