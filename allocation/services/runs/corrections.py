"""Corrections: late data for a closed period, booked in a later, open one.

A closed period is never run again (its run's statements were approved). Usage or
invoice lines that reach it later (a late batch, a restated provider bucket, a
provider credit) change what its allocation would be; `allocation_corrections_book`
books that change in an open period as a correction run (DESIGN.md "Corrections,
never rewrites"):

1. For every closed period before the booking period, look for late data since its
   allocation was last accounted for (`AllocationRun.late_data_checked`): ledger
   lines in it from a usage batch after the one last looked through, other invoice
   line counts, other activity counts. One read of the ledger lines since the
   oldest such batch serves every closed period, so a booking with nothing new is
   a few small queries.
2. Where some came, allocate the period now with the engine, under its closed run's
   mapping version and tolerance, in a savepoint that is rolled back (as the mapping
   preview does); only the rating is kept, as any rating ahead of a run is.
3. Book the difference, per line key, between that and the closed run plus the
   corrections booked before: a run with status `correction`, `corrects` the closed
   run, `booked_in` the booking period, whose lines are the deltas in cents and
   whose totals are the deltas of the totals (they tie out like a run's).

Booking again in the same open period replaces its corrections (they are computed
against the others); a correction booked in a closed period is never touched.
"""

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Max
from django.db.models.functions import TruncMonth

from allocation.access import Permission, access_require
from allocation.choices import AllocationRunStatus, UsageBatchStatus
from allocation.models import (
    ActivityCount,
    AllocationLine,
    AllocationRun,
    ProviderInvoice,
    RatingRun,
    ReconciliationLine,
    UsageBatch,
    UsageLine,
)
from allocation.selectors.runs import correction_runs_booked_in, period_is_closed, period_next_open
from allocation.services.runs.engine import allocation_compute, kept_sums_prune, rating_for_allocation
from allocation.services.runs.progress import AllocationRunning, advisory_key
from allocation.services.runs.results import run_fingerprint
from pricing.errors import Conflict
from pricing.periods import Period

__all__ = ["CORRECTION_KEY", "PeriodClosed", "allocation_corrections_book"]


class PeriodClosed(Conflict):
    code = "period_closed"


# What a correction line is the difference of: an allocation line's key. Its money, quantity,
# ledger line count and rated cost are the differences per key.
CORRECTION_KEY: tuple[str, ...] = (
    "cost_center_id",
    "reason",
    "provider",
    "invoice_id",
    "team",
    "feature",
    "environment",
    "modality",
    "model",
    "unit",
    "category",
    "method",
    "treatment",
    "rule_id",
    "pool_id",
)
_SUMMED: tuple[str, ...] = ("amount", "quantity", "line_count", "rated_cost")
# A batch that lands while the period is allocated anew makes that allocation read another
# rating than the one kept; it is made again, this many times at most.
_ATTEMPTS = 3


class _Rollback(Exception):
    """Unwinds the savepoint of an allocation made only to be compared."""


@dataclass(frozen=True)
class _Allocation:
    """A period's allocation as the engine makes it now, read before its savepoint is rolled back."""

    rating_run_id: int
    lines: list[dict]
    invoice_total: Decimal
    allocated: Decimal
    unallocated: Decimal
    is_flagged: bool
    inputs: dict
    invoice_ids: list[int]
    batch_ids: list[int]
    card_version_ids: list[int]
    reconciliation: list[dict]

    @classmethod
    def of(cls, run: AllocationRun) -> "_Allocation":
        return cls(
            rating_run_id=run.rating_run_id,
            lines=list(AllocationLine.objects.filter(run=run).values(*CORRECTION_KEY, *_SUMMED)),
            invoice_total=run.invoice_total,
            allocated=run.allocated,
            unallocated=run.unallocated,
            is_flagged=run.is_flagged,
            inputs=run.inputs,
            invoice_ids=list(run.invoices.values_list("pk", flat=True)),
            batch_ids=list(run.usage_batches.values_list("pk", flat=True)),
            card_version_ids=list(run.rate_card_versions.values_list("pk", flat=True)),
            reconciliation=list(
                run.reconciliation.values(
                    "provider", "model", "invoice_cost", "rated_cost", "variance", "variance_share", "within_tolerance"
                )
            ),
        )


