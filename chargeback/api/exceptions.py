"""The one DRF exception handler: every error answers {"code", "message", "extra"}."""

from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from pricing.errors import ApplicationError

__all__ = ["application_exception_handler"]


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
    response.data = body
    if response.status_code == status.HTTP_403_FORBIDDEN and body["code"] == "not_authenticated":
        response.status_code = status.HTTP_401_UNAUTHORIZED
    return response
