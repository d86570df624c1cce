"""Reads of the pricing catalog: model resolution, the prices in force, quotes.

Price resolution is the one place that decides which price applies to a
quantity: contract over list, the exact service tier and unit tier over the
standard ones, the effective date, and the long-context band. Set-based
rating over the ledger and single-event quotes both go through it.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db.models import Max

from .choices import STANDARD_SERVICE_TIERS, PriceBookKind
from .models import AiModel, ModelAlias, Price, PriceBook, PriceBookVersion, Unit

__all__ = [
    "EventQuote",
    "PriceSegment",
    "QuoteLine",
    "context_band_floor",
    "latest_price_book_versions",
    "model_resolve",
    "price_segments",
    "rate_event",
    "rule_matches",
    "unit_modalities",
]


def unit_modalities() -> dict[str, str]:
    """Each catalog unit's modality, keyed by unit code."""
    return dict(Unit.objects.values_list("code", "modality"))


def rule_matches(rule: Mapping, name: str) -> bool:
    """Whether a model name satisfies a match rule (genai-prices' match logic)."""
    if not rule:
        return False
    if "equals" in rule:
        return name == rule["equals"]
    if "starts_with" in rule:
        return name.startswith(rule["starts_with"])
    if "ends_with" in rule:
        return name.endswith(rule["ends_with"])
    if "contains" in rule:
        return rule["contains"] in name
    if "regex" in rule:
        return re.search(rule["regex"], name) is not None
    if "or" in rule:
        return any(rule_matches(part, name) for part in rule["or"])
    if "and" in rule:
        return all(rule_matches(part, name) for part in rule["and"])
    return False


def model_resolve(*, provider: str, model: str) -> AiModel | None:
    """The catalog model a usage line's (provider, model) names, if any.

    An alias or exact code wins; then each model's match rule in order.
    """
    name = model.strip().lower()
    if not name:
        return None
    alias = ModelAlias.objects.filter(provider__code=provider, alias=name).select_related("model").first()
    if alias is not None:
        return alias.model
    candidates = list(AiModel.objects.filter(provider__code=provider).order_by("match_order", "code"))
    for candidate in candidates:
        if candidate.code.lower() == name:
            return candidate
    for candidate in candidates:
        if rule_matches(candidate.match_rule, name):
            return candidate
    return None


def latest_price_book_versions() -> list[PriceBookVersion]:
    """The newest version of every list and contract book: the prices in force."""
    latest = (
        PriceBookVersion.objects.filter(book__kind__in=[PriceBookKind.LIST, PriceBookKind.CONTRACT])
        .values("book")
        .annotate(number=Max("number"))
    )
    wanted = {(row["book"], row["number"]) for row in latest}
    versions = PriceBookVersion.objects.filter(book__in=[b for b, _ in wanted]).select_related("book")
    return [v for v in versions if (v.book_id, v.number) in wanted]


@dataclass(frozen=True, slots=True)
class PriceSegment:
    """A price in force for [valid_from, valid_to) and requests whose input is
    in (context_above, context_upto]; `context_upto` None is unbounded."""

    valid_from: datetime
    valid_to: datetime
    context_above: int
    context_upto: int | None
    price: Price

    def covers_context(self, context: int) -> bool:
        """The base band (above 0) starts at zero; every other band is exclusive below."""
        above = self.context_above == 0 or context > self.context_above
        return above and (self.context_upto is None or context <= self.context_upto)


_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
_END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)


def _midnight(day: date | None, default: datetime) -> datetime:
    return default if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)


