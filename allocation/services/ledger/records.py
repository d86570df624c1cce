"""What a source parser yields, and the one place a ledger line is built.

Parsers turn each record of a source (a CSV line, a page result, a span) into
a `ParsedRecord` holding one or more ledger lines, or a `RejectedRecord`
naming the line, field and reason. Every line goes through `LineBuilder`, so
validation, the event key and the untagged mark are the same for all sources.
"""

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from hashlib import blake2b

from django.utils import timezone

from allocation.choices import CORE_TAGS, TAG_FIELDS
from allocation.models import UsageLine
from pricing.errors import ApplicationError
from pricing.money import QUANTITY_DECIMAL_PLACES, QUANTITY_LIMIT, decimal_text, parse_decimal

__all__ = [
    "BIGINT_LIMIT",
    "EARLIEST_USAGE",
    "LEDGER_COLUMNS",
    "MAX_NESTING",
    "nests_too_deep",
    "LineBuilder",
    "ParsedRecord",
    "RejectedRecord",
    "RowError",
    "SourceFormatError",
    "content_event_id",
    "event_key",
    "nonzero_leaves",
    "parse_occurred_at",
    "parse_quantity",
    "record_figures",
    "record_text",
    "require_nesting",
    "storable_text",
    "usage_time_limit",
    "utc_from_unix",
]

# Usage before this is not usage but a zero or garbled time (Unix 0 is 1970).
EARLIEST_USAGE = datetime(2000, 1, 1, tzinfo=UTC)
# The largest value a bigint column (context_tokens) holds, plus one.
BIGINT_LIMIT = 2**63
# How deep a JSON record may nest. Our schema and the providers' nest a few levels;
# deeper is a hostile or broken record, and it would reach Python's recursion limit
# in json.dumps or our readers.
MAX_NESTING = 32

TAG_COLUMNS: tuple[str, ...] = tuple(TAG_FIELDS.values())
LEDGER_COLUMNS: tuple[str, ...] = (
    "event_key",
    "batch_id",
    "source_line",
    "event_id",
    "occurred_at",
    "provider",
    "model",
    "service_tier",
    "unit",
    "quantity",
    "tier",
    "context_tokens",
    "context_band",
    *TAG_COLUMNS,
    "is_untagged",
)
_MAX_LENGTHS: dict[str, int] = {
    f.name: f.max_length for f in UsageLine._meta.concrete_fields if getattr(f, "max_length", None)
}
_CORE_TAG_POSITIONS = tuple(TAG_COLUMNS.index(TAG_FIELDS[t]) for t in CORE_TAGS)
_MODALITY_POSITION = TAG_COLUMNS.index("modality")
# Tag name -> (position among the tag columns, length limit), looked up once per tag.
_TAG_SLOTS: dict[str, tuple[int, int]] = {
    name: (TAG_COLUMNS.index(column), _MAX_LENGTHS[column]) for name, column in TAG_FIELDS.items()
}
_TEXT_LIMITS = tuple(
    (name, _MAX_LENGTHS[name]) for name in ("event_id", "provider", "model", "service_tier", "tier", "context_band")
)


class SourceFormatError(ApplicationError):
    """The source is not in the stated format at all: it is refused whole."""

    code = "source_format"


class RowError(Exception):
    """One record is bad: it is rejected, the rest of the source is kept."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(slots=True)
class ParsedRecord:
    line: int
    lines: list[tuple]
    # The lines as PostgreSQL COPY text (one per line, joined by newlines),
    # when the parser makes it cheaply as it goes (the CSV fast lane); the
    # COPY writer then sends it as it is. It is what the writer makes of `lines`.
    copy_text: str | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class RejectedRecord:
    line: int
    field: str
    reason: str
    raw: str


_KEY_HASH = blake2b(digest_size=16)  # copied per key: cheaper than making one with its parameters


def event_key(provider: str, event_id: str, unit: str, tier: str) -> str:
    """Stable 128-bit key of one quantity of one event, as 32 hex digits."""
    key = _KEY_HASH.copy()
    key.update(f"{provider}\x1f{event_id}\x1f{unit}\x1f{tier}".encode())
    return key.hexdigest()


def content_event_id(parts: Iterable[str]) -> str:
    """The id of a record that has none, from its canonical values (numbers as
    decimal_text, times in UTC, tags and quantities sorted): the same usage written
    differently ('9' or '9.0', keys in another order, another offset) gets the same id."""
    text = "\x1f".join(parts)
    # surrogatepass: a lone surrogate from a JSON escape must not crash the hash; the
    # line builder rejects it as a value the ledger cannot hold.
    return "sha:" + blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def usage_time_limit(now: datetime | None = None) -> datetime:
    """The first moment no longer plausible for usage: the end of tomorrow (UTC), so a
    source a few hours ahead of us is taken, and a year typed wrong is not."""
    today = (now or timezone.now()).astimezone(UTC).date()
    return datetime.combine(today + timedelta(days=2), time.min, tzinfo=UTC)


def parse_occurred_at(value: object, field: str = "occurred_at") -> datetime:
    """An aware UTC datetime from ISO 8601 text or Unix seconds; naive text is UTC.

    Only the form is checked here; LineBuilder checks that it is a plausible time.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise RowError(field, "missing")
        if not text.isascii():
            raise RowError(field, f"not an ISO 8601 time: {storable_text(value, 100)!r}")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise RowError(field, f"not an ISO 8601 time: {value[:100]!r}") from None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:00:00-05:00 is past the calendar's end in UTC
            raise RowError(field, f"outside the calendar in UTC: {text!r}") from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return utc_from_unix(value, field)
    if value is None:
        raise RowError(field, "missing")
    raise RowError(field, f"not a time: {type(value).__name__}")


