"""`Idempotency-Key` on the API's writes: the view's side of
`allocation.services.idempotency`."""

from collections.abc import Callable
from functools import wraps

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

from allocation.services.idempotency import idempotency_begin, idempotency_finish

__all__ = ["IDEMPOTENCY_KEY_PARAMETER", "REPLAYED_HEADER", "idempotent"]

HEADER = "Idempotency-Key"
# On an answer repeated from the key's first use.
REPLAYED_HEADER = "Idempotent-Replayed"

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Makes the write safe to retry: the same key with the same body answers as the first did "
        "(header `Idempotent-Replayed: true`); the same key with another body is a 409 "
        "`idempotency_key_reused`. Keys are per actor. 1 to 255 printable ASCII characters; a UUID will do."
    ),
    pattern=r"^[\x21-\x7e]{1,255}$",
)


def idempotent(handler: Callable) -> Callable:
    """Wrap a DRF view's write: with an `Idempotency-Key`, the write and the answer it
    gets (a refusal too) are kept in one transaction; a server error keeps nothing."""

    @wraps(handler)
    def wrapper(view, request: Request, *args, **kwargs) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        with transaction.atomic():
            row, first = idempotency_begin(
                actor=request.user, key=key, method=request.method, path=request.path, body=request.data
            )
            if not first:
                return Response(row.body, status=row.status_code, headers={REPLAYED_HEADER: "true"})
            try:
                response = handler(view, request, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 (DRF's handler answers what it knows, re-raises the rest)
                response = view.handle_exception(exc)
            idempotency_finish(row, status_code=response.status_code, body=response.data)
        return response

    return wrapper
