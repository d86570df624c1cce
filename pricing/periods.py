"""A month, the period of every rating, allocation run, statement and budget.

`Period` is one type for a month across every layer: each interface (a command's
argument, a page's query, an API parameter, a task's argument, a row of a file)
parses the text once with `Period.parse`, which refuses anything but `YYYY-MM`
within `FIRST_PERIOD`..`LAST_PERIOD` with the one error code `invalid_period`;
services and selectors take the value and read its bounds, its first day, the month
before and the month after from it.

It lives in `pricing`, the lowest layer, beside the errors and the money helpers,
so that every package can take it.
"""

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

import django_filters
from django import forms
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pricing.errors import ValidationFailed

__all__ = [
    "FIRST_PERIOD",
    "INVALID_PERIOD",
    "LAST_PERIOD",
    "MonthInput",
    "Period",
    "PeriodFilter",
    "PeriodFormField",
    "PeriodSerializerField",
]

INVALID_PERIOD = "invalid_period"
# Strict: "2026-1" would name the same month as "2026-01" and slip past keys on the text.
_TEXT = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
# A month whose bounds and neighbours a datetime can hold: 0001-01's previous month and
# 9999-12's end are not. `Period.of` holds data to this, the widest a month can be.
_FIRST, _LAST = (1, 2), (9999, 11)
# The months a user may name (`Period.parse`, so every page, form, API field, command and
# file row): wide enough for any real ledger, narrow enough that a typo (0202-05) or a
# probe (9999-12) is refused where it is read rather than reaching a query, a file name
# or a "next month" link. Pages that default to the data's month keep to it as well.
_SANE_FIRST, _SANE_LAST = (2000, 1), (2099, 12)


@dataclass(frozen=True, order=True, slots=True)
class Period:
    """One calendar month in UTC: [start, end)."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not (1 <= self.month <= 12 and 1 <= self.year <= 9999):
            raise ValidationFailed(f"period {self.year:04d}-{self.month:02d} is not a month", code=INVALID_PERIOD)

    @classmethod
    def _checked(cls, year: int, month: int) -> "Period":
        """A month from outside (text, a moment), refused unless its bounds and both
        neighbours are months too."""
        if not _FIRST <= (year, month) <= _LAST:
            text = f"{year:04d}-{month:02d}"
            raise ValidationFailed(
                f"period {text} is out of range: months from {_FIRST[0]:04d}-{_FIRST[1]:02d} "
                f"to {_LAST[0]:04d}-{_LAST[1]:02d}",
                code=INVALID_PERIOD,
                extra={"period": text},
            )
        return cls(year, month)

    @classmethod
    def parse(cls, text: object) -> "Period":
        """The month written `YYYY-MM`; anything else is refused with `invalid_period`."""
        match = _TEXT.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValidationFailed(f"period {text!r} is not YYYY-MM", code=INVALID_PERIOD, extra={"period": text})
        year, month = int(match.group(1)), int(match.group(2))
        if not _SANE_FIRST <= (year, month) <= _SANE_LAST:
            raise ValidationFailed(
                f"period {text} is out of range: months from {FIRST_PERIOD} to {LAST_PERIOD}",
                code=INVALID_PERIOD,
                extra={"period": text, "first": str(FIRST_PERIOD), "last": str(LAST_PERIOD)},
            )
        return cls(year, month)

    @classmethod
    def of(cls, moment: date | datetime) -> "Period":
        """The month holding a day or a moment (a moment in UTC)."""
        if isinstance(moment, datetime) and moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
        return cls._checked(moment.year, moment.month)

    @classmethod
    def current(cls) -> "Period":
        """This month, in UTC."""
        return cls.of(timezone.now())

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    @property
    def start(self) -> datetime:
        """The month's first moment, UTC."""
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The next month's first moment, UTC: the bound the month stops before."""
        return self.next.start

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        return self.start, self.end

    @property
    def previous(self) -> "Period":
        return Period(self.year - 1, 12) if self.month == 1 else Period(self.year, self.month - 1)

    @property
    def next(self) -> "Period":
        return Period(self.year + 1, 1) if self.month == 12 else Period(self.year, self.month + 1)


FIRST_PERIOD = Period(*_SANE_FIRST)
LAST_PERIOD = Period(*_SANE_LAST)


class MonthInput(forms.TextInput):
    """A month input; plain text when it holds what is not a month, because a browser
    blanks a malformed value in a month input and the user would not see what they typed."""

    input_type = "month"

    def __init__(self, attrs: dict | None = None) -> None:
        super().__init__({"pattern": r"\d{4}-\d{2}", "placeholder": "YYYY-MM", **(attrs or {})})

    def get_context(self, name: str, value: object, attrs: dict | None) -> dict:
        context = super().get_context(name, value, attrs)
        if value not in (None, "") and not isinstance(value, Period) and not _TEXT.fullmatch(str(value)):
            context["widget"]["type"] = "text"
        return context


class PeriodFormField(forms.CharField):
    """A page's period: `YYYY-MM` in a month input, cleaned to a `Period`."""

    widget = MonthInput

    def widget_attrs(self, widget: forms.Widget) -> dict:
        # The length a month takes, as a CharField's max_length would say (without its
        # validator, which would measure the cleaned Period).
        return {**super().widget_attrs(widget), "maxlength": "7"}

    def to_python(self, value: object) -> Period | None:
        if isinstance(value, Period):
            return value
        text = super().to_python(value)
        if text in self.empty_values:
            return None
        try:
            return Period.parse(text.strip())
        except ValidationFailed as exc:
            # A page may word it its own way: "invalid" for text that is no month at all,
            # "not_a_month" for YYYY-MM that names none (2026-13); a month out of range,
            # and any wording a page leaves out, keep the parser's message, which names the range.
            month = _TEXT.fullmatch(text.strip()) is not None
            shaped = re.fullmatch(r"\d{4}-\d{2}", text.strip()) is not None
            worded = None if month else self.error_messages.get("not_a_month" if shaped else "invalid")
            message = worded % {"value": text.strip()} if worded else exc.message
            raise forms.ValidationError(message, code=INVALID_PERIOD) from None

    def prepare_value(self, value: object) -> object:
        return str(value) if isinstance(value, Period) else value


# The schema's pattern says the range too (2000-01 .. 2099-12), so a client generating
# periods from it (schemathesis) asks for months the API takes.
_SCHEMA = {"type": "string", "pattern": r"^20\d{2}-(0[1-9]|1[0-2])$"}


@extend_schema_field(_SCHEMA)
class PeriodFilter(django_filters.Filter):
    """A list's `?period=` filter, parsed like every other period (so 9999-12 is a 400
    naming the range, not an empty list); the rows keep their period as `YYYY-MM` text."""

    field_class = PeriodFormField

    def filter(self, qs, value: Period | None):
        return qs if value is None else qs.filter(**{self.field_name: str(value)})


@extend_schema_field(_SCHEMA)
class PeriodSerializerField(serializers.Field):
    """An API period: `YYYY-MM` text in and out. A bad one answers the one error shape
    with code `invalid_period` (the ApplicationError passes DRF's field errors by)."""

    default_error_messages = {"invalid": "period is not YYYY-MM"}

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("help_text", f"YYYY-MM, a month from {FIRST_PERIOD} to {LAST_PERIOD}")
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> Period:
        return Period.parse(data.strip() if isinstance(data, str) else data)

    def to_representation(self, value: Period | str) -> str:
        return str(value)
