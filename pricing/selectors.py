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

from django.db.models import Count, Max, OuterRef, QuerySet, Subquery

from .choices import STANDARD_SERVICE_TIERS, PriceBookKind
from .models import AiModel, ModelAlias, Price, PriceBook, PriceBookVersion, Unit

__all__ = [
    "DIFF_KEY_FIELDS",
    "EventQuote",
    "PriceSegment",
    "QuoteLine",
    "context_band_floor",
    "latest_price_book_versions",
    "model_resolve",
    "price_change_moments",
    "price_book_overview",
    "price_book_prices",
    "price_book_version_choices",
    "price_book_version_diff",
    "price_book_versions",
    "price_segments",
    "rate_event",
    "rule_matches",
    "unit_modalities",
    "unit_names",
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


def price_change_moments(*, versions: Iterable[PriceBookVersion], start: datetime, end: datetime) -> list[datetime]:
    """The midnights strictly inside [start, end) at which a price of `versions` starts or
    ends: every rule `price_segments` cuts for these versions starts and ends at one of
    them or at a bound, so usage between two of them is priced alike."""
    moments: set[datetime] = set()
    for effective_from, effective_to in (
        Price.objects.filter(version__in=list(versions)).values_list("effective_from", "effective_to").distinct()
    ):
        for moment in (_midnight(effective_from, _BEGINNING), _midnight(effective_to, _END_OF_TIME)):
            if start < moment < end:
                moments.add(moment)
    return sorted(moments)


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
        )
        .select_related("version__book")
        .order_by()  # the model's default ordering joins three tables just to sort
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


# --- Price book pages: the books, their versions and prices, what changed ------

# A price's identity across versions: the same key in two versions is the same
# price, possibly at a new amount; `effective_from` keeps dated prices apart.
DIFF_KEY_FIELDS: tuple[str, ...] = (
    "provider",
    "model",
    "unit",
    "service_tier",
    "tier",
    "context_above",
    "effective_from",
)
_DIFF_VALUE_FIELDS: tuple[str, ...] = ("amount", "quantum", "currency", "effective_to")


def unit_names() -> dict[str, str]:
    """Each catalog unit's name, keyed by unit code."""
    return dict(Unit.objects.values_list("code", "name"))


def price_book_overview() -> list[dict]:
    """Every price book with its latest version and that version's price count.

    Two queries whatever the number of books: the books with their version
    count, then each book's newest version with its prices counted.
    """
    books = list(PriceBook.objects.annotate(version_count=Count("versions")).order_by("kind", "code"))
    newest = PriceBookVersion.objects.filter(book=OuterRef("book")).order_by("-number").values("number")[:1]
    latest = {
        version.book_id: version
        for version in PriceBookVersion.objects.filter(number=Subquery(newest))
        .annotate(price_count=Count("prices"))
        .select_related("created_by")
    }
    return [
        {
            "book": book,
            "latest": latest.get(book.pk),
            "version_count": book.version_count,
            "price_count": latest[book.pk].price_count if book.pk in latest else 0,
        }
        for book in books
    ]


def price_book_versions(*, book: PriceBook) -> QuerySet[PriceBookVersion]:
    """A book's versions, newest first, each with its number of prices."""
    return (
        PriceBookVersion.objects.filter(book=book)
        .annotate(price_count=Count("prices"))
        .select_related("created_by")
        .order_by("-number")
    )


def price_book_prices(
    *, version: PriceBookVersion, provider: str = "", model: str = "", unit: str = ""
) -> QuerySet[Price]:
    """A version's prices in file order, narrowed by provider and unit (exact) and
    by a part of the model code (any case)."""
    prices = version.prices.select_related("model__provider", "unit")
    if provider:
        prices = prices.filter(model__provider__code=provider)
    if model:
        prices = prices.filter(model__code__icontains=model.strip())
    if unit:
        prices = prices.filter(unit_id=unit)
    return prices.order_by(
        "model__provider__code", "model__code", "unit", "service_tier", "tier", "context_above", "effective_from", "id"
    )


def price_book_version_choices(*, version: PriceBookVersion) -> dict[str, list[str]]:
    """The providers and units a version prices, for its filter's choices."""
    prices = version.prices.order_by()
    return {
        "providers": sorted(code for code in prices.values_list("model__provider__code", flat=True).distinct() if code),
        "units": sorted(prices.values_list("unit_id", flat=True).distinct()),
    }


def _diff_rows(version: PriceBookVersion) -> dict[tuple, dict]:
    rows = version.prices.order_by().values_list(
        "model__provider__code", "model__code", "unit_id", *DIFF_KEY_FIELDS[3:], *_DIFF_VALUE_FIELDS
    )
    keyed: dict[tuple, dict] = {}
    for values in rows:
        row = dict(zip(DIFF_KEY_FIELDS + _DIFF_VALUE_FIELDS, values, strict=True))
        row["provider"], row["model"] = row["provider"] or "", row["model"] or ""
        keyed[tuple(row[field] for field in DIFF_KEY_FIELDS)] = row
    return keyed


def _sort_key(key: tuple) -> tuple:
    # An open start (None) sorts first, as "since the beginning".
    return (*key[:-1], key[-1] or date.min)


def _relative_change(old: dict, new: dict) -> Decimal | None:
    """New unit price over old, minus one (0.25 is +25%); None from a zero price."""
    if not old["amount"]:
        return None
    return (new["amount"] * old["quantum"]) / (old["amount"] * new["quantum"]) - 1


def price_book_version_diff(*, old: PriceBookVersion, new: PriceBookVersion) -> dict:
    """What changed from one version of a book to another.

    Prices are matched on DIFF_KEY_FIELDS. A matched price changed when its
    unit price (amount per quantum), currency or end date differs; `change` is
    the relative change of the unit price. One query per version, compared in
    dicts: tens of thousands of prices take well under a second.
    """
    before, after = _diff_rows(old), _diff_rows(new)
    added = [after[key] for key in sorted(after.keys() - before.keys(), key=_sort_key)]
    removed = [before[key] for key in sorted(before.keys() - after.keys(), key=_sort_key)]
    changed = []
    unchanged = 0
    for key in sorted(before.keys() & after.keys(), key=_sort_key):
        was, now = before[key], after[key]
        same_price = was["amount"] * now["quantum"] == now["amount"] * was["quantum"]
        if same_price and was["currency"] == now["currency"] and was["effective_to"] == now["effective_to"]:
            unchanged += 1
            continue
        changed.append(
            {
                **{field: now[field] for field in DIFF_KEY_FIELDS},
                "old": was,
                "new": now,
                "price_changed": not same_price or was["currency"] != now["currency"],
                "change": _relative_change(was, now) if was["currency"] == now["currency"] else None,
            }
        )
    return {"old": old, "new": new, "added": added, "removed": removed, "changed": changed, "unchanged": unchanged}
