"""The audit trail's one writer: every transition of the close calls `audit_record` inside
its own transaction, so the row exists exactly when the change does.

The request id comes from `RequestIdMiddleware` (the `X-Request-ID` a proxy sent, or a
fresh one), so an audit row leads to the access log line of the request that made it.
"""

import re
import uuid
from contextvars import ContextVar

from allocation.access import user_of
from chargeback.models import AuditEvent

__all__ = ["audit_record", "request_id_current", "request_id_set"]

_request_id: ContextVar[str] = ContextVar("chargeback_request_id", default="")
# A proxy's id is kept only when it looks like one: it ends up in pages and logs.
_REQUEST_ID_SHAPE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id_set(presented: str | None) -> str:
    """The request's id: the presented one when it is well formed, else a new one."""
    value = presented if presented and _REQUEST_ID_SHAPE.match(presented) else uuid.uuid4().hex
    _request_id.set(value)
    return value


def request_id_current() -> str:
    return _request_id.get()


def audit_record(
    *, subject: str, subject_id: object, action: str, actor, before: dict, after: dict, reason: str = ""
) -> AuditEvent:
    """Write one audit row (call it inside the transaction that makes the change)."""
    user = user_of(actor)
    name = user.get_username() if user is not None else (str(actor) if actor is not None else "operator command")
    return AuditEvent.objects.create(
        subject=subject,
        subject_id=str(subject_id),
        action=action,
        actor=user,
        actor_name=name[:150],
        request_id=request_id_current(),
        reason=reason,
        before=before,
        after=after,
    )