@transaction.atomic
def allocation_corrections_book(*, period: Period, actor=None) -> list[AllocationRun]:
    """Book in `period` the corrections of every earlier closed period that late data changed.

    Refused (`PeriodClosed`) when `period` is closed. Idempotent: a period whose late data
    is already accounted for is not allocated again, and its corrections booked in
    `period` stand; one with new late data has them replaced. Returns the corrections
    booked in `period` (of every corrected period), oldest corrected period first.
    """
    if actor is not None:
        access_require(actor, Permission.RUN_ALLOCATION, doing=f"book corrections of closed periods in {period}")
    _booking_lock(period)
    # Locked as the close locks it, so that a statement approved meanwhile waits for the booking.
    list(AllocationRun.objects.select_for_update().filter(period=str(period), status=AllocationRunStatus.COMPLETED))
    if period_is_closed(period=period):
        raise PeriodClosed(
            f"{period} is closed: its corrections stand as booked; book late data in {period_next_open(after=period)}",
            extra={"period": str(period), "next_open": str(period_next_open(after=period))},
        )
    # Each closed run locked (not its rating or mapping version), so that two bookings in two
    # open periods compute their differences one after the other.
    closed_runs = list(
        AllocationRun.objects.select_for_update(of=("self",))
        .filter(period__lt=str(period), closed_at__isnull=False)
        .exclude(status=AllocationRunStatus.CORRECTION)
        .select_related("rating_run", "mapping_version")
        .order_by("period")
    )
    if not closed_runs:
        return []
    mark, settled = _ledger_mark()
    held = {closed.pk: _late_data_held(closed) for closed in closed_runs}
    late_usage = _periods_with_late_usage([(Period.parse(c.period), held[c.pk]["batch"]) for c in closed_runs])
    for closed in closed_runs:
        month = Period.parse(closed.period)
        now = {"invoices": _invoice_counts(month), "activity": _activity_counts(month)}
        known = held[closed.pk]
        if month in late_usage or now["invoices"] != known["invoices"] or now["activity"] != known["activity"]:
            _book(closed=closed, month=month, period=period, actor=actor, known=known)
        elif settled and (known["batch"] or 0) < (mark or 0):
            # Nothing new up to the mark: the next booking reads only the batches after it.
            _late_data_record(closed, {"batch": mark, **now})
    return list(correction_runs_booked_in(period=period))


