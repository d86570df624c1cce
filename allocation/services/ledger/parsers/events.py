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
from hashlib import blake2b

from allocation.choices import TAG_FIELDS

from ..image_tiles import image_input_tokens
from ..records import LineBuilder, RowError, parse_occurred_at, parse_quantity

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
    if isinstance(value, bool):
        raise RowError(field, f"not a whole number: {value!r}")
    try:
        number = int(value) if not isinstance(value, str) else int(value.strip())
    except (TypeError, ValueError):
        raise RowError(field, f"not a whole number: {value!r}") from None
    if number <= 0:
        raise RowError(field, f"must be positive: {value!r}")
    return number


def _image_tokens(width: object, height: object, detail: object, model: str, field: str) -> int:
    w = _positive_int(width, f"{field}width")
    h = _positive_int(height, f"{field}height")
    mode = (detail or "auto").strip().lower() if isinstance(detail, str) or detail is None else detail
    try:
        return image_input_tokens(w, h, mode, model)
    except ValueError as exc:
        raise RowError(f"{field}detail", str(exc)) from None


def event_lines(event: Mapping, *, line: int, builder: LineBuilder, raw_identity: str) -> list[tuple]:
    """The ledger rows of one event; raises RowError naming the bad field.

    `raw_identity` keys an event that has no `event_id`: the record's own text,
    so the same record read again is recognised as a duplicate.
    """
    provider = _text(event, "provider")
    if not provider:
        raise RowError("provider", "missing")
    occurred_at = parse_occurred_at(event.get("occurred_at"))
    model = _text(event, "model")
    event_id = _text(event, "event_id") or "sha:" + blake2b(raw_identity.encode(), digest_size=16).hexdigest()
    context_tokens = None
    if event.get("context_tokens") not in (None, ""):
        raw_context = event["context_tokens"]
        context_tokens = 0 if raw_context in (0, "0") else _positive_int(raw_context, "context_tokens")
    tags = {name: _text(event, name) for name in TAG_FIELDS if event.get(name) not in (None, "")}
    common = {
        "source_line": line,
        "event_id": event_id,
        "occurred_at": occurred_at,
        "provider": provider,
        "model": model,
        "service_tier": _text(event, "service_tier"),
        "context_tokens": context_tokens,
        "context_band": _text(event, "context_band"),
        "tags": tags,
    }
    tier = _text(event, "tier")
    quantities = event.get("quantities")
    image_inputs = event.get("image_inputs")
    rows: list[tuple] = []
    if quantities is not None or image_inputs is not None:
        if event.get("unit") not in (None, "") or event.get("quantity") not in (None, ""):
            raise RowError("quantities", "give either unit and quantity, or quantities, not both")
        if quantities is not None and not isinstance(quantities, Mapping):
            raise RowError("quantities", "expected an object of unit: quantity")
        for unit, value in (quantities or {}).items():
            _require_model(model, unit)
            rows.append(
                builder.line(unit=unit, quantity=parse_quantity(value, f"quantities.{unit}"), tier=tier, **common)
            )
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
            rows.append(builder.line(unit="image_input_token", quantity=Decimal(tokens), tier=tier, **common))
        if not rows:
            raise RowError("quantities", "empty: no quantity in the event")
        return rows
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
    rows.append(builder.line(unit=unit, quantity=quantity, tier=tier, **common))
    return rows
