"""The one error hierarchy of the project.

It lives in `pricing`, the lowest layer, so every package can raise it and the
API renders it the same way: `{"code", "message", "extra"}`.
"""

from typing import Any

__all__ = ["ApplicationError", "ValidationFailed", "NotFound", "Conflict"]


class ApplicationError(Exception):
    """An error a user can act on: a stable code, a message naming what to fix."""

    code = "application_error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.extra = extra or {}


class ValidationFailed(ApplicationError):
    code = "validation_failed"


class NotFound(ApplicationError):
    code = "not_found"
    http_status = 404


class Conflict(ApplicationError):
    code = "conflict"
    http_status = 409
