"""Import list prices from the genai-prices package (PyPI), with their history.

genai-prices prices keys such as `cache_read_mtok` over usage keys that nest
(cache reads inside input tokens). Our ledger holds disjoint leaves, so each
of our units takes the price of the most specific priced genai unit whose
dimensions contain it, exactly as genai-prices itself prices a leaf.
Known gaps (not imported, named in the import's report): models priced by
time of day (their usage stays unpriced), price variants keyed by anything but
batch processing or service tier.
"""

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from importlib.metadata import version as package_version

from django.db import transaction

from pricing.choices import PriceBookKind
from pricing.models import AiModel, PriceBook, Provider

from .price_books import PriceRow, price_book_version_create

__all__ = ["GENAI_UNITS", "GenaiImportResult", "prices_import_genai"]

# Our unit -> the genai-prices usage key whose dimensions it has.
GENAI_UNITS: dict[str, str] = {
    "input_token": "input_text_tokens",
    "cached_input_token": "cache_text_read_tokens",
    "cache_write_token": "cache_text_write_5m_tokens",
    "cache_write_1h_token": "cache_text_write_1h_tokens",
    "output_token": "output_text_tokens",
    "reasoning_token": "output_text_reasoning_tokens",
    "audio_input_token": "input_audio_tokens",
    "cached_audio_input_token": "cache_audio_read_tokens",
    "audio_output_token": "output_audio_tokens",
    "image_input_token": "input_image_tokens",
    "cached_image_input_token": "cache_image_read_tokens",
    "image_output_token": "output_image_tokens",
    "embedding_token": "input_text_tokens",
    "character": "input_characters",
    "transcription_second": "input_audio_seconds",
    "audio_input_second": "input_audio_seconds",
    "audio_output_second": "output_audio_seconds",
    "request": "requests",
}
# Units whose price depends on a unit tier, for tool calls.
GENAI_TIERED_UNITS: dict[tuple[str, str], str] = {
    ("tool_call", "web_search"): "web_searches",
    ("tool_call", "file_search"): "storage_searches",
}
# Dimensions that decide a price more than the modality does, for ties.
_DECISIVE = ("token_type", "cache_ttl", "tool_type")


@dataclass
class GenaiImportResult:
    package_version: str
    providers: int = 0
    models: int = 0
    versions_created: list[str] = field(default_factory=list)
    unchanged_books: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "source": f"genai-prices {self.package_version}",
            "providers": self.providers,
            "models": self.models,
            "versions_created": self.versions_created,
            "unchanged_books": self.unchanged_books,
            "skipped": self.skipped,
        }


def _match_rule(match) -> dict:
    """genai-prices' match clause as our JSON rule."""
    kind = type(match).__name__
    if kind == "ClauseOr":
        return {"or": [_match_rule(part) for part in match.or_]}
    if kind == "ClauseAnd":
        return {"and": [_match_rule(part) for part in match.and_]}
    for attribute in ("equals", "starts_with", "ends_with", "contains", "regex"):
        if hasattr(match, attribute):
            return {attribute: getattr(match, attribute)}
    raise ValueError(f"unknown match clause {kind}")


def _leaf_price(model_price, usage_key: str, registry):
    """The (price, per) genai-prices would charge a leaf of `usage_key`, or None."""
    target = registry.units[usage_key]
    best = None
    for unit in registry.units.values():
        price = getattr(model_price, unit.price_key, None)
        if price is None or not (unit.dimensions.items() <= target.dimensions.items()):
            continue
        rank = (len(unit.dimensions), sum(d in unit.dimensions for d in _DECISIVE))
        if best is None or rank > best[0]:
            best = (rank, price, unit.per)
    return None if best is None else (best[1], best[2])


def _rows_for(model_price, *, provider: str, model: str, service_tier: str, start, end, registry) -> list[PriceRow]:
    from genai_prices.types import TieredPrices

    rows = []
    targets = [(unit, "", key) for unit, key in GENAI_UNITS.items()]
    targets += [(unit, tier, key) for (unit, tier), key in GENAI_TIERED_UNITS.items()]
    for unit, tier, usage_key in targets:
        found = _leaf_price(model_price, usage_key, registry)
        if found is None:
            continue
        price, per = found
        bands = (
            [(0, price.base), *((t.start, t.price) for t in price.tiers)]
            if isinstance(price, TieredPrices)
            else [(0, price)]
        )
        for above, amount in bands:
            rows.append(
                PriceRow(
                    where=f"genai-prices {provider}/{model} {unit}",
                    provider=provider,
                    model=model,
                    unit=unit,
                    amount=Decimal(amount),
                    per=per,
                    service_tier=service_tier,
                    tier=tier,
                    context_above=above,
                    effective_from=start,
                    effective_to=end,
                )
            )
    return rows


