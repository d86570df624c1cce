"""The allocation engine: one period's invoices on cost centers, to the cent.

DESIGN.md "Allocation run", steps 1 to 7, as `allocation_compute` runs them:

1. rate the period's usage as the mapping needs it (`rating_for_allocation`);
2. sum the rating's kept sums by the tags the mapping reads (`charging.ledger_groups`);
3. map each group with the first matching rule and charge it by the rule's charge
   model (`charging.charge_provider`);
4. allocate invoice lines that no usage explains by their shared-cost pool
   (`split`);
5. true up each provider's rated usage to its invoices within the tolerance
   (`charging`), what is beyond it kept, named, in the unallocated bucket;
6. reconcile rated usage against the invoices (`reconciliation`);
7. round each invoice's parts to cents by largest remainder and write the lines,
   with the run's inputs and fingerprint (`split`, `results`).

Money per group is Python over the groups (never over ledger lines).
"""

import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal

from django.conf import settings
from django.db import connection

from allocation.choices import (
    AllocationRunStatus,
    ChargeCategory,
    PoolDriver,
    PoolMethod,
)
from allocation.models import (
    ActivityCount,
    AllocationLine,
    AllocationRun,
    CostCenter,
    MappingRule,
    MappingVersion,
    RatingRequestCount,
    RatingRun,
    RatingSum,
    ReconciliationLine,
    SharedCostPool,
    Team,
)
from allocation.services.rating import RATED_KEYS, usage_rate_kept
from allocation.services.runs.charging import (
    ProviderCharges,
    RateCards,
    RuleMapper,
    charge_provider,
    group_fields,
    ledger_groups,
    request_counts,
    request_fields,
)
from allocation.services.runs.progress import advisory_key, progress_set
from allocation.services.runs.reconciliation import reconcile_provider
from allocation.services.runs.results import run_fingerprint, run_inputs
from allocation.services.runs.split import (
    RowIds,
    fixed_fee_lines,
    period_active_centers,
    period_invoices,
    pool_for,
    pool_weights_measured,
    provider_allocation_lines,
)
from pricing.errors import ValidationFailed
from pricing.money import CENT, quantize
from pricing.periods import Period

__all__ = [
    "allocation_compute",
    "default_tolerance",
    "kept_sums_prune",
    "rating_for_allocation",
    "rating_needs",
    "split_by_requests",
]


def default_tolerance() -> Decimal:
    return Decimal(str(getattr(settings, "CHARGEBACK_RECONCILIATION_TOLERANCE", "0.02")))


def split_by_requests(pools: list[SharedCostPool]) -> bool:
    return any(pool.method == PoolMethod.PROPORTIONAL and pool.driver == PoolDriver.REQUESTS for pool in pools)


def rating_needs(rules: list[MappingRule], pools: list[SharedCostPool]) -> tuple[list[str], list[str] | None]:
    """The tags an allocation by these rules and pools needs kept: the sums', and the
    request counts' (None when no pool is driven by requests)."""
    sum_fields = [f for f in group_fields(rules) if f not in RATED_KEYS]
    return sum_fields, request_fields(rules) if split_by_requests(pools) else None


def rating_for_allocation(*, period: Period, actor, rules: list[MappingRule], pools: list[SharedCostPool]) -> RatingRun:
    """The period's rating as the allocation needs it (`usage_rate_kept`): the newest as
    it is while no batch has come since (rated ahead, or by an earlier run), extended
    with the later batches' lines, or a new one."""
    sum_fields, request_fields = rating_needs(rules, pools)
    return usage_rate_kept(period=period, created_by=actor, sum_fields=sum_fields, request_fields=request_fields)


