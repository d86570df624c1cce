"""Our documented event schema, shared by CSV, JSON lines and the gateway API.

An event is a flat object: `occurred_at`, `provider`, `unit` and `quantity`
are required (`model` is blank only for model-less units such as GPU time);
`event_id`, `service_tier`, `tier`, `context_tokens`, `context_band` and the
tags (`team`, `feature`, `environment`, `tenant`, `user`, `session_id`,
`trace_id`, `request_id`, `modality`, `caller`, `project`, `api_key`) are
optional. In JSON an event may carry `quantities` ({unit: quantity}, units
disjoint) instead of `unit` and `quantity`, and `image_inputs`
([{width, height, detail}]) whose image tokens are derived. In CSV an image
input row gives `image_width`, `image_height`, `image_detail` and no quantity.
"""

from collections.abc import Mapping
from decimal import Decimal

from allocation.choices import TAG_FIELDS
from pricing.money import decimal_text

from ..image_tiles import image_input_tokens
from ..records import BIGINT_LIMIT, LineBuilder, RowError, content_event_id, parse_occurred_at, parse_quantity

__all__ = ["EVENT_FIELDS", "IMAGE_FIELDS", "event_lines"]

EVENT_FIELDS: tuple[str, ...] = (
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
    *TAG_FIELDS,
)
IMAGE_FIELDS: tuple[str, ...] = ("image_width", "image_height", "image_detail")
_IMAGE_UNITS = {"image_input_token"}
# Units billed without a model (compute, storage, vector storage).
_MODEL_LESS_UNITS = {"gpu_second", "gb_month", "vector_gb_day", "vector_gb_month", "vector_query", "request"}


def _require_model(model: str, unit: str) -> None:
    if not model and unit not in _MODEL_LESS_UNITS:
        raise RowError("model", f"missing (required for {unit})")


def _text(event: Mapping, field: str) -> str:
    value = event.get(field)
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool | int | float):
        return str(value)
    raise RowError(field, f"expected text, got {type(value).__name__}")


def _positive_int(value: object, field: str) -> int:
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise RowError(field, f"not a whole number: {str(value)[:40]!r}")
    if isinstance(value, str):
        value = value.strip()
        # int() reads '٣' as 3 and refuses more than 4,300 digits with a ValueError
        # of its own; a whole number in a usage file is a few ASCII digits.
        if not (value.isascii() and value.isdigit() and len(value) <= 19):
            raise RowError(field, f"not a whole number: {value[:40]!r}")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise RowError(field, f"not a whole number: {str(value)[:40]!r}") from None
    if number <= 0:
        raise RowError(field, f"must be positive: {str(value)[:40]!r}")
    if number >= BIGINT_LIMIT:
        raise RowError(field, f"too large: {str(value)[:40]}")
    return number


def _image_tokens(width: object, height: object, detail: object, model: str, field: str) -> int:
    w = _positive_int(width, f"{field}width")
    h = _positive_int(height, f"{field}height")
    if not isinstance(detail, str | None):
        raise RowError(f"{field}detail", "expected low, high or auto")
    mode = (detail or "auto").strip().lower()
    try:
        return image_input_tokens(w, h, mode, model)
    except ValueError as exc:
        raise RowError(f"{field}detail", str(exc)) from None


def event_lines(event: Mapping, *, line: int, builder: LineBuilder) -> list[tuple]:
    """The ledger rows of one event; raises RowError naming the bad field.

    An event without `event_id` is keyed by its content in canonical form
    (content_event_id), so the same event read again, however it is spelled,
    is recognised as a duplicate.
    """
    provider = _text(event, "provider")
    if not provider:
        raise RowError("provider", "missing")
    occurred_at = parse_occurred_at(event.get("occurred_at"))
    model = _text(event, "model")
    context_tokens = None
    if event.get("context_tokens") not in (None, ""):
        raw_context = event["context_tokens"]
        context_tokens = 0 if raw_context in (0, "0") else _positive_int(raw_context, "context_tokens")
    tags = {name: _text(event, name) for name in TAG_FIELDS if event.get(name) not in (None, "")}
    service_tier = _text(event, "service_tier")
    context_band = _text(event, "context_band")
    tier = _text(event, "tier")
    quantities = event.get("quantities")
    image_inputs = event.get("image_inputs")
    # (unit, quantity, the field it came from) of each line, all read before any is built.
    leaves: list[tuple[str, Decimal, str]] = []
    if quantities is not None or image_inputs is not None:
        if event.get("unit") not in (None, "") or event.get("quantity") not in (None, ""):
            raise RowError("quantities", "give either unit and quantity, or quantities, not both")
        if quantities is not None and not isinstance(quantities, Mapping):
            raise RowError("quantities", "expected an object of unit: quantity")
        for unit, value in (quantities or {}).items():
            if not isinstance(unit, str):
                raise RowError("quantities", "a unit is not text")
            _require_model(model, unit)
            leaves.append((unit, parse_quantity(value, f"quantities.{unit}"), f"quantities.{unit}"))
        if image_inputs is not None:
            if not isinstance(image_inputs, list):
                raise RowError("image_inputs", "expected a list of {width, height, detail}")
            tokens = 0
            for i, image in enumerate(image_inputs):
                if not isinstance(image, Mapping):
                    raise RowError(f"image_inputs[{i}]", "expected {width, height, detail}")
                prefix = f"image_inputs[{i}]."
                tokens += _image_tokens(image.get("width"), image.get("height"), image.get("detail"), model, prefix)
            if "image_input_token" in (quantities or {}):
                raise RowError("image_inputs", "image_input_token given both as a quantity and as image_inputs")
            _require_model(model, "image_input_token")
            leaves.append(("image_input_token", Decimal(tokens), "image_inputs"))
        if not leaves:
            raise RowError("quantities", "empty: no quantity in the event")
    else:
        unit = _text(event, "unit")
        if not unit:
            raise RowError("unit", "missing")
        raw_quantity = event.get("quantity")
        if unit in _IMAGE_UNITS and raw_quantity in (None, "") and event.get("image_width") not in (None, ""):
            image = (event.get("image_width"), event.get("image_height"), event.get("image_detail"))
            quantity = Decimal(_image_tokens(*image, model, "image_"))
        else:
            quantity = parse_quantity(raw_quantity)
        _require_model(model, unit)
        leaves.append((unit, quantity, "quantity"))
    event_id = _text(event, "event_id") or content_event_id(
        [
            occurred_at.isoformat(),
            provider,
            model,
            service_tier,
            tier,
            "" if context_tokens is None else str(context_tokens),
            context_band,
            *sorted(f"{name}={value}" for name, value in tags.items() if value),
            *sorted(f"{unit}={decimal_text(quantity)}" for unit, quantity, _ in leaves),
        ]
    )
    common = {
        "source_line": line,
        "event_id": event_id,
        "occurred_at": occurred_at,
        "provider": provider,
        "model": model,
        "service_tier": service_tier,
        "context_tokens": context_tokens,
        "context_band": context_band,
        "tags": tags,
        "tier": tier,
    }
    return [
        builder.line(unit=unit, quantity=quantity, quantity_field=field, **common) for unit, quantity, field in leaves
    ]