def utc_from_unix(seconds: int | float, field: str, *, microseconds: int = 0) -> datetime:
    """A UTC datetime from Unix seconds; out of the calendar's range is the record's fault."""
    try:
        return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=microseconds)
    except (OverflowError, OSError, ValueError):
        raise RowError(field, f"not a Unix time: {str(seconds)[:40]}") from None


def storable_text(text: str, limit: int) -> str:
    """`text` as any database stores it, cut to `limit`: NUL and lone surrogates (which
    PostgreSQL refuses) spelled as escapes. For rejections, which keep what was refused."""
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")[:limit]


def _nesting(value: object) -> int:
    """How deep a JSON value nests (a scalar is 0), counted without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            return depth
        stack.extend((child, depth + 1) for child in children)
    return deepest


def nests_too_deep(value: object) -> bool:
    """Whether a JSON value nests deeper than MAX_NESTING levels."""
    return _nesting(value) > MAX_NESTING


def require_nesting(value: object, field: str) -> None:
    """Reject a record nesting deeper than MAX_NESTING levels."""
    if nests_too_deep(value):
        raise RowError(field, f"nested deeper than {MAX_NESTING} levels")


def record_text(value: object, limit: int = 2000) -> str:
    """A record as JSON text with sorted keys, for its rejection's `raw`; never raises."""
    if _nesting(value) > MAX_NESTING:
        return f"(nested deeper than {MAX_NESTING} levels: not shown)"
    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):  # keys of mixed types, from a Python caller
        text = repr(value)[: limit * 2]
    return storable_text(text, limit)


def parse_quantity(value: object, field: str = "quantity") -> Decimal:
    if value is None or value == "":
        raise RowError(field, "missing")
    try:
        quantity = parse_decimal(value)
    except ValueError as exc:
        raise RowError(field, str(exc)) from None
    if quantity < 0:
        raise RowError(field, f"negative quantity: {str(value)[:40]}")
    if quantity >= QUANTITY_LIMIT:
        raise RowError(field, f"quantity too large: {str(value)[:40]}")
    if quantity.as_tuple().exponent < -QUANTITY_DECIMAL_PLACES and quantity != _to_places(quantity):
        raise RowError(field, f"more than {QUANTITY_DECIMAL_PLACES} decimal places: {str(value)[:40]}")
    return quantity


_QUANTUM = Decimal(1).scaleb(-QUANTITY_DECIMAL_PLACES)


def _to_places(quantity: Decimal) -> Decimal:
    return quantity.quantize(_QUANTUM)


def _unstorable(text: str) -> str | None:
    """Why the database could not hold a text value as it is, or None."""
    if "\x00" in text:
        return "holds a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "holds a lone surrogate (not Unicode text)"
    return None