def kept_sums_prune(period: Period, newest: RatingRun) -> None:
    """Drop the kept sums of the period's older ratings: only the newest is read again
    (the rating runs stay, for the allocation runs' inputs). Done under the period's
    lock, so never while a run of the period reads them; skipped if a run holds it."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", advisory_key(period))
            if not cursor.fetchone()[0]:
                return
    RatingSum.objects.filter(run__period=period, run__pk__lt=newest.pk).delete()
    RatingRequestCount.objects.filter(run__period=period, run__pk__lt=newest.pk).delete()


def allocation_compute(
    *,
    period: Period,
    actor,
    tolerance: Decimal,
    began: float,
    version: MappingVersion,
    progress: Callable[..., None] = progress_set,
) -> AllocationRun:
    """Allocate `period` by `version`, inside the caller's transaction, and write the run.

    The run (`run.allocation_run_execute`) calls it under the period's lock with the
    version in force; the mapping preview calls it with a draft and no progress to
    report, then rolls back.
    """
    start, end = period.bounds
    report = progress
    rules = list(version.rules.select_related("cost_center", "service_owner", "rate_card").order_by("position"))
    pools = list(version.pools.prefetch_related("target_cost_centers").order_by("code"))
    fields = group_fields(rules)
    report(period, step="rating usage", percent=5)
    rating_run = rating_for_allocation(period=period, actor=actor, rules=rules, pools=pools)
    report(period, step="mapping usage", percent=35)
    groups = ledger_groups(rating_run=rating_run, fields=fields)
    batch_ids = list(
        RatingSum.objects.filter(run=rating_run).values_list("batch_id", flat=True).distinct().order_by("batch_id")
    )
    kept_sums_prune(period, rating_run)
    mapper = RuleMapper(rules)
    cards = RateCards(start)
    team_centers = dict(Team.objects.values_list("code", "cost_center__code"))

    invoices, lines_by_invoice, invoices_by_provider = period_invoices(start, end)
    # Which pool takes each invoice line, decided once for the parts, the true-up and the reconciliation.
    pool_of = {line.pk: pool_for(pools, invoice, line) for invoice in invoices for line in lines_by_invoice[invoice.pk]}
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
    charged_by_provider: dict[str, ProviderCharges] = {}
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
        charged_by_provider[provider] = charge_provider(
            groups=groups.get(provider, []),
            usage_money=usage_money,
            tolerance=tolerance,
            mapper=mapper,
            cards=cards,
            team_centers=team_centers,
            drivers=drivers,
            provider=provider,
        )
    if split_by_requests(pools):
        drivers[PoolDriver.REQUESTS] = request_counts(rating_run=rating_run, mapper=mapper, team_centers=team_centers)

    report(period, step="shared pools and true-up", percent=70)
    activity: dict[str, dict[str, Decimal]] = defaultdict(dict)
    activity_rows = list(
        ActivityCount.objects.filter(period=period).select_related("cost_center").order_by("driver", "cost_center_id")
    )
    for row in activity_rows:
        activity[row.driver][row.cost_center.code] = row.count
    active_centers = period_active_centers(period)
    weights_cache: dict[int, dict[str, Decimal]] = {}

    def pool_weights(pool: SharedCostPool) -> dict[str, Decimal]:
        if pool.pk not in weights_cache:
            weights_cache[pool.pk] = pool_weights_measured(
                pool, drivers=drivers, activity=activity, active_centers=active_centers
            )
        return weights_cache[pool.pk]

    for previous in AllocationRun.objects.select_for_update().filter(
        period=period, status=AllocationRunStatus.COMPLETED
    ):
        previous.status = AllocationRunStatus.SUPERSEDED
        previous.save(update_fields=["status"])
    run = AllocationRun.objects.create(
        period=str(period),
        mapping_version=version,
        rating_run=rating_run,
        tolerance=tolerance,
        invoice_total=0,
        allocated=0,
        unallocated=0,
        created_by=actor,
    )
    report(period, run_id=run.pk)

    ids = RowIds(
        centers=dict(CostCenter.objects.values_list("code", "pk")),
        rules={rule.position: rule.pk for rule in rules},
        pools={pool.code: pool.pk for pool in pools},
    )
    allocation_lines: list[AllocationLine] = []
    reconciliation: list[ReconciliationLine] = []
    for provider, charged in charged_by_provider.items():
        provider_invoices = invoices_by_provider.get(provider, [])
        allocation_lines.extend(
            provider_allocation_lines(
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
            reconcile_provider(
                run,
                provider,
                [line for invoice in provider_invoices for line in lines_by_invoice[invoice.pk]],
                charged,
                pool_of,
                tolerance,
            )
        )
    allocation_lines.extend(fixed_fee_lines(run, rules))

    report(period, step="writing results", percent=90)
    AllocationLine.objects.bulk_create(allocation_lines, batch_size=2000)
    ReconciliationLine.objects.bulk_create(reconciliation)
    run.invoices.set(invoices)
    run.usage_batches.set(batch_ids)
    card_versions = [v for v in cards.versions.values() if v is not None]
    run.rate_card_versions.set(card_versions)
    run.inputs = run_inputs(
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
    run.fingerprint = run_fingerprint(run.inputs, allocation_lines)
    run.seconds = Decimal(time.monotonic() - began).quantize(Decimal("0.001"))
    run.save()
    AllocationRun.objects.filter(
        superseded_by__isnull=True, period=period, status=AllocationRunStatus.SUPERSEDED
    ).update(superseded_by=run)
    return run
