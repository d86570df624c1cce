"""The invoice split: each invoice's money over the cost centers, to the cent.

An invoice's usage is spread as its provider's usage was charged (`charging`), the
lines a shared-cost pool takes over the pool's weights, its other charges (tax,
credits, adjustments) over both pro rata; then its parts are rounded to cents by
largest remainder, so that for every invoice allocated + unallocated == its total.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from fnmatch import fnmatchcase
from typing import Any

from django.db.models import Q

from allocation.choices import (
    AllocationMethod,
    ChargeCategory,
    ChargeModel,
    PoolMethod,
    UnallocatedReason,
)
from allocation.models import (
    AllocationLine,
    AllocationRun,
    CostCenter,
    InvoiceLine,
    MappingRule,
    ProviderInvoice,
    SharedCostPool,
)
from allocation.services.runs.charging import ChargeKey, ProviderCharges
from pricing.money import CENT, largest_remainder, quantize
from pricing.periods import Period

__all__ = [
    "RowIds",
    "fixed_fee_lines",
    "period_active_centers",
    "period_invoices",
    "pool_for",
    "pool_weights_measured",
    "provider_allocation_lines",
]


_POOL_METHODS = {
    PoolMethod.PROPORTIONAL: AllocationMethod.POOL_PROPORTIONAL,
    PoolMethod.ACTIVITY: AllocationMethod.POOL_ACTIVITY,
    PoolMethod.EVEN: AllocationMethod.POOL_EVEN,
}


def pool_for(pools: list[SharedCostPool], invoice: ProviderInvoice, line: InvoiceLine) -> SharedCostPool | None:
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


def pool_weights_measured(
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


def period_active_centers(period: Period) -> list[str]:
    start, end = period.bounds
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
    charged: ProviderCharges,
    usage_money: Decimal,
    pool_of: dict[int, SharedCostPool | None],
    pool_weights: Callable[[SharedCostPool], dict[str, Decimal]],
) -> dict[ChargeKey, Decimal]:
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
    parts: dict[ChargeKey, Decimal] = defaultdict(Decimal)
    # Who bears this invoice's other charges (tax, credits, adjustments, purchases no pool
    # takes): its usage, as the provider's usage was charged, and its pooled lines.
    bearers: dict[ChargeKey, Decimal] = defaultdict(Decimal)
    with localcontext() as context:
        context.prec = 40
        if usage_money:
            for key, amount in charged.usage.items():
                parts[key] += amount * own_usage / usage_money
            for key, amount in charged.bearers.items():
                bearers[key] += amount * own_usage / usage_money
        elif own_usage:
            gap = ChargeKey(reason=UnallocatedReason.TRUE_UP_GAP, method=AllocationMethod.UNALLOCATED)
            parts[gap] += own_usage
            bearers[gap] += own_usage
        for (pool, category), money in pooled.items():
            weights = pool_weights(pool)
            total = sum(weights.values(), Decimal(0))
            method = _POOL_METHODS[pool.method]
            if not total:  # nothing measured: the whole line stays unallocated
                weights, total = {None: Decimal(1)}, Decimal(1)
            for center, weight in weights.items():
                key = ChargeKey(
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
                gap = ChargeKey(reason=UnallocatedReason.TRUE_UP_GAP, method=AllocationMethod.UNALLOCATED)
                parts[_with(gap, category=category)] += money
                continue
            for key, amount in bearers.items():
                parts[_with(key, category=category)] += amount * money / base
    return parts


def _with(key: ChargeKey, **changes: Any) -> ChargeKey:
    values = {name: getattr(key, name) for name in ChargeKey.__slots__}
    values.update(changes)
    return ChargeKey(**values)


def period_invoices(start: datetime, end: datetime) -> tuple[list, dict[int, list[InvoiceLine]], dict[str, list]]:
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


def provider_allocation_lines(
    run: AllocationRun,
    provider: str,
    provider_invoices: list[ProviderInvoice],
    lines_by_invoice: dict[int, list[InvoiceLine]],
    *,
    charged: ProviderCharges,
    usage_money: Decimal,
    pool_of: dict[int, SharedCostPool | None],
    pool_weights: Callable[[SharedCostPool], dict[str, Decimal]],
    ids: "RowIds",
) -> list[AllocationLine]:
    """A provider's allocation lines: each invoice's parts rounded to its total in cents."""
    lines: list[AllocationLine] = []
    # Line counts and rated cost ride on the invoice carrying most of the usage.
    carrier = max(
        provider_invoices,
        key=lambda i: (sum(x.effective_cost for x in lines_by_invoice[i.pk] if x.charge_category == "usage"), -i.pk),
        default=None,
    )
    counted: set[ChargeKey] = set()
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
class RowIds:
    """Row ids of the stable identities keys hold."""

    centers: dict[str, int]
    rules: dict[int, int]
    pools: dict[str, int]


def _allocation_line(
    run,
    key: ChargeKey,
    amount: Decimal,
    *,
    invoice,
    provider: str,
    charged: ProviderCharges,
    line_count: int,
    ids: RowIds,
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


def fixed_fee_lines(run: AllocationRun, rules: list[MappingRule]) -> list[AllocationLine]:
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