def price_segments(
    *,
    model: AiModel,
    unit: str,
    service_tier: str,
    tier: str,
    start: datetime,
    end: datetime,
    versions: Iterable[PriceBookVersion],
) -> list[PriceSegment]:
    """The prices that apply to a usage key over [start, end), cut where they change.

    Preference: a price for the line's own service tier over the standard one,
    its own unit tier over the any-tier one, then contract over list. Within
    the winner, each context band is a segment of its own.
    """
    svc = "" if service_tier.strip().lower() in STANDARD_SERVICE_TIERS else service_tier
    candidates = [
        p
        for p in Price.objects.filter(
            version__in=list(versions), model=model, unit_id=unit, service_tier__in={svc, ""}, tier__in={tier, ""}
        ).select_related("version__book")
        if _midnight(p.effective_from, _BEGINNING) < end and _midnight(p.effective_to, _END_OF_TIME) > start
    ]
    if not candidates:
        return []
    cuts = {start, end}
    for p in candidates:
        for moment in (_midnight(p.effective_from, _BEGINNING), _midnight(p.effective_to, _END_OF_TIME)):
            if start < moment < end:
                cuts.add(moment)
    ordered = sorted(cuts)
    segments: list[PriceSegment] = []
    for seg_start, seg_end in zip(ordered, ordered[1:], strict=False):
        active = [
            p
            for p in candidates
            if _midnight(p.effective_from, _BEGINNING) <= seg_start
            and _midnight(p.effective_to, _END_OF_TIME) >= seg_end
        ]
        if not active:
            continue

        def rank(p: Price) -> tuple:
            return (p.service_tier == svc, p.tier == tier, p.version.book.kind == PriceBookKind.CONTRACT)

        best = max(rank(p) for p in active)
        bands = sorted((p for p in active if rank(p) == best), key=lambda p: p.context_above)
        for i, band in enumerate(bands):
            upto = bands[i + 1].context_above if i + 1 < len(bands) else None
            segments.append(PriceSegment(seg_start, seg_end, band.context_above, upto, band))
    return segments


_BAND = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*-")


def context_band_floor(band: str) -> int | None:
    """The request size a source's stated band implies: '200k-1M' is above 200,000."""
    match = _BAND.match(band or "")
    if not match:
        return None
    number = Decimal(match.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    return int(number) + 1 if number else 0


@dataclass(frozen=True, slots=True)
class QuoteLine:
    unit: str
    quantity: Decimal
    price: Price | None
    cost: Decimal | None


@dataclass(frozen=True, slots=True)
class EventQuote:
    model: AiModel | None
    lines: list[QuoteLine]

    @property
    def total(self) -> Decimal:
        return sum((line.cost for line in self.lines if line.cost is not None), Decimal(0))

    @property
    def unpriced_units(self) -> list[str]:
        return [line.unit for line in self.lines if line.price is None]


def rate_event(
    *,
    provider: str,
    model: str,
    occurred_at: datetime,
    quantities: Mapping[str, Decimal],
    service_tier: str = "",
    tier: str = "",
    context_tokens: int | None = None,
    context_band: str = "",
    versions: Iterable[PriceBookVersion] | None = None,
) -> EventQuote:
    """The cost of one event at the prices in force at its time (quotes, quotas).

    A unit with no price is listed as unpriced, never priced at $0.
    """
    catalog_model = model_resolve(provider=provider, model=model)
    versions = list(versions) if versions is not None else latest_price_book_versions()
    context = context_tokens if context_tokens is not None else (context_band_floor(context_band) or 0)
    lines = []
    for unit, quantity in quantities.items():
        price = None
        if catalog_model is not None:
            segments = price_segments(
                model=catalog_model,
                unit=unit,
                service_tier=service_tier,
                tier=tier,
                start=occurred_at,
                end=occurred_at + timedelta(microseconds=1),
                versions=versions,
            )
            price = next((seg.price for seg in segments if seg.covers_context(context)), None)
        quantity = Decimal(quantity)
        cost = quantity * price.amount / price.quantum if price is not None else None
        lines.append(QuoteLine(unit, quantity, price, cost))
    return EventQuote(catalog_model, lines)


def price_books_with_latest() -> list[tuple[PriceBook, PriceBookVersion | None]]:
    return [(book, book.latest_version()) for book in PriceBook.objects.all()]
