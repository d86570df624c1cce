"""The allocation run: one period's provider invoices on cost centers, to the cent.

DESIGN.md "Allocation run", steps 1 to 7, in one transaction:

1. rate the period's usage with the price books in force (`usage_rate_period`);
2. sum the ledger once, in the database, by the tags the mapping version reads
   and the rating key, priced by that rating's rules: a few thousand groups,
   whatever the number of lines;
3. map each group with the first matching rule of the signed version in force,
   and charge it by the rule's charge model (direct, passthrough or cost plus
   with a margin the service owner recovers, a rate card whose spread stays on
   the owner, hybrid, a fixed fee);
4. allocate invoice lines that no usage explains by their shared-cost pool;
5. true up: the provider's rated usage is scaled to its invoices within the
   reconciliation tolerance; what is beyond it is not spread over the teams but
   kept, named, in the unallocated bucket (unpriced usage, or the true-up gap);
6. reconcile rated usage against the invoices per provider and model;
7. round each invoice's parts to cents by largest remainder and write the
   lines, so that for every invoice allocated + unallocated == its total.

Money per group is Python over the groups (never over ledger lines); each
invoice's usage money is split over the provider's usage in proportion to its
trued-up amount, and its tax, credits and adjustments follow what they were
levied on (the usage and the pooled lines), pro rata, each category apart.
"""

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from fnmatch import fnmatchcase
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from allocation.choices import (
    MAPPING_RULE_TAGS,
    UNCHARGED_OUTCOMES,
    AllocationMethod,
    AllocationRunStatus,
    ChargeCategory,
    ChargeModel,
    PoolDriver,
    PoolMethod,
    UnallocatedReason,
)
from allocation.models import (
    ActivityCount,
    AllocationLine,
    AllocationRun,
    CostCenter,
    InvoiceLine,
    MappingRule,
    MappingVersion,
    ProviderInvoice,
    RatingRequestCount,
    RatingRun,
    RatingSum,
    ReconciliationLine,
    SharedCostPool,
    Team,
)
from allocation.selectors.ledger import period_bounds
from allocation.services.mapping import mapping_version_in_force
from allocation.services.rating import RATED_KEYS, priced_sums_sql, usage_rate_kept, usage_rate_period
from allocation.services.roles import FINANCE_ANALYST, FINANCE_APPROVER, PLATFORM_ADMIN, require_role
from pricing.errors import Conflict, ValidationFailed
from pricing.models import PriceBookVersion
from pricing.money import CENT, decimal_from_db, largest_remainder, quantize
from pricing.selectors import model_resolve, price_segments

__all__ = [
    "AllocationRunning",
    "PeriodClosed",
    "allocation_progress",
    "allocation_run_close",
    "allocation_run_execute",
    "allocation_run_queue",
    "allocation_usage_rate",
    "mapping_preview",
    "open_periods",
    "ALLOCATION_RUNNERS",
]

# Rules charge these models to the caller; failed or moderated calls stay with the service.
_SHARED_SERVICE_MODELS = {ChargeModel.PASSTHROUGH, ChargeModel.RATE_CARD, ChargeModel.HYBRID}
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
_POOL_METHODS = {
    PoolMethod.PROPORTIONAL: AllocationMethod.POOL_PROPORTIONAL,
    PoolMethod.ACTIVITY: AllocationMethod.POOL_ACTIVITY,
    PoolMethod.EVEN: AllocationMethod.POOL_EVEN,
}
_PROGRESS_SECONDS = 6 * 3600
# A queued run no worker has started within this long is taken as lost, not as running.
_QUEUED_STALE_SECONDS = 15 * 60
# Who may run an allocation; the command and tasks without a user act as the system.
ALLOCATION_RUNNERS: tuple[str, ...] = (FINANCE_APPROVER, FINANCE_ANALYST, PLATFORM_ADMIN)


class AllocationRunning(Conflict):
    code = "allocation_running"


class PeriodClosed(Conflict):
    code = "period_closed"


# --- progress and the per-period lock ----------------------------------------


def _progress_key(period: str) -> str:
    return f"allocation-run:{period}"


def allocation_progress(*, period: str) -> dict | None:
    """What the run of a period is doing now (step, percent, who, since), if one is running
    or just ended; kept in the cache so that pages and the API can read it while the run's
    own transaction is still open."""
    return cache.get(_progress_key(period))


def _progress_set(period: str, **state: Any) -> None:
    current = cache.get(_progress_key(period)) or {}
    cache.set(_progress_key(period), {**current, **state}, _PROGRESS_SECONDS)


def _advisory_key(period: str) -> list[int]:
    year, month = (int(part) for part in period.split("-"))
    return [0x616C6C6F, year * 100 + month]


def _run_in_progress(period: str) -> dict | None:
    """The progress of a run of the period queued or running now, else None.

    On PostgreSQL the advisory lock is the truth: a marker left by a worker that died
    says "running" but holds no lock. A queued run counts until a worker should have
    started it.
    """
    marker = allocation_progress(period=period) or {}
    state = marker.get("state")
    if state == "queued":
        started = marker.get("started_at", "")
        try:
            age = (timezone.now() - datetime.fromisoformat(started)).total_seconds()
        except ValueError:
            age = 0
        return marker if age < _QUEUED_STALE_SECONDS else None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", _advisory_key(period))
            free = cursor.fetchone()[0]
            if free:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", _advisory_key(period))
        return None if free else (marker or {"state": "running"})
    return marker if state == "running" else None


