"""The one error hierarchy of the project.

It lives in `pricing`, the lowest layer, so every package can raise it and the
API renders it the same way: `{"code", "message", "extra"}`.
"""

from typing import Any

__all__ = ["ApplicationError", "Conflict", "NotAllowed", "NotFound", "ValidationFailed"]


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


class NotAllowed(ApplicationError):
    """The actor lacks the role an action takes. One class for every role refusal; its
    code may name the rule (`not_finance_approver`), its message who may instead."""

    code = "not_allowed"
    http_status = 403


class NotFound(ApplicationError):
    code = "not_found"
    http_status = 404


class Conflict(ApplicationError):
    code = "conflict"
    http_status = 409
