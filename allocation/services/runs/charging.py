"""Charging a provider's usage: the ledger's sums by the mapping's tags, each group mapped
by the first matching rule and charged by its charge model (direct, passthrough or cost
plus with a margin the service owner recovers, a rate card whose spread stays on the
owner, hybrid, a fixed fee), trued up to the provider's invoiced usage within the
tolerance; and the drivers (tokens, spend, GPU seconds, requests) the pools split by.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from fnmatch import fnmatchcase

from django.db import connection

from allocation.choices import (
    MAPPING_RULE_TAGS,
    UNCHARGED_OUTCOMES,
    AllocationMethod,
    ChargeCategory,
    ChargeModel,
    PoolDriver,
    UnallocatedReason,
)
from allocation.models import (
    MappingRule,
    RatingRequestCount,
)
from allocation.services.rating import priced_sums_sql
from pricing.models import PriceBookVersion
from pricing.money import decimal_from_db
from pricing.selectors import model_resolve, price_segments

__all__ = [
    "SHARED_SERVICE_MODELS",
    "ChargeKey",
    "ProviderCharges",
    "RateCards",
    "RuleMapper",
    "UsageGroup",
    "charge_provider",
    "group_fields",
    "ledger_groups",
    "request_counts",
    "request_fields",
]


# Rules charge these models to the caller; failed or moderated calls stay with the service.
SHARED_SERVICE_MODELS = {ChargeModel.PASSTHROUGH, ChargeModel.RATE_CARD, ChargeModel.HYBRID}


_MARGIN_MODELS = {ChargeModel.PASSTHROUGH, ChargeModel.COST_PLUS}


# The ledger fields every run groups by: the result's keys, the rating key and what charging reads.
_BASE_GROUP_FIELDS: tuple[str, ...] = (
    "provider",
    "model",
    "unit",
    "service_tier",
    "tier",
    "team",
    "feature",
    "environment",
    "modality",
    "caller",
    "outcome",
    "is_untagged",
)


@dataclass(slots=True)
class UsageGroup:
    """Ledger lines of one provider with the same tags and rating key."""

    tags: dict[str, str]
    unit: str
    service_tier: str
    tier: str
    is_untagged: bool
    quantity: Decimal
    line_count: int
    cost: Decimal | None  # None: unpriced


@dataclass(frozen=True, slots=True, order=True)
class ChargeKey:
    """An allocation line's key within one invoice (the invoice and provider are the line's)."""

    # Stable identities, not row ids, so that rounding ties break the same way in any
    # database: cost center code, rule position, pool code.
    cost_center: str | None = None
    reason: str = ""
    team: str = ""
    feature: str = ""
    environment: str = ""
    modality: str = ""
    model: str = ""
    unit: str = ""
    method: str = ""
    treatment: str = ""
    rule: int | None = None
    pool: str | None = None
    category: str = ChargeCategory.USAGE


@dataclass(slots=True)
class ProviderCharges:
    """A provider's usage charged at provider level, before the split over its invoices.

    `usage` holds the amounts of the usage charge category (they add up to the
    provider's usage money U); `bearers` says who bears each group's share of the
    other categories (tax, credit ...), which add up to U too.
    """

    usage: dict[ChargeKey, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    bearers: dict[ChargeKey, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    line_counts: dict[ChargeKey, int] = field(default_factory=lambda: defaultdict(int))
    quantities: dict[ChargeKey, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    rated: dict[ChargeKey, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    rated_by_model: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    rated_cost: Decimal = Decimal(0)
    unpriced_lines: int = 0


def group_fields(version_rules: list[MappingRule]) -> list[str]:
    extra = sorted({tag for rule in version_rules for tag in rule.match} - set(_BASE_GROUP_FIELDS))
    return [*_BASE_GROUP_FIELDS, *extra]


def ledger_groups(*, rating_run, fields: list[str]) -> dict[str, list[UsageGroup]]:
    """The period's sums, kept by the rating, priced and summed by `fields` and price,
    per provider: a query over a few thousand sums, not over the ledger."""
    params = {"run": rating_run.pk}
    width = len(fields)
    merged: dict[tuple, UsageGroup] = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A few hundred thousand sums: hashed in memory, not sorted on disk. The sort is
            # back on after; the memory setting ends with the run's transaction.
            cursor.execute("SET LOCAL work_mem = '256MB'")
            cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(priced_sums_sql(fields, rating_run.thresholds), params)
        rows = cursor.fetchall()
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_sort = on")
        for row in rows:
            values = dict(zip(fields, row[:width], strict=True))
            price_id, quantity, line_count, cost = row[width:]
            priced = price_id is not None
            identity = (*row[:width], priced)
            group = merged.get(identity)
            if group is None:
                tags = {name: values[name] or "" for name in fields if name not in ("unit", "service_tier", "tier")}
                tags.pop("is_untagged")
                group = merged[identity] = UsageGroup(
                    tags=tags,
                    unit=values["unit"],
                    service_tier=values["service_tier"],
                    tier=values["tier"],
                    is_untagged=bool(values["is_untagged"]),
                    quantity=Decimal(0),
                    line_count=0,
                    cost=Decimal(0) if priced else None,
                )
            group.quantity += decimal_from_db(quantity)
            group.line_count += int(line_count)
            if priced:
                group.cost += decimal_from_db(cost, 12)
    by_provider: dict[str, list[UsageGroup]] = defaultdict(list)
    for identity in sorted(merged, key=lambda i: tuple(str(v) for v in i)):
        group = merged[identity]
        by_provider[group.tags["provider"]].append(group)
    return by_provider


class RuleMapper:
    """First-match rules of a version, per distinct tag combination."""

    def __init__(self, rules: list[MappingRule]):
        self.rules = [(rule, sorted(rule.match.items())) for rule in rules]
        self.cache: dict[tuple, MappingRule | None] = {}

    def rule_for(self, tags: dict[str, str]) -> MappingRule | None:
        combo = tuple(tags.get(tag, "") for tag in MAPPING_RULE_TAGS)
        if combo not in self.cache:
            self.cache[combo] = next(
                (
                    rule
                    for rule, patterns in self.rules
                    if all(fnmatchcase(tags.get(tag, ""), pattern) for tag, pattern in patterns)
                ),
                None,
            )
        return self.cache[combo]


class RateCards:
    """Internal card prices: the card's latest version, at the price in force on the period's
    first day (a card changes at a period boundary, as mappings do), base context band."""

    def __init__(self, period_start: datetime):
        self.start = period_start
        self.versions: dict[int, PriceBookVersion | None] = {}
        self.prices: dict[tuple, tuple[Decimal, Decimal] | None] = {}

    def version(self, book) -> PriceBookVersion | None:
        if book.pk not in self.versions:
            self.versions[book.pk] = book.latest_version()
        return self.versions[book.pk]

    def cost(self, rule: MappingRule, provider: str, group: UsageGroup) -> Decimal | None:
        """The card price of a group's quantity, or None when the card does not price it."""
        version = self.version(rule.rate_card)
        if version is None:
            return None
        key = (version.pk, provider, group.tags["model"], group.unit, group.service_tier, group.tier)
        if key not in self.prices:
            catalog_model = model_resolve(provider=provider, model=group.tags["model"])
            price = None
            if catalog_model is not None:
                segments = price_segments(
                    model=catalog_model,
                    unit=group.unit,
                    service_tier=group.service_tier,
                    tier=group.tier,
                    start=self.start,
                    end=self.start + timedelta(days=1),
                    versions=[version],
                )
                base = next((s for s in segments if s.context_above == 0), None)
                if base is not None:
                    price = (base.price.amount, Decimal(base.price.quantum))
            self.prices[key] = price
        price = self.prices[key]
        if price is None:
            return None
        amount, quantum = price
        return group.quantity * amount / quantum


def _usage_key(
    group: UsageGroup, *, cost_center: str | None, reason: str, method: str, treatment: str, rule
) -> ChargeKey:
    return ChargeKey(
        cost_center=cost_center,
        reason=reason,
        team=group.tags["team"],
        feature=group.tags["feature"],
        environment=group.tags["environment"],
        modality=group.tags["modality"],
        model=group.tags["model"],
        unit=group.unit,
        method=method,
        treatment=treatment,
        rule=rule.position if rule is not None else None,
        pool=None,
    )


def charge_provider(
    *,
    groups: list[UsageGroup],
    usage_money: Decimal,
    tolerance: Decimal,
    mapper: RuleMapper,
    cards: RateCards,
    team_centers: dict[str, str],
    drivers: dict[str, dict[str, Decimal]],
    provider: str,
) -> ProviderCharges:
    """Charge one provider's usage groups: true-up factor, rule, charge model, bearer.

    Also adds each consumer's measured drivers (tokens, spend, GPU seconds) for the pools.
    """
    charged = ProviderCharges()
    rated = sum((g.cost for g in groups if g.cost is not None), Decimal(0))
    has_unpriced = any(g.cost is None for g in groups)
    charged.rated_cost = rated
    charged.unpriced_lines = sum(g.line_count for g in groups if g.cost is None)
    with localcontext() as context:
        context.prec = 40
        factor = Decimal(1)
        if rated and usage_money:
            factor = usage_money / rated
            if has_unpriced and factor > 1:
                factor = Decimal(1)  # the gap is most likely the unpriced usage: keep it named
            factor = min(max(factor, 1 - tolerance), 1 + tolerance)
        residual = usage_money - rated * factor if usage_money else Decimal(0)
        for group in groups:
            rule = mapper.rule_for(group.tags)
            money = group.cost * factor if (group.cost is not None and usage_money) else Decimal(0)
            charged.rated_by_model[group.tags["model"]] += group.cost or Decimal(0)

            def unallocated(reason: str, rule=rule, group=group, money=money) -> None:
                key = _usage_key(
                    group, cost_center=None, reason=reason, method=AllocationMethod.UNALLOCATED, treatment="", rule=rule
                )
                _add(charged, key, money, bearer=key, group=group)

            if group.cost is None:
                unallocated(UnallocatedReason.UNPRICED)
                # Its quantity still drives pools (GPU seconds no book prices, say).
                if rule is not None and not (
                    rule.charge_model in SHARED_SERVICE_MODELS and group.tags["outcome"] in UNCHARGED_OUTCOMES
                ):
                    _measure(drivers, _owner_and_payer(rule, group.tags["caller"], team_centers)[1], group, money)
                continue
            if rule is None:
                unallocated(UnallocatedReason.UNTAGGED if group.is_untagged else UnallocatedReason.UNMAPPED)
                continue
            shared = rule.charge_model in SHARED_SERVICE_MODELS
            if shared and group.tags["outcome"] in UNCHARGED_OUTCOMES:
                unallocated(UnallocatedReason.FAILED_OR_MODERATED)
                continue
            owner, payer = _owner_and_payer(rule, group.tags["caller"], team_centers)
            treatment = rule.treatment

            def key(center: str, method: str, rule=rule, group=group, treatment=treatment) -> ChargeKey:
                return _usage_key(group, cost_center=center, reason="", method=method, treatment=treatment, rule=rule)

            card = (
                cards.cost(rule, provider, group)
                if rule.charge_model in (ChargeModel.RATE_CARD, ChargeModel.HYBRID)
                else None
            )
            model = rule.charge_model
            if model == ChargeModel.HYBRID:
                model = ChargeModel.RATE_CARD if card is not None else ChargeModel.PASSTHROUGH
            if model == ChargeModel.DIRECT:
                _add(charged, key(payer, AllocationMethod.DIRECT), money, bearer=None, group=group)
            elif model in _MARGIN_MODELS:
                method = AllocationMethod.COST_PLUS if model == ChargeModel.COST_PLUS else AllocationMethod.PASSTHROUGH
                margin = (rule.margin_percent or Decimal(0)) / 100
                _add(charged, key(payer, method), money * (1 + margin), bearer=None, group=group, bears=money)
                if margin:
                    charged.usage[key(owner, AllocationMethod.MARGIN)] -= money * margin
            elif model == ChargeModel.RATE_CARD:
                spread = key(owner, AllocationMethod.CARD_SPREAD)
                if card is None:  # not on the card: the service owner keeps it
                    _add(charged, spread, money, bearer=spread, group=group)
                else:
                    _add(charged, key(payer, AllocationMethod.RATE_CARD), card, bearer=spread, group=group, bears=money)
                    charged.usage[spread] += money - card
            elif model == ChargeModel.FIXED_FEE:
                absorbed = key(owner, AllocationMethod.FEE_ABSORBED)
                _add(charged, absorbed, money, bearer=absorbed, group=group)
            _measure(drivers, payer, group, money)
        if residual:
            reason = UnallocatedReason.UNPRICED if has_unpriced and residual > 0 else UnallocatedReason.TRUE_UP_GAP
            gap = ChargeKey(reason=reason, method=AllocationMethod.UNALLOCATED)
            charged.usage[gap] += residual
            charged.bearers[gap] += residual
    return charged


def _add(
    charged: ProviderCharges,
    key: ChargeKey,
    amount: Decimal,
    *,
    bearer: ChargeKey | None,
    group: UsageGroup,
    bears: Decimal | None = None,
) -> None:
    """Book a group's usage amount on `key`, and who bears its other categories (default: `key`)."""
    charged.usage[key] += amount
    charged.bearers[bearer or key] += amount if bears is None else bears
    charged.line_counts[key] += group.line_count
    charged.quantities[key] += group.quantity
    charged.rated[key] += group.cost or Decimal(0)


def _owner_and_payer(rule: MappingRule, caller: str, team_centers: dict[str, str]) -> tuple[str, str]:
    """Cost center codes of the service owner and of who pays: a shared service books to
    the calling team's cost center, other models to the rule's."""
    owner = (rule.service_owner or rule.cost_center).code
    if rule.charge_model in SHARED_SERVICE_MODELS:
        return owner, team_centers.get(caller, rule.cost_center.code)
    return owner, rule.cost_center.code


def _measure(drivers: dict[str, dict[str, Decimal]], center: str, group: UsageGroup, money: Decimal) -> None:
    drivers[PoolDriver.SPEND][center] += money
    if "token" in group.unit:
        drivers[PoolDriver.TOKENS][center] += group.quantity
    if group.unit == "gpu_second":
        drivers[PoolDriver.GPU_SECONDS][center] += group.quantity


def request_fields(rules: list[MappingRule]) -> list[str]:
    """What decides who pays for a call: the tags the rules read, the caller and the outcome.
    (Per-unit tags such as modality would count a call spanning two units twice.)"""
    return sorted({tag for rule in rules for tag in rule.match} | {"caller", "outcome"})


def request_counts(*, rating_run, mapper: RuleMapper, team_centers: dict[str, str]) -> dict[str, Decimal]:
    """Requests (distinct calls) per consuming cost center, from the rating's counts."""
    fields = rating_run.request_fields
    counts: dict[str, Decimal] = defaultdict(Decimal)
    for row in RatingRequestCount.objects.filter(run=rating_run).values(*fields, "requests").order_by(*fields):
        tags = {name: row[name] or "" for name in fields}
        rule = mapper.rule_for(tags)
        if rule is None:
            continue
        shared = rule.charge_model in SHARED_SERVICE_MODELS
        if shared and tags["outcome"] in UNCHARGED_OUTCOMES:
            continue
        _, payer = _owner_and_payer(rule, tags["caller"], team_centers)
        counts[payer] += row["requests"]
    return counts
