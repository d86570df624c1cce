"""What a source parser yields, and the one place a ledger line is built.

Parsers turn each record of a source (a CSV line, a page result, a span) into
a `ParsedRecord` holding one or more ledger lines, or a `RejectedRecord`
naming the line, field and reason. Every line goes through `LineBuilder`, so
validation, the event key and the untagged mark are the same for all sources.
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from hashlib import blake2b

from allocation.choices import CORE_TAGS, TAG_FIELDS
from allocation.models import UsageLine
from pricing.errors import ApplicationError
from pricing.money import QUANTITY_LIMIT, parse_decimal

__all__ = [
    "LEDGER_COLUMNS",
    "LineBuilder",
    "ParsedRecord",
    "RejectedRecord",
    "RowError",
    "SourceFormatError",
    "event_key",
    "nonzero_leaves",
    "parse_occurred_at",
    "parse_quantity",
]

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


def parse_occurred_at(value: object, field: str = "occurred_at") -> datetime:
    """An aware UTC datetime from ISO 8601 text or Unix seconds; naive text is UTC."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise RowError(field, "missing")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise RowError(field, f"not an ISO 8601 time: {value!r}") from None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise RowError(field, f"not a Unix time: {value!r}") from None
    if value is None:
        raise RowError(field, "missing")
    raise RowError(field, f"not a time: {value!r}")


def parse_quantity(value: object, field: str = "quantity") -> Decimal:
    if value is None or value == "":
        raise RowError(field, "missing")
    try:
        quantity = parse_decimal(value)
    except ValueError as exc:
        raise RowError(field, str(exc)) from None
    if quantity < 0:
        raise RowError(field, f"negative quantity: {value}")
    if quantity >= QUANTITY_LIMIT:
        raise RowError(field, f"quantity too large: {value}")
    return quantity


class LineBuilder:
    """Builds validated ledger rows (tuples in LEDGER_COLUMNS order) for one batch."""

    def __init__(self, *, batch_id: int, unit_modalities: Mapping[str, str]):
        self.batch_id = batch_id
        self.unit_modalities = unit_modalities

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
    ) -> tuple:
        """One ledger row; `tags` is keyed by tag name (`user`, not `end_user`)."""
        modality = self.unit_modalities.get(unit)
        if modality is None:
            raise RowError("unit", f"unknown unit {unit!r}")
        if not provider:
            raise RowError("provider", "missing")
        tag_values = [""] * len(TAG_COLUMNS)
        if tags:
            for name, value in tags.items():
                if value is None:
                    continue
                slot = _TAG_SLOTS.get(name)
                if slot is None:
                    raise RowError(name, "unknown tag")
                position, limit = slot
                text = value.strip() if isinstance(value, str) else str(value)
                if len(text) > limit:
                    raise RowError(name, f"longer than {limit} characters")
                tag_values[position] = text
        if not tag_values[_MODALITY_POSITION]:
            tag_values[_MODALITY_POSITION] = modality
        texts = (event_id, provider, model, service_tier, tier, context_band)
        for (name, limit), text in zip(_TEXT_LIMITS, texts, strict=True):
            if len(text) > limit:
                raise RowError(name, f"longer than {limit} characters")
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