def _book(*, closed: AllocationRun, month: Period, period: Period, actor, known: dict) -> AllocationRun | None:
    """Allocate `month` now and book its difference from the closed run and the other
    corrections in `period`, replacing the corrections booked there before."""
    began = time.monotonic()
    allocation, rating = _allocation_now(closed, month, actor)
    AllocationRun.objects.filter(corrects=closed, booked_in=str(period)).delete()
    others = list(AllocationRun.objects.filter(corrects=closed).order_by("booked_in", "pk"))
    _late_data_record(
        closed,
        {
            "batch": rating.ledger_batch_high if rating.ledger_settled else known["batch"],
            "invoices": sorted([i["provider"], i["invoice_id"], i["lines"]] for i in allocation.inputs["invoices"]),
            "activity": sorted(allocation.inputs["activity_counts"]),
        },
    )
    held_lines = AllocationLine.objects.filter(run__in=[closed, *others]).values(*CORRECTION_KEY, *_SUMMED)
    deltas = _sums(allocation.lines)
    for key, sums in _sums(held_lines.iterator(chunk_size=2000)).items():
        deltas[key] = [now - before for now, before in zip(deltas[key], sums, strict=True)]
    lines = [
        AllocationLine(**dict(zip(CORRECTION_KEY, key, strict=True)), **dict(zip(_SUMMED, sums, strict=True)))
        for key, sums in sorted(deltas.items(), key=lambda item: tuple("" if v is None else str(v) for v in item[0]))
        # A key whose money, quantity and line count did not move is no correction.
        if sums[0] or sums[1] or sums[2]
    ]
    invoice_total = allocation.invoice_total - closed.invoice_total - sum((c.invoice_total for c in others), Decimal(0))
    allocated = sum((line.amount for line in lines if line.cost_center_id is not None), Decimal(0))
    unallocated = sum((line.amount for line in lines if line.cost_center_id is None), Decimal(0))
    expected = (
        allocation.allocated - closed.allocated - sum((c.allocated for c in others), Decimal(0)),
        allocation.unallocated - closed.unallocated - sum((c.unallocated for c in others), Decimal(0)),
    )
    if (allocated, unallocated) != expected or allocated + unallocated != invoice_total:
        raise AssertionError(f"{month}: the correction's lines do not add up to the difference of the totals")
    if not lines and not invoice_total:
        return None
    inputs = {
        **allocation.inputs,
        "correction": {
            "period": str(month),
            "booked_in": str(period),
            "corrects": closed.fingerprint,
            "against": [[c.booked_in, c.fingerprint] for c in others],
        },
    }
    correction = AllocationRun.objects.create(
        period=str(month),
        status=AllocationRunStatus.CORRECTION,
        corrects=closed,
        booked_in=str(period),
        mapping_version=closed.mapping_version,
        rating_run_id=allocation.rating_run_id,
        tolerance=closed.tolerance,
        is_flagged=allocation.is_flagged,
        invoice_total=invoice_total,
        allocated=allocated,
        unallocated=unallocated,
        inputs=inputs,
        created_by=actor,
    )
    invoices = ProviderInvoice.objects.in_bulk({line.invoice_id for line in lines if line.invoice_id})
    for line in lines:
        line.run = correction
        line.invoice = invoices.get(line.invoice_id)
    AllocationLine.objects.bulk_create(lines, batch_size=2000)
    # The period's reconciliation as it stands with the correction, not a difference.
    ReconciliationLine.objects.bulk_create(
        [ReconciliationLine(run=correction, **row) for row in allocation.reconciliation]
    )
    correction.invoices.set(allocation.invoice_ids)
    correction.usage_batches.set(allocation.batch_ids)
    correction.rate_card_versions.set(allocation.card_version_ids)
    correction.fingerprint = run_fingerprint(inputs, lines)
    correction.seconds = Decimal(time.monotonic() - began).quantize(Decimal("0.001"))
    correction.save(update_fields=["fingerprint", "seconds"])
    return correction


def _allocation_now(closed: AllocationRun, month: Period, actor) -> tuple[_Allocation, RatingRun]:
    """The closed period allocated now, by its run's mapping version and tolerance, and the
    rating it read. The rating is made first and kept (a rating of the month, like one made
    ahead of a run); the allocation is made in a savepoint that is rolled back, so the closed
    run stays current and nothing of the allocation is kept."""
    version = closed.mapping_version
    rules = list(version.rules.order_by("position"))
    pools = list(version.pools.all())
    for _ in range(_ATTEMPTS):
        rating = rating_for_allocation(period=month, actor=actor, rules=rules, pools=pools)
        kept_sums_prune(month, rating)
        try:
            with transaction.atomic():
                run = allocation_compute(
                    period=month,
                    actor=actor,
                    tolerance=closed.tolerance,
                    began=time.monotonic(),
                    version=version,
                    progress=_quiet,
                )
                allocation = _Allocation.of(run)
                raise _Rollback
        except _Rollback:
            pass
        if allocation.rating_run_id == rating.pk:
            return allocation, rating
    raise Conflict(
        f"usage for {month} kept landing while its correction was computed; book the corrections again",
        code="ledger_loading",
        extra={"period": str(month)},
    )


def _quiet(*args, **kwargs) -> None:
    """A correction reports no progress of its own: the run booking it does."""