def _lock_period(period: str, actor) -> None:
    """Refuse a second run of a period while one runs: a PostgreSQL advisory lock held until
    the transaction ends; on SQLite (one process, eager tasks) the cache marks the run."""
    running = allocation_progress(period=period) or {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", _advisory_key(period))
            locked = cursor.fetchone()[0]
    else:
        locked = running.get("state") != "running"
    if not locked:
        who = running.get("user") or "someone"
        since = running.get("started_at", "")
        raise AllocationRunning(
            f"an allocation run of {period} is already running (started {since} by {who}); "
            "wait for it to finish, then run again if needed",
            extra={"period": period, "progress": running or None},
        )
    _progress_start(period, actor, state="running", step="starting")


def _progress_start(period: str, actor, *, state: str, step: str) -> None:
    """A fresh progress marker: who started the run, and when."""
    _progress_set(
        period,
        state=state,
        step=step,
        percent=0,
        user=getattr(actor, "username", "") or "",
        started_at=timezone.now().isoformat(timespec="seconds"),
        run_id=None,
        error="",
    )


def _refuse_if_not_runnable(period: str, actor) -> None:
    """A malformed period, an actor without the role, or a closed period is refused."""
    period_bounds(period)
    if actor is not None:
        require_role(actor, ALLOCATION_RUNNERS, doing=f"run the allocation of {period}")
    closed = AllocationRun.objects.filter(period=period, closed_at__isnull=False).first()
    if closed is not None:
        raise PeriodClosed(
            f"{period} is closed: a statement from allocation run #{closed.pk} was approved; "
            "book corrections as adjustments in the next period",
            extra={"period": period, "run": closed.pk},
        )


def _version_in_force_or_refuse(period: str) -> MappingVersion:
    version = mapping_version_in_force(period=period)
    if version is None:
        raise ValidationFailed(
            f"no signed mapping version is in force for {period}: load one (load_mapping) and sign it off",
            code="no_mapping_version",
        )
    return version


# --- the ledger, summed and mapped -------------------------------------------


@dataclass(slots=True)
class _Group:
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
class _Key:
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
class _ProviderUsage:
    """A provider's usage charged at provider level, before the split over its invoices.

    `usage` holds the amounts of the usage charge category (they add up to the
    provider's usage money U); `bearers` says who bears each group's share of the
    other categories (tax, credit ...), which add up to U too.
    """

    usage: dict[_Key, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    bearers: dict[_Key, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    line_counts: dict[_Key, int] = field(default_factory=lambda: defaultdict(int))
    quantities: dict[_Key, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    rated: dict[_Key, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    rated_by_model: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    rated_cost: Decimal = Decimal(0)
    unpriced_lines: int = 0


def _group_fields(version_rules: list[MappingRule]) -> list[str]:
    extra = sorted({tag for rule in version_rules for tag in rule.match} - set(_BASE_GROUP_FIELDS))
    return [*_BASE_GROUP_FIELDS, *extra]


def _ledger_groups(*, rating_run, fields: list[str]) -> dict[str, list[_Group]]:
    """The period's sums, kept by the rating, priced and summed by `fields` and price,
    per provider: a query over a few thousand sums, not over the ledger."""
    params = {"run": rating_run.pk}
    width = len(fields)
    merged: dict[tuple, _Group] = {}
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
                group = merged[identity] = _Group(
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
    by_provider: dict[str, list[_Group]] = defaultdict(list)
    for identity in sorted(merged, key=lambda i: tuple(str(v) for v in i)):
        group = merged[identity]
        by_provider[group.tags["provider"]].append(group)
    return by_provider


class _Mapper:
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


class _RateCards:
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

    def cost(self, rule: MappingRule, provider: str, group: _Group) -> Decimal | None:
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


# --- charging a provider's usage ---------------------------------------------


def _usage_key(group: _Group, *, cost_center: str | None, reason: str, method: str, treatment: str, rule) -> _Key:
    return _Key(
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


def _charge_provider(
    *,
    groups: list[_Group],
    usage_money: Decimal,
    tolerance: Decimal,
    mapper: _Mapper,
    cards: _RateCards,
    team_centers: dict[str, str],
    drivers: dict[str, dict[str, Decimal]],
    provider: str,
) -> _ProviderUsage:
    """Charge one provider's usage groups: true-up factor, rule, charge model, bearer.

    Also adds each consumer's measured drivers (tokens, spend, GPU seconds) for the pools.
    """
    charged = _ProviderUsage()
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
                    rule.charge_model in _SHARED_SERVICE_MODELS and group.tags["outcome"] in UNCHARGED_OUTCOMES
                ):
                    _measure(drivers, _owner_and_payer(rule, group.tags["caller"], team_centers)[1], group, money)
                continue
            if rule is None:
                unallocated(UnallocatedReason.UNTAGGED if group.is_untagged else UnallocatedReason.UNMAPPED)
                continue
            shared = rule.charge_model in _SHARED_SERVICE_MODELS
            if shared and group.tags["outcome"] in UNCHARGED_OUTCOMES:
                unallocated(UnallocatedReason.FAILED_OR_MODERATED)
                continue
            owner, payer = _owner_and_payer(rule, group.tags["caller"], team_centers)
            treatment = rule.treatment

            def key(center: str, method: str, rule=rule, group=group, treatment=treatment) -> _Key:
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
            gap = _Key(reason=reason, method=AllocationMethod.UNALLOCATED)
            charged.usage[gap] += residual
            charged.bearers[gap] += residual
    return charged


def _add(
    charged: _ProviderUsage,
    key: _Key,
    amount: Decimal,
    *,
    bearer: _Key | None,
    group: _Group,
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
    if rule.charge_model in _SHARED_SERVICE_MODELS:
        return owner, team_centers.get(caller, rule.cost_center.code)
    return owner, rule.cost_center.code


def _measure(drivers: dict[str, dict[str, Decimal]], center: str, group: _Group, money: Decimal) -> None:
    drivers[PoolDriver.SPEND][center] += money
    if "token" in group.unit:
        drivers[PoolDriver.TOKENS][center] += group.quantity
    if group.unit == "gpu_second":
        drivers[PoolDriver.GPU_SECONDS][center] += group.quantity


def _request_fields(rules: list[MappingRule]) -> list[str]:
    """What decides who pays for a call: the tags the rules read, the caller and the outcome.
    (Per-unit tags such as modality would count a call spanning two units twice.)"""
    return sorted({tag for rule in rules for tag in rule.match} | {"caller", "outcome"})


def _request_counts(*, rating_run, mapper: _Mapper, team_centers: dict[str, str]) -> dict[str, Decimal]:
    """Requests (distinct calls) per consuming cost center, from the rating's counts."""
    fields = rating_run.request_fields
    counts: dict[str, Decimal] = defaultdict(Decimal)
    for row in RatingRequestCount.objects.filter(run=rating_run).values(*fields, "requests").order_by(*fields):
        tags = {name: row[name] or "" for name in fields}
        rule = mapper.rule_for(tags)
        if rule is None:
            continue
        shared = rule.charge_model in _SHARED_SERVICE_MODELS
        if shared and tags["outcome"] in UNCHARGED_OUTCOMES:
            continue
        _, payer = _owner_and_payer(rule, tags["caller"], team_centers)
        counts[payer] += row["requests"]
    return counts


# --- invoices and pools ------------------------------------------------------


def _pool_for(pools: list[SharedCostPool], invoice: ProviderInvoice, line: InvoiceLine) -> SharedCostPool | None:
    fields = {
        "provider": invoice.provider,
        "sku": line.sku,
        "charge_category": line.charge_category,
        "description": line.description,
    }
    for pool in pools:
        if all(fnmatchcase(fields[name] or "", pattern) for name, pattern in pool.match.items()):
            return pool
    return None


def _pool_weights(
    pool: SharedCostPool,
    *,
    drivers: dict[str, dict[str, Decimal]],
    activity: dict[str, dict[str, Decimal]],
    active_centers: list[str],
) -> dict[str, Decimal]:
    targets = sorted(c.code for c in pool.target_cost_centers.all()) or active_centers
    if pool.method == PoolMethod.EVEN:
        measured = {center: Decimal(1) for center in targets}
    elif pool.method == PoolMethod.ACTIVITY:
        measured = activity.get(pool.driver, {})
    else:
        measured = drivers.get(pool.driver, {})
    return {center: measured.get(center, Decimal(0)) for center in targets if measured.get(center, Decimal(0)) > 0}


# --- the run -----------------------------------------------------------------


def _default_tolerance() -> Decimal:
    return Decimal(str(getattr(settings, "CHARGEBACK_RECONCILIATION_TOLERANCE", "0.02")))


def _active_centers(period: str) -> list[str]:
    start, end = period_bounds(period)
    return list(
        CostCenter.objects.filter(active_from__lt=end.date())
        .filter(Q(active_to__isnull=True) | Q(active_to__gte=start.date()))
        .order_by("code")
        .values_list("code", flat=True)
    )


def _invoice_parts(
    invoice: ProviderInvoice,
    lines: list[InvoiceLine],
    *,
    charged: _ProviderUsage,
    usage_money: Decimal,
    pool_of: dict[int, SharedCostPool | None],
    pool_weights: Callable[[SharedCostPool], dict[str, Decimal]],
) -> dict[_Key, Decimal]:
    """The exact parts of one invoice: its usage spread as the provider's usage was
    charged, its pool lines over each pool's weights, and its other charges (tax,
    credits ...) over both, pro rata, each in its own category."""
    own_usage = Decimal(0)
    others: dict[str, Decimal] = defaultdict(Decimal)
    pooled: dict[tuple[SharedCostPool, str], Decimal] = defaultdict(Decimal)
    for line in lines:
        pool = pool_of[line.pk]
        if pool is not None:
            pooled[(pool, line.charge_category)] += line.effective_cost
        elif line.charge_category == ChargeCategory.USAGE:
            own_usage += line.effective_cost
        else:
            others[line.charge_category] += line.effective_cost
    parts: dict[_Key, Decimal] = defaultdict(Decimal)
    # Who bears this invoice's other charges (tax, credits, adjustments, purchases no pool
    # takes): its usage, as the provider's usage was charged, and its pooled lines.
    bearers: dict[_Key, Decimal] = defaultdict(Decimal)
    with localcontext() as context:
        context.prec = 40
        if usage_money:
            for key, amount in charged.usage.items():
                parts[key] += amount * own_usage / usage_money
            for key, amount in charged.bearers.items():
                bearers[key] += amount * own_usage / usage_money
        elif own_usage:
            gap = _Key(reason=UnallocatedReason.TRUE_UP_GAP, method=AllocationMethod.UNALLOCATED)
            parts[gap] += own_usage
            bearers[gap] += own_usage
        for (pool, category), money in pooled.items():
            weights = pool_weights(pool)
            total = sum(weights.values(), Decimal(0))
            method = _POOL_METHODS[pool.method]
            if not total:  # nothing measured: the whole line stays unallocated
                weights, total = {None: Decimal(1)}, Decimal(1)
            for center, weight in weights.items():
                key = _Key(
                    cost_center=center,
                    reason="" if center is not None else UnallocatedReason.POOL_WITHOUT_DRIVER,
                    method=method,
                    treatment=pool.treatment if center is not None else "",
                    pool=pool.code,
                )
                parts[_with(key, category=category)] += money * weight / total
                bearers[key] += money * weight / total
        base = sum(bearers.values(), Decimal(0))
        if not base and usage_money:
            # Nothing on this invoice to follow: the provider's usage bears its charges.
            bearers, base = dict(charged.bearers), usage_money
        for category, money in others.items():
            if not base:
                gap = _Key(reason=UnallocatedReason.TRUE_UP_GAP, method=AllocationMethod.UNALLOCATED)
                parts[_with(gap, category=category)] += money
                continue
            for key, amount in bearers.items():
                parts[_with(key, category=category)] += amount * money / base
    return parts


def _with(key: _Key, **changes: Any) -> _Key:
    values = {name: getattr(key, name) for name in _Key.__slots__}
    values.update(changes)
    return _Key(**values)


def _reconcile(
    run: AllocationRun, provider: str, lines: Iterable[InvoiceLine], charged, pool_of, tolerance
) -> list[ReconciliationLine]:
    """Rated usage against invoiced usage (pool lines aside), per provider and, where
    every invoiced usage line names its model, per model (both resolved to the catalog)."""
    names: dict[str, str] = {}

    def catalog_name(model: str) -> str:
        if model not in names:
            catalog_model = model_resolve(provider=provider, model=model) if model else None
            names[model] = catalog_model.name if catalog_model is not None else model
        return names[model]

    invoiced: dict[str, Decimal] = defaultdict(Decimal)
    named = True
    for line in lines:
        if line.charge_category != ChargeCategory.USAGE or pool_of[line.pk] is not None:
            continue
        named = named and bool(line.model)
        invoiced[catalog_name(line.model)] += line.effective_cost
    rows: list[tuple[str, Decimal, Decimal]] = [
        ("", sum(invoiced.values(), Decimal(0)), charged.rated_cost if charged else Decimal(0))
    ]
    if named and invoiced and charged:
        rated: dict[str, Decimal] = defaultdict(Decimal)
        for model, cost in charged.rated_by_model.items():
            rated[catalog_name(model)] += cost
        for model in sorted(set(invoiced) | set(rated)):
            rows.append((model or "(no model)", invoiced.get(model, Decimal(0)), rated.get(model, Decimal(0))))
    result = []
    for model, invoice_cost, rated_cost in rows:
        variance = rated_cost - invoice_cost
        share = (variance / invoice_cost).quantize(Decimal("0.000001")) if invoice_cost else None
        within = abs(share) <= tolerance if share is not None else not variance
        result.append(
            ReconciliationLine(
                run=run,
                provider=provider,
                model=model,
                invoice_cost=quantize(invoice_cost, Decimal("1e-12")),
                rated_cost=quantize(rated_cost, Decimal("1e-12")),
                variance=quantize(variance, Decimal("1e-12")),
                variance_share=share,
                within_tolerance=within,
            )
        )
    return result


def _split_by_requests(pools: list[SharedCostPool]) -> bool:
    return any(pool.method == PoolMethod.PROPORTIONAL and pool.driver == PoolDriver.REQUESTS for pool in pools)


def _rating_needs(rules: list[MappingRule], pools: list[SharedCostPool]) -> tuple[list[str], list[str] | None]:
    """The tags an allocation by these rules and pools needs kept: the sums', and the
    request counts' (None when no pool is driven by requests)."""
    sum_fields = [f for f in _group_fields(rules) if f not in RATED_KEYS]
    return sum_fields, _request_fields(rules) if _split_by_requests(pools) else None


def _rating_for(*, period: str, actor, rules: list[MappingRule], pools: list[SharedCostPool]) -> RatingRun:
    """The period's rating as the allocation needs it (`usage_rate_kept`): the newest as
    it is while no batch has come since (rated ahead, or by an earlier run), extended
    with the later batches' lines, or a new one."""
    sum_fields, request_fields = _rating_needs(rules, pools)
    return usage_rate_kept(period=period, created_by=actor, sum_fields=sum_fields, request_fields=request_fields)


def _kept_sums_prune(period: str, newest: RatingRun) -> None:
    """Drop the kept sums of the period's older ratings: only the newest is read again
    (the rating runs stay, for the allocation runs' inputs). Done under the period's
    lock, so never while a run of the period reads them; skipped if a run holds it."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", _advisory_key(period))
            if not cursor.fetchone()[0]:
                return
    RatingSum.objects.filter(run__period=period, run__pk__lt=newest.pk).delete()
    RatingRequestCount.objects.filter(run__period=period, run__pk__lt=newest.pk).delete()


@transaction.atomic
def allocation_usage_rate(*, period: str, actor=None) -> RatingRun:
    """Rate a period ahead of its allocation (nightly, the command, the rating pages),
    keeping what the mapping version in force needs, so that the month's allocation
    runs price the kept sums instead of reading the ledger. A rating that still stands
    for the ledger and the prices in force is returned as it is. Without a version in
    force, a plain rating."""
    version = mapping_version_in_force(period=period)
    if version is None:
        return usage_rate_period(period=period, created_by=actor)
    rating = _rating_for(
        period=period, actor=actor, rules=list(version.rules.order_by("position")), pools=list(version.pools.all())
    )
    _kept_sums_prune(period, rating)
    return rating


def open_periods(*, today: date | None = None) -> list[str]:
    """The months a nightly rating keeps ready: the last one (its close is under way) and this one."""
    today = today or timezone.now().date()
    last = today.replace(day=1) - timedelta(days=1)
    return [f"{last:%Y-%m}", f"{today:%Y-%m}"]


def allocation_run_execute(
    *,
    period: str,
    actor=None,
    tolerance: Decimal | None = None,
) -> AllocationRun:
    """Allocate one period: every invoice cent on a cost center or in the named unallocated
    bucket. Complete or nothing (one transaction); refused while another run of the period
    runs, and when the period is closed. Supersedes the period's current run."""
    period_bounds(period)  # refuses a malformed period before anything else
    if actor is not None:
        require_role(actor, ALLOCATION_RUNNERS, doing=f"run the allocation of {period}")
    tolerance = _default_tolerance() if tolerance is None else tolerance
    if not 0 <= tolerance < 1:
        raise ValidationFailed(f"tolerance {tolerance} must be at least 0 and below 1", code="tolerance_invalid")
    began = time.monotonic()
    try:
        with transaction.atomic():
            _lock_period(period, actor)
            run = _execute(period=period, actor=actor, tolerance=tolerance, began=began)
    except AllocationRunning:
        raise
    except Exception as exc:
        if (allocation_progress(period=period) or {}).get("state") == "running":
            _progress_set(period, state="failed", error=str(exc))
        raise
    _progress_set(period, state="completed", step="done", percent=100, run_id=run.pk)
    return run


def _execute(
    *,
    period: str,
    actor,
    tolerance: Decimal,
    began: float,
    version: MappingVersion | None = None,
    progress: Callable[..., None] | None = None,
) -> AllocationRun:
    """The run itself, inside the caller's transaction; `version` and `progress` are the
    preview's: another mapping version than the one in force, and no progress to report."""
    start, end = period_bounds(period)
    report = progress or _progress_set
    if version is None:
        _refuse_if_not_runnable(period, None)  # the actor's role is checked before the lock
        version = _version_in_force_or_refuse(period)
    rules = list(version.rules.select_related("cost_center", "service_owner", "rate_card").order_by("position"))
    pools = list(version.pools.prefetch_related("target_cost_centers").order_by("code"))
    fields = _group_fields(rules)
    report(period, step="rating usage", percent=5)
    rating_run = _rating_for(period=period, actor=actor, rules=rules, pools=pools)
    report(period, step="mapping usage", percent=35)
    groups = _ledger_groups(rating_run=rating_run, fields=fields)
    batch_ids = list(
        RatingSum.objects.filter(run=rating_run).values_list("batch_id", flat=True).distinct().order_by("batch_id")
    )
    _kept_sums_prune(period, rating_run)
    mapper = _Mapper(rules)
    cards = _RateCards(start)
    team_centers = dict(Team.objects.values_list("code", "cost_center__code"))

    invoices, lines_by_invoice, invoices_by_provider = _period_invoices(start, end)
    # Which pool takes each invoice line, decided once for the parts, the true-up and the reconciliation.
    pool_of = {
        line.pk: _pool_for(pools, invoice, line) for invoice in invoices for line in lines_by_invoice[invoice.pk]
    }
    currencies = sorted({invoice.currency for invoice in invoices})
    if len(currencies) > 1:
        # Totals across currencies mean nothing, and converting needs rates we do not keep yet.
        raise ValidationFailed(
            f"{period}'s invoices are in {', '.join(currencies)}: a run allocates one currency; "
            "convert the invoices to one currency before ingesting them",
            code="mixed_currencies",
            extra={"invoices": {i.invoice_id: i.currency for i in invoices}},
        )

    drivers: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    charged_by_provider: dict[str, _ProviderUsage] = {}
    usage_money_by_provider: dict[str, Decimal] = {}
    for provider in sorted(set(groups) | set(invoices_by_provider)):
        usage_money = sum(
            (
                line.effective_cost
                for invoice in invoices_by_provider.get(provider, [])
                for line in lines_by_invoice[invoice.pk]
                if line.charge_category == ChargeCategory.USAGE and pool_of[line.pk] is None
            ),
            Decimal(0),
        )
        usage_money_by_provider[provider] = usage_money
        charged_by_provider[provider] = _charge_provider(
            groups=groups.get(provider, []),
            usage_money=usage_money,
            tolerance=tolerance,
            mapper=mapper,
            cards=cards,
            team_centers=team_centers,
            drivers=drivers,
            provider=provider,
        )
    if _split_by_requests(pools):
        drivers[PoolDriver.REQUESTS] = _request_counts(rating_run=rating_run, mapper=mapper, team_centers=team_centers)

    report(period, step="shared pools and true-up", percent=70)
    activity: dict[str, dict[str, Decimal]] = defaultdict(dict)
    activity_rows = list(
        ActivityCount.objects.filter(period=period).select_related("cost_center").order_by("driver", "cost_center_id")
    )
    for row in activity_rows:
        activity[row.driver][row.cost_center.code] = row.count
    active_centers = _active_centers(period)
    weights_cache: dict[int, dict[str, Decimal]] = {}

    def pool_weights(pool: SharedCostPool) -> dict[str, Decimal]:
        if pool.pk not in weights_cache:
            weights_cache[pool.pk] = _pool_weights(
                pool, drivers=drivers, activity=activity, active_centers=active_centers
            )
        return weights_cache[pool.pk]

    for previous in AllocationRun.objects.select_for_update().filter(
        period=period, status=AllocationRunStatus.COMPLETED
    ):
        previous.status = AllocationRunStatus.SUPERSEDED
        previous.save(update_fields=["status"])
    run = AllocationRun.objects.create(
        period=period,
        mapping_version=version,
        rating_run=rating_run,
        tolerance=tolerance,
        invoice_total=0,
        allocated=0,
        unallocated=0,
        created_by=actor,
    )
    report(period, run_id=run.pk)

    ids = _Ids(
        centers=dict(CostCenter.objects.values_list("code", "pk")),
        rules={rule.position: rule.pk for rule in rules},
        pools={pool.code: pool.pk for pool in pools},
    )
    allocation_lines: list[AllocationLine] = []
    reconciliation: list[ReconciliationLine] = []
    for provider, charged in charged_by_provider.items():
        provider_invoices = invoices_by_provider.get(provider, [])
        allocation_lines.extend(
            _provider_lines(
                run,
                provider,
                provider_invoices,
                lines_by_invoice,
                charged=charged,
                usage_money=usage_money_by_provider[provider],
                pool_of=pool_of,
                pool_weights=pool_weights,
                ids=ids,
            )
        )
        reconciliation.extend(
            _reconcile(
                run,
                provider,
                [line for invoice in provider_invoices for line in lines_by_invoice[invoice.pk]],
                charged,
                pool_of,
                tolerance,
            )
        )
    allocation_lines.extend(_fixed_fee_lines(run, rules))

    report(period, step="writing results", percent=90)
    AllocationLine.objects.bulk_create(allocation_lines, batch_size=2000)
    ReconciliationLine.objects.bulk_create(reconciliation)
    run.invoices.set(invoices)
    run.usage_batches.set(batch_ids)
    card_versions = [v for v in cards.versions.values() if v is not None]
    run.rate_card_versions.set(card_versions)
    run.inputs = _inputs(
        version=version,
        rating_run=rating_run,
        card_versions=card_versions,
        invoices=invoices,
        lines_by_invoice=lines_by_invoice,
        batch_ids=batch_ids,
        activity_rows=activity_rows,
        tolerance=tolerance,
    )
    invoice_total = sum(
        (quantize(sum((x.effective_cost for x in lines_by_invoice[i.pk]), Decimal(0)), CENT) for i in invoices),
        Decimal(0),
    )
    run.invoice_total = invoice_total
    run.allocated = sum((line.amount for line in allocation_lines if line.cost_center_id is not None), Decimal(0))
    run.unallocated = sum((line.amount for line in allocation_lines if line.cost_center_id is None), Decimal(0))
    if run.allocated + run.unallocated != invoice_total:
        raise AssertionError(f"{period}: allocated + unallocated is not the invoice total {invoice_total}")
    run.is_flagged = any(not row.within_tolerance for row in reconciliation if row.model == "")
    run.fingerprint = _fingerprint(run.inputs, allocation_lines)
    run.seconds = Decimal(time.monotonic() - began).quantize(Decimal("0.001"))
    run.save()
    AllocationRun.objects.filter(
        superseded_by__isnull=True, period=period, status=AllocationRunStatus.SUPERSEDED
    ).update(superseded_by=run)
    return run


def _period_invoices(start: datetime, end: datetime) -> tuple[list, dict[int, list[InvoiceLine]], dict[str, list]]:
    """The invoices whose billing period starts in the period, their lines, and both by provider."""
    invoices = list(
        ProviderInvoice.objects.filter(billing_period_start__gte=start, billing_period_start__lt=end).order_by(
            "provider", "invoice_id"
        )
    )
    lines_by_invoice: dict[int, list[InvoiceLine]] = defaultdict(list)
    for line in InvoiceLine.objects.filter(invoice__in=invoices).order_by("invoice_id", "line_key"):
        lines_by_invoice[line.invoice_id].append(line)
    invoices_by_provider: dict[str, list[ProviderInvoice]] = defaultdict(list)
    for invoice in invoices:
        invoices_by_provider[invoice.provider].append(invoice)
    return invoices, lines_by_invoice, invoices_by_provider


def _provider_lines(
    run: AllocationRun,
    provider: str,
    provider_invoices: list[ProviderInvoice],
    lines_by_invoice: dict[int, list[InvoiceLine]],
    *,
    charged: _ProviderUsage,
    usage_money: Decimal,
    pool_of: dict[int, SharedCostPool | None],
    pool_weights: Callable[[SharedCostPool], dict[str, Decimal]],
    ids: "_Ids",
) -> list[AllocationLine]:
    """A provider's allocation lines: each invoice's parts rounded to its total in cents."""
    lines: list[AllocationLine] = []
    # Line counts and rated cost ride on the invoice carrying most of the usage.
    carrier = max(
        provider_invoices,
        key=lambda i: (sum(x.effective_cost for x in lines_by_invoice[i.pk] if x.charge_category == "usage"), -i.pk),
        default=None,
    )
    counted: set[_Key] = set()
    for invoice in provider_invoices:
        invoice_lines = lines_by_invoice[invoice.pk]
        exact_total = sum((line.effective_cost for line in invoice_lines), Decimal(0))
        parts = _invoice_parts(
            invoice, invoice_lines, charged=charged, usage_money=usage_money, pool_of=pool_of, pool_weights=pool_weights
        )
        cents = largest_remainder(exact_total, parts) if parts else {}
        if sum(cents.values(), Decimal(0)) != quantize(exact_total, CENT):
            raise AssertionError(f"invoice {invoice.invoice_id} does not tie out")
        for key, amount in cents.items():
            line_count = charged.line_counts.get(key, 0) if invoice == carrier and key.category == "usage" else 0
            if not amount and not line_count:
                continue
            if line_count:
                counted.add(key)
            lines.append(
                _allocation_line(
                    run,
                    key,
                    amount,
                    invoice=invoice,
                    provider=provider,
                    charged=charged,
                    line_count=line_count,
                    ids=ids,
                )
            )
    # Usage no invoice money stands for (no invoice yet): counted with no money, and the
    # reconciliation flags the provider.
    for key, line_count in charged.line_counts.items():
        if key not in counted and line_count:
            lines.append(
                _allocation_line(
                    run,
                    key,
                    Decimal(0),
                    invoice=None,
                    provider=provider,
                    charged=charged,
                    line_count=line_count,
                    ids=ids,
                )
            )
    return lines


@dataclass(frozen=True, slots=True)
class _Ids:
    """Row ids of the stable identities keys hold."""

    centers: dict[str, int]
    rules: dict[int, int]
    pools: dict[str, int]


def _allocation_line(
    run, key: _Key, amount: Decimal, *, invoice, provider: str, charged: _ProviderUsage, line_count: int, ids: _Ids
) -> AllocationLine:
    return AllocationLine(
        run=run,
        invoice=invoice,
        provider=provider,
        cost_center_id=ids.centers[key.cost_center] if key.cost_center is not None else None,
        reason=key.reason,
        team=key.team,
        feature=key.feature,
        environment=key.environment,
        modality=key.modality,
        model=key.model,
        unit=key.unit,
        category=key.category,
        method=key.method,
        treatment=key.treatment,
        rule_id=ids.rules[key.rule] if key.rule is not None else None,
        pool_id=ids.pools[key.pool] if key.pool is not None else None,
        line_count=line_count,
        quantity=charged.quantities.get(key, Decimal(0)) if line_count else 0,
        rated_cost=quantize(charged.rated.get(key, Decimal(0)), Decimal("1e-12")) if line_count else 0,
        amount=amount,
    )


def _fixed_fee_lines(run: AllocationRun, rules: list[MappingRule]) -> list[AllocationLine]:
    """A fixed monthly fee: an internal transfer from the rule's cost center to the service
    owner, charged every period whatever the usage; it nets to zero, so it carries no invoice."""
    lines = []
    for rule in rules:
        if rule.charge_model != ChargeModel.FIXED_FEE or not rule.fixed_fee:
            continue
        owner = rule.service_owner_id or rule.cost_center_id
        if owner == rule.cost_center_id:
            continue
        for center, amount in ((rule.cost_center_id, rule.fixed_fee), (owner, -rule.fixed_fee)):
            lines.append(
                AllocationLine(
                    run=run,
                    invoice=None,
                    provider="",
                    cost_center_id=center,
                    category=ChargeCategory.USAGE,
                    method=AllocationMethod.FIXED_FEE,
                    treatment=rule.treatment,
                    rule=rule,
                    amount=amount,
                )
            )
    return lines


def _inputs(
    *, version, rating_run, card_versions, invoices, lines_by_invoice, batch_ids, activity_rows, tolerance
) -> dict:
    """What the run read, as stable identities and checksums (no run-local ids)."""
    price_versions = sorted(
        (v.book.code, v.number, v.checksum) for v in rating_run.price_book_versions.select_related("book")
    )
    return {
        "mapping_version": {"number": version.number, "content_hash": version.content_hash},
        "price_book_versions": [list(v) for v in price_versions],
        "rate_card_versions": sorted([v.book.code, v.number, v.checksum] for v in card_versions),
        "invoices": [
            {
                "provider": invoice.provider,
                "invoice_id": invoice.invoice_id,
                "lines": len(lines_by_invoice[invoice.pk]),
                "checksum": hashlib.sha256(
                    "\n".join(
                        f"{line.line_key}:{line.effective_cost}:{line.billed_cost}"
                        for line in lines_by_invoice[invoice.pk]
                    ).encode()
                ).hexdigest(),
            }
            for invoice in invoices
        ],
        "usage_batches": batch_ids,
        "ledger": {
            "lines_rated": rating_run.lines_rated,
            "lines_unpriced": rating_run.lines_unpriced,
            "rated_cost": str(rating_run.cost),
        },
        "activity_counts": [[row.driver, row.cost_center.code, str(row.count)] for row in activity_rows],
        "tolerance": str(tolerance),
    }


def _fingerprint(inputs: dict, lines: list[AllocationLine]) -> str:
    """SHA-256 of the inputs and every line's key and cents: the same inputs give the same value."""
    codes = dict(CostCenter.objects.values_list("pk", "code"))
    rule_ids = {line.rule_id for line in lines if line.rule_id}
    positions = dict(MappingRule.objects.filter(pk__in=rule_ids).values_list("pk", "position"))
    pool_codes = dict(
        SharedCostPool.objects.filter(pk__in={line.pool_id for line in lines if line.pool_id}).values_list("pk", "code")
    )
    rows = sorted(
        "|".join(
            str(v)
            for v in (
                line.provider,
                line.invoice.invoice_id if line.invoice else "",
                codes.get(line.cost_center_id, ""),
                line.reason,
                line.team,
                line.feature,
                line.environment,
                line.modality,
                line.model,
                line.unit,
                line.category,
                line.method,
                line.treatment,
                positions.get(line.rule_id, ""),
                pool_codes.get(line.pool_id, ""),
                line.line_count,
                line.amount,
            )
        )
        for line in lines
    )
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode())
    for row in rows:
        digest.update(row.encode() + b"\n")
    return digest.hexdigest()


@transaction.atomic
def allocation_run_close(*, run: AllocationRun, at: datetime | None = None) -> AllocationRun:
    """Close the run's period: a statement from it was approved. Later runs of the period
    are refused; corrections go to the next period as adjustments."""
    run = AllocationRun.objects.select_for_update().get(pk=run.pk)
    if run.closed_at is None:
        run.closed_at = at or datetime.now(UTC)
        run.save(update_fields=["closed_at"])
    return run


def allocation_run_queue(*, period: str, actor=None) -> None:
    """Queue a run of a period on a worker (in-process when Celery is eager).

    Refused at once, before queueing, when the period is closed or a run of it
    is in progress; the worker's run checks both again under its lock.
    """
    from allocation.tasks import allocation_run_task

    _refuse_if_not_runnable(period, actor)
    _version_in_force_or_refuse(period)
    running = _run_in_progress(period)
    if running is not None:
        raise AllocationRunning(
            f"an allocation run of {period} is already {running.get('state', 'running')} "
            f"(started {running.get('started_at', '')} by {running.get('user') or 'someone'})",
            extra={"period": period, "progress": running},
        )
    _progress_start(period, actor, state="queued", step="waiting for a worker")
    transaction.on_commit(lambda: allocation_run_task.delay(period, actor.pk if actor is not None else None))


class _Rollback(Exception):
    """Unwinds a preview's transaction."""


def _grain_amounts(run: AllocationRun) -> dict[tuple, dict[str, Decimal]]:
    """Per usage grain (provider, team, feature, environment, modality, model): where its money went."""
    grains: dict[tuple, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    rows = (
        AllocationLine.objects.filter(run=run)
        .values(
            "provider",
            "team",
            "feature",
            "environment",
            "modality",
            "model",
            "pool__code",
            "cost_center__code",
            "reason",
        )
        .annotate(amount=Sum("amount"))
    )
    for row in rows:
        grain = (
            row["provider"],
            row["team"],
            row["feature"],
            row["environment"],
            row["modality"],
            row["model"],
            row["pool__code"] or "",
        )
        where = row["cost_center__code"] or f"unallocated:{row['reason']}"
        grains[grain][where] += row["amount"] or Decimal(0)
    return grains


def mapping_preview(*, version: MappingVersion, period: str) -> dict:
    """What signing `version` would change for `period` against the version in force:
    per cost center (and unallocated reason) the total now, with the draft and the change,
    and the money that moves from one to another (summed over usage grains, largest first).

    Both runs are made in full, in a transaction that is then rolled back: nothing is kept.
    """
    tolerance = _default_tolerance()
    current_version = mapping_version_in_force(period=period)
    results: dict[str, dict[tuple, dict[str, Decimal]]] = {"current": {}, "draft": {}}
    for label, candidate in (("current", current_version), ("draft", version)):
        if candidate is None:
            continue
        try:
            with transaction.atomic():
                run = _execute(
                    period=period,
                    actor=None,
                    tolerance=tolerance,
                    began=time.monotonic(),
                    version=candidate,
                    progress=lambda *args, **kwargs: None,
                )
                results[label] = _grain_amounts(run)
                raise _Rollback
        except _Rollback:
            pass
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: {"current": Decimal(0), "draft": Decimal(0)})
    moves: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for grain in set(results["current"]) | set(results["draft"]):
        before = results["current"].get(grain, {})
        after = results["draft"].get(grain, {})
        changes = {}
        for where in set(before) | set(after):
            totals[where]["current"] += before.get(where, Decimal(0))
            totals[where]["draft"] += after.get(where, Decimal(0))
            change = after.get(where, Decimal(0)) - before.get(where, Decimal(0))
            if change:
                changes[where] = change
        losers = sorted(((w, -c) for w, c in changes.items() if c < 0), key=lambda x: (-x[1], x[0]))
        gainers = sorted(((w, c) for w, c in changes.items() if c > 0), key=lambda x: (-x[1], x[0]))
        # Pair what one side lost with what another gained, largest first.
        i = j = 0
        losers = [list(x) for x in losers]
        gainers = [list(x) for x in gainers]
        while i < len(losers) and j < len(gainers):
            amount = min(losers[i][1], gainers[j][1])
            moves[(losers[i][0], gainers[j][0])] += amount
            losers[i][1] -= amount
            gainers[j][1] -= amount
            i += not losers[i][1]
            j += not gainers[j][1]
    names = dict(CostCenter.objects.values_list("code", "name"))
    return {
        "period": period,
        "current_version": current_version.number if current_version else None,
        "draft_version": version.number,
        "cost_centers": [
            {
                "code": where,
                "name": names.get(where, where.replace("unallocated:", "Unallocated: ")),
                "current": quantize(entry["current"], CENT),
                "draft": quantize(entry["draft"], CENT),
                "change": quantize(entry["draft"] - entry["current"], CENT),
            }
            for where, entry in sorted(totals.items())
        ],
        "moves": [
            {"from": source, "to": target, "amount": quantize(amount, CENT)}
            for (source, target), amount in sorted(moves.items(), key=lambda m: (-m[1], m[0]))
            if quantize(amount, CENT)
        ],
    }