def _periods(model_info) -> list[tuple[date | None, date | None, object]]:
    """(from, to, ModelPrice) of each dated price; time-of-day prices are skipped."""
    from genai_prices.types import ModelPrice, StartDateConstraint

    if isinstance(model_info.prices, ModelPrice):
        return [(None, None, model_info.prices)]
    dated = []
    for conditional in model_info.prices:
        if conditional.constraint is None:
            dated.append((None, conditional.prices))
        elif isinstance(conditional.constraint, StartDateConstraint):
            dated.append((conditional.constraint.start_date, conditional.prices))
    dated.sort(key=lambda item: item[0] or date.min)
    return [(start, dated[i + 1][0] if i + 1 < len(dated) else None, prices) for i, (start, prices) in enumerate(dated)]


def _service_tier_of(when: dict[str, str]) -> str | None:
    if when == {"processing": "batch"}:
        return "batch"
    if set(when) == {"service_tier"} and when["service_tier"] not in {"default", "standard", "auto"}:
        return when["service_tier"]
    return None


def _model_rows(model_info, provider_id: str, registry, skipped: list[str]) -> list[PriceRow]:
    from copy import copy

    from genai_prices.types import ConditionalPrice, StartDateConstraint, TimeOfDateConstraint

    conditionals = model_info.prices if isinstance(model_info.prices, list) else []
    if any(isinstance(c, ConditionalPrice) and isinstance(c.constraint, TimeOfDateConstraint) for c in conditionals):
        # Prices by time of day need a dimension our prices lack; importing the
        # all-day price alone would under-charge peak hours, so the model's usage
        # stays unpriced (and reported) until a contract book prices it.
        skipped.append(f"{provider_id}/{model_info.id}: time-of-day prices (not imported: its usage stays unpriced)")
        return []
    rows: list[PriceRow] = []
    periods = _periods(model_info)
    variants = model_info.price_variants or []
    for start, end, standard in periods:
        rows += _rows_for(
            standard,
            provider=provider_id,
            model=model_info.id,
            service_tier="",
            start=start,
            end=end,
            registry=registry,
        )
        for variant in variants:
            tier = _service_tier_of(variant.when)
            if tier is None:
                skipped.append(f"{provider_id}/{model_info.id}: price variant {variant.when}")
                continue
            variant_start = start
            if variant.constraint is not None:
                if not isinstance(variant.constraint, StartDateConstraint):
                    skipped.append(f"{provider_id}/{model_info.id}: time-of-day price variant {variant.when}")
                    continue
                # A dated variant applies from its start date, within this period.
                variant_start = max(start or date.min, variant.constraint.start_date)
                if end is not None and variant_start >= end:
                    continue
            resolved = copy(standard)
            resolved.__dict__.update({k: v for k, v in variant.prices.__dict__.items() if v is not None})
            rows += _rows_for(
                resolved,
                provider=provider_id,
                model=model_info.id,
                service_tier=tier,
                start=variant_start,
                end=end,
                registry=registry,
            )
    # The same tier listed twice by genai-prices (a variant repeating the base) is one price.
    unique = {}
    for row in rows:
        unique.setdefault((*row.key(), row.effective_from), row)
    return list(unique.values())


@transaction.atomic
def prices_import_genai(*, created_by=None) -> GenaiImportResult:
    """Providers, models and a list price book per provider from genai-prices.

    Re-running adds a version only to books whose prices changed.
    """
    from genai_prices.data_snapshot import get_snapshot
    from genai_prices.units import _get_registry

    registry = _get_registry()
    snapshot = get_snapshot()
    result = GenaiImportResult(package_version=package_version("genai-prices"))
    for provider_info in snapshot.providers:
        provider, _ = Provider.objects.update_or_create(code=provider_info.id, defaults={"name": provider_info.name})
        result.providers += 1
        rows: list[PriceRow] = []
        seen_models: set[str] = set()
        for order, model_info in enumerate(provider_info.models):
            if model_info.id in seen_models:
                result.skipped.append(f"{provider_info.id}/{model_info.id}: listed twice, first kept")
                continue
            seen_models.add(model_info.id)
            AiModel.objects.update_or_create(
                provider=provider,
                code=model_info.id,
                defaults={
                    "name": model_info.name or model_info.id,
                    "context_window": model_info.context_window,
                    "match_rule": _match_rule(model_info.match),
                    "match_order": order,
                },
            )
            result.models += 1
            rows += _model_rows(model_info, provider_info.id, registry, result.skipped)
        if not rows:
            continue
        book, _ = PriceBook.objects.get_or_create(
            code=f"{provider_info.id}-list",
            defaults={"name": f"{provider_info.name} list prices", "kind": PriceBookKind.LIST},
        )
        version, created = price_book_version_create(
            book=book, rows=rows, source=result.as_dict()["source"], created_by=created_by, only_if_changed=True
        )
        (result.versions_created if created else result.unchanged_books).append(str(version))
    return result