def _sums(rows) -> defaultdict:
    """Per line key, its [amount, quantity, line count, rated cost] summed."""
    sums: defaultdict = defaultdict(lambda: [Decimal(0), Decimal(0), 0, Decimal(0)])
    for row in rows:
        entry = sums[tuple(row[field] for field in CORRECTION_KEY)]
        for i, field in enumerate(_SUMMED):
            entry[i] += row[field]
    return sums


# --- late data -------------------------------------------------------------------------------------------------


def _late_data_held(closed: AllocationRun) -> dict:
    """The late data a closed period's allocation accounts for: as last recorded, or else
    what its run read (the newest batch its rating read, if none was loading then)."""
    if closed.late_data_checked:
        return closed.late_data_checked
    rating = closed.rating_run
    return {
        "batch": rating.ledger_batch_high if rating.ledger_settled else None,
        "invoices": sorted([i["provider"], i["invoice_id"], i["lines"]] for i in closed.inputs.get("invoices", [])),
        "activity": sorted(closed.inputs.get("activity_counts", [])),
    }


def _late_data_record(closed: AllocationRun, state: dict) -> None:
    """Record on the closed run what its period's allocation now accounts for (bookkeeping
    beside its result, like its closing time: the run's lines and fingerprint never change)."""
    AllocationRun.objects.filter(pk=closed.pk).update(late_data_checked=state)
    closed.late_data_checked = state


def _periods_with_late_usage(marks: list[tuple[Period, int | None]]) -> set[Period]:
    """The periods holding ledger lines from a batch after their mark (all, for a mark not
    known). One read of the lines of the batches after the oldest mark (on PostgreSQL a
    block-range index finds them), grouped by month."""
    late = {month for month, mark in marks if mark is None}
    known = [(month, mark) for month, mark in marks if mark is not None]
    if not known:
        return late
    newest = (
        UsageLine.objects.filter(
            batch_id__gt=min(mark for _, mark in known),
            occurred_at__gte=min(month for month, _ in known).start,
            occurred_at__lt=max(month for month, _ in known).end,
        )
        .annotate(month=TruncMonth("occurred_at", tzinfo=UTC))
        .values("month")
        .annotate(batch=Max("batch_id"))
    )
    batches = {Period.of(row["month"]): row["batch"] for row in newest}
    return late | {month for month, mark in known if batches.get(month, 0) > mark}


def _invoice_counts(month: Period) -> list[list]:
    """[provider, invoice id, lines] of the invoices the month's run reads: lines are only
    ever added (a restated charge is a reversal and a replacement), so a count says whether
    any came."""
    start, end = month.bounds
    rows = (
        ProviderInvoice.objects.filter(billing_period_start__gte=start, billing_period_start__lt=end)
        .annotate(lines_count=Count("lines"))
        .values_list("provider", "invoice_id", "lines_count")
    )
    return sorted([provider, invoice_id, count] for provider, invoice_id, count in rows)


def _activity_counts(month: Period) -> list[list]:
    """The month's activity counts as a run's inputs record them."""
    rows = ActivityCount.objects.filter(period=str(month)).values_list("driver", "cost_center__code", "count")
    return sorted([driver, code, str(count)] for driver, code, count in rows)


def _ledger_mark() -> tuple[int | None, bool]:
    """The newest usage batch and whether none is loading, read before the ledger: batches
    up to a settled mark are complete, so lines of any later one come after it."""
    mark = UsageBatch.objects.aggregate(high=Max("pk"))["high"]
    loading = UsageBatch.objects.filter(status__in=[UsageBatchStatus.PENDING, UsageBatchStatus.RUNNING]).exists()
    return mark, not loading


def _booking_lock(period: Period) -> None:
    """Refuse a booking while a run of the period runs in another session (the period's
    advisory lock, which the run booking its own corrections already holds); on the embedded
    default one process does both, one after the other."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", advisory_key(period))
        locked = cursor.fetchone()[0]
    if not locked:
        raise AllocationRunning(
            f"an allocation run of {period} is running; its corrections are booked when it completes",
            extra={"period": str(period)},
        )
