"""Idempotent API writes: a write sent with an `Idempotency-Key` is done once per actor
and key; the same key with the same request answers as the first did, the same key with
another request is refused (409 `idempotency_key_reused`).

The key's row is inserted before the write runs, in the write's transaction. Two
identical requests racing meet at the row's unique index: the second's insert waits for
the first's transaction, then fails, and it reads the answer the first committed. Had
the first failed with a server error, its row went with its transaction and the second
does the write itself.

It lives in `allocation`, the lowest layer that knows actors, so that every app's API
writes take keys the same way (allocation runs, the close, journal entries).
"""

import hashlib
import json
import re
from typing import Any

from django.db import IntegrityError, transaction

from allocation.access import token_of, user_of
from allocation.models import IdempotencyKey
from pricing.errors import Conflict, ValidationFailed

__all__ = [
    "IDEMPOTENCY_KEY_INVALID",
    "IDEMPOTENCY_KEY_REUSED",
    "idempotency_actor",
    "idempotency_begin",
    "idempotency_finish",
    "idempotency_fingerprint",
]

IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
IDEMPOTENCY_KEY_INVALID = "idempotency_key_invalid"
# Printable ASCII, as an HTTP header carries it; a UUID is the usual choice.
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def idempotency_actor(actor) -> str:
    """Whose keys these are: a user's (whatever token or session they come with) or a
    service token's."""
    if (token := token_of(actor)) is not None:
        return f"token:{token.pk}"
    if (user := user_of(actor)) is not None:
        return f"user:{user.pk}"
    raise ValidationFailed("an Idempotency-Key needs a signed-in actor", code=IDEMPOTENCY_KEY_INVALID)


def idempotency_fingerprint(*, method: str, path: str, body: Any) -> str:
    """The request a key was first used for: its method, path and body (keys sorted)."""
    text = json.dumps([method.upper(), path, body], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def idempotency_begin(*, actor, key: str, method: str, path: str, body: Any) -> tuple[IdempotencyKey, bool]:
    """Claim a key for a write inside the caller's transaction: (its row, True) when the
    write is to be done now; (the row with the first answer, False) when it was done.
    Refuses a malformed key, or a key used before for another request."""
    if not _KEY.fullmatch(key):
        raise ValidationFailed(
            "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces (a UUID will do)",
            code=IDEMPOTENCY_KEY_INVALID,
        )
    owner = idempotency_actor(actor)
    fingerprint = idempotency_fingerprint(method=method, path=path, body=body)
    try:
        with transaction.atomic():
            row = IdempotencyKey.objects.create(
                actor=owner, key=key, method=method.upper(), path=path[:500], fingerprint=fingerprint
            )
        return row, True
    except IntegrityError:
        row = IdempotencyKey.objects.get(actor=owner, key=key)
    if row.fingerprint != fingerprint:
        raise Conflict(
            f"Idempotency-Key {key!r} was used for another request ({row.method} {row.path}); "
            "send a new key for a new request",
            code=IDEMPOTENCY_KEY_REUSED,
            extra={"key": key, "method": row.method, "path": row.path},
        )
    return row, False


def idempotency_finish(row: IdempotencyKey, *, status_code: int, body: Any) -> IdempotencyKey:
    """Keep the answer the write got, for the retries to come."""
    row.status_code, row.body = status_code, body
    row.save(update_fields=["status_code", "body"])
    return row
