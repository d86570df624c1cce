"""The API's one list pagination: `?limit=&offset=`, refused in the one error shape when
it is not a count the database can take.

DRF's own class lets `limit` through unbounded (twenty digits overflow PostgreSQL's
bigint: a 500) and quietly ignores text it cannot read. Here a limit above `MAX_LIMIT`
is a 400 rather than a clamp, so a client that asked for everything learns that it got
a page, not all; its `next` link walks the rest.
"""

import re

from rest_framework import pagination
from rest_framework.request import Request

from pricing.errors import ValidationFailed

__all__ = ["INVALID_PAGINATION", "MAX_LIMIT", "MAX_OFFSET", "LimitOffsetPagination"]

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