class LineBuilder:
    """Builds validated ledger rows (tuples in LEDGER_COLUMNS order) for one batch."""

    def __init__(self, *, batch_id: int, unit_modalities: Mapping[str, str], now: datetime | None = None):
        self.batch_id = batch_id
        self.unit_modalities = unit_modalities
        # The plausible window of a usage time, fixed for the whole load.
        self.earliest = EARLIEST_USAGE
        self.latest = usage_time_limit(now)

    def check_time(self, occurred_at: datetime, field: str = "occurred_at") -> None:
        if not self.earliest <= occurred_at < self.latest:
            raise RowError(
                field,
                f"{occurred_at:%Y-%m-%d %H:%M:%S} UTC is not a plausible usage time "
                f"(from {self.earliest:%Y-%m-%d} to the end of {self.latest - timedelta(days=1):%Y-%m-%d})",
            )

    def line(
        self,
        *,
        source_line: int,
        event_id: str,
        occurred_at: datetime,
        provider: str,
        model: str,
        unit: str,
        quantity: Decimal,
        service_tier: str = "",
        tier: str = "",
        context_tokens: int | None = None,
        context_band: str = "",
        tags: Mapping[str, str] | None = None,
        time_field: str = "occurred_at",
        quantity_field: str = "quantity",
    ) -> tuple:
        """One ledger row; `tags` is keyed by tag name (`user`, not `end_user`).

        Every value is checked against what the ledger's columns hold, so that a
        value no database would take costs its record, never the load.
        """
        modality = self.unit_modalities.get(unit)
        if modality is None:
            raise RowError("unit", f"unknown unit {storable_text(unit, 100)!r}")
        if not provider:
            raise RowError("provider", "missing")
        self.check_time(occurred_at, time_field)
        if not (quantity.is_finite() and 0 <= quantity < QUANTITY_LIMIT):
            raise RowError(quantity_field, f"{unit} quantity out of range (0 to 10^21): {str(quantity)[:40]}")
        exponent = quantity.as_tuple().exponent
        if exponent < -QUANTITY_DECIMAL_PLACES:
            if quantity != _to_places(quantity):
                raise RowError(
                    quantity_field, f"{unit} quantity has more than {QUANTITY_DECIMAL_PLACES} decimal places"
                )
            quantity = _to_places(quantity)
        elif exponent > 0:  # 1E+3: written out, as COPY and every reader expect
            quantity = quantity.quantize(Decimal(1))
        if context_tokens is not None and not 0 <= context_tokens < BIGINT_LIMIT:
            raise RowError("context_tokens", "out of range")
        tag_values = [""] * len(TAG_COLUMNS)
        if tags:
            for name, value in tags.items():
                if value is None:
                    continue
                slot = _TAG_SLOTS.get(name)
                if slot is None:
                    raise RowError(name, "unknown tag")
                position, limit = slot
                if not isinstance(value, str | int | float):  # bool is an int
                    raise RowError(name, f"expected text, got {type(value).__name__}")
                text = value.strip() if isinstance(value, str) else str(value)
                if len(text) > limit:
                    raise RowError(name, f"longer than {limit} characters")
                if (problem := _unstorable(text)) is not None:
                    raise RowError(name, problem)
                tag_values[position] = text
        if not tag_values[_MODALITY_POSITION]:
            tag_values[_MODALITY_POSITION] = modality
        texts = (event_id, provider, model, service_tier, tier, context_band)
        for (name, limit), text in zip(_TEXT_LIMITS, texts, strict=True):
            if not isinstance(text, str):  # a provider's JSON may hold anything where text is due
                raise RowError(name, f"expected text, got {type(text).__name__}")
            if len(text) > limit:
                raise RowError(name, f"longer than {limit} characters")
            if (problem := _unstorable(text)) is not None:
                raise RowError(name, problem)
        is_untagged = any(not tag_values[i] for i in _CORE_TAG_POSITIONS)
        return (
            event_key(provider, event_id, unit, tier),
            self.batch_id,
            source_line,
            event_id,
            occurred_at,
            provider,
            model,
            service_tier,
            unit,
            quantity,
            tier,
            context_tokens,
            context_band,
            *tag_values,
            is_untagged,
        )


def nonzero_leaves(leaves: list[tuple]) -> list[tuple]:
    """The (unit, quantity, ...) leaves of a record worth a ledger line: the non-zero
    ones, or the first when all are zero, so the record is still accounted for."""
    return [leaf for leaf in leaves if leaf[1]] or leaves[:1]


_UNIT, _QUANTITY, _TIER = (LEDGER_COLUMNS.index(c) for c in ("unit", "quantity", "tier"))


def record_figures(lines: Iterable[tuple]) -> str:
    """A hash of a record's figures, (unit, tier, quantity) of each line in canonical
    form: the same figures however written give the same hash. A provider bucket
    exported again with another hash is restated."""
    parts = sorted(f"{row[_UNIT]}\x1f{row[_TIER]}\x1f{decimal_text(row[_QUANTITY])}" for row in lines)
    return blake2b("\x1e".join(parts).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
