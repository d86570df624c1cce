"""The API's one list pagination: `?limit=&offset=`, refused in the one error shape when
it is not a count the database can take.

DRF's own class lets `limit` through unbounded (twenty digits overflow PostgreSQL's
bigint: a 500) and quietly ignores text it cannot read. Here a limit above `MAX_LIMIT`
is a 400 rather than a clamp, so a client that asked for everything learns that it got
a page, not all; its `next` link walks the rest.
"""

import base64
import binascii
import re
from datetime import datetime

from rest_framework import pagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from chargeback.selectors.journals import after_position
from pricing.errors import ValidationFailed

__all__ = ["INVALID_PAGINATION", "MAX_LIMIT", "MAX_OFFSET", "JournalCursorPagination", "LimitOffsetPagination"]

INVALID_PAGINATION = "invalid_pagination"
MAX_LIMIT = 1000
# SQL's LIMIT and OFFSET are bigints; OFFSET + LIMIT must stay one.
MAX_OFFSET = 2**63 - 1 - MAX_LIMIT
_WHOLE = re.compile(r"[0-9]{1,19}")


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    max_limit = MAX_LIMIT

    def get_limit(self, request: Request) -> int:
        return self._count_from(request, self.limit_query_param, low=1, high=MAX_LIMIT, default=self.default_limit)

    def get_offset(self, request: Request) -> int:
        return self._count_from(request, self.offset_query_param, low=0, high=MAX_OFFSET, default=0)

    @staticmethod
    def _count_from(request: Request, name: str, *, low: int, high: int, default: int) -> int:
        text = request.query_params.get(name)
        if text is None or text == "":
            return default
        value = int(text) if _WHOLE.fullmatch(text) else None
        if value is None or not low <= value <= high:
            raise ValidationFailed(
                f"{name} must be a whole number from {low} to {high}, not {text!r}",
                code=INVALID_PAGINATION,
                extra={"parameter": name, "value": text, "min": low, "max": high},
            )
        return value

    def get_schema_operation_parameters(self, view) -> list[dict]:
        bounds = {self.limit_query_param: (1, MAX_LIMIT), self.offset_query_param: (0, MAX_OFFSET)}
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"] = {**parameter["schema"], "minimum": low, "maximum": high}
        return parameters


class JournalCursorPagination(pagination.BasePagination):
    """Keyset pages of journal entries in (updated_at, id) order: `?cursor=` is the
    position after the last entry of the page before, so a page is the same however many
    entries arrive meanwhile (they come after it, with a later `updated_at`), and an entry
    changed during a pull (acknowledged, say) moves to the end rather than shifting its
    neighbours. `cursor` in the answer is that position even on the last page: a client
    keeps it as its checkpoint and asks from it next time."""

    page_size_query_param = "page_size"
    cursor_query_param = "cursor"
    default_page_size = 100
    max_page_size = 500

    def paginate_queryset(self, queryset, request: Request, view=None) -> list:
        self.request = request
        size = LimitOffsetPagination._count_from(
            request, self.page_size_query_param, low=1, high=self.max_page_size, default=self.default_page_size
        )
        ordered = queryset.order_by("updated_at", "id")
        if position := self._position(request):
            ordered = ordered.filter(after_position(*position))
        rows = list(ordered[: size + 1])
        self.has_next = len(rows) > size
        self.page = rows[:size]
        last = self.page[-1] if self.page else None
        self.cursor = self._encode(last.updated_at, last.pk) if last else request.query_params.get("cursor")
        return self.page

    def get_paginated_response(self, data) -> Response:
        return Response({"next": self._next_link(), "cursor": self.cursor, "results": data})

    def _next_link(self) -> str | None:
        if not self.has_next:
            return None
        url = self.request.build_absolute_uri()
        return replace_query_param(url, self.cursor_query_param, self.cursor)

    def _position(self, request: Request) -> tuple[datetime, int] | None:
        text = request.query_params.get(self.cursor_query_param)
        if not text:
            return None
        try:
            stamp, _, number = base64.urlsafe_b64decode(text.encode("ascii") + b"==").decode("ascii").partition("|")
            position = datetime.fromisoformat(stamp), int(number)
        except (ValueError, UnicodeError, binascii.Error):
            position = None
        if position is None or position[0].tzinfo is None or not 0 < position[1] < 2**63:
            raise ValidationFailed(
                f"cursor {text!r} is not one this API gave",
                code=INVALID_PAGINATION,
                extra={"parameter": self.cursor_query_param, "value": text},
            )
        return position

    @staticmethod
    def _encode(updated_at: datetime, entry_id: int) -> str:
        return base64.urlsafe_b64encode(f"{updated_at.isoformat()}|{entry_id}".encode("ascii")).decode("ascii")

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["next", "cursor", "results"],
            "properties": {
                "next": {
                    "type": "string",
                    "nullable": True,
                    "format": "uri",
                    "description": "The next page, or null",
                    "example": "https://chargeback.example.com/api/v1/journal-entries?period=2026-10&page_size=500"
                    "&cursor=MjAyNi0xMS0wNVQwNjowMDowMi4xMjM0NTYrMDA6MDB8NDE=",
                },
                "cursor": {
                    "type": "string",
                    "nullable": True,
                    "description": "The position after this page's last entry: the checkpoint of an incremental pull",
                    "example": "MjAyNi0xMS0wNVQwNjowMDowMi4xMjM0NTYrMDA6MDB8NDE=",
                },
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "The `cursor` of the page before (opaque)",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Entries per page, 1 to {self.max_page_size} (default {self.default_page_size})",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]
