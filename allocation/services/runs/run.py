"""The allocation run: one period allocated under its lock, with visible progress.

`allocation_run_execute` checks the actor's role, takes the period's lock, refuses a
closed period or one without a signed mapping version, and runs the engine
(`engine.allocation_compute`) in one transaction: complete, or nothing left behind.
The same transaction books in the period the corrections of earlier closed periods
that late data changed (`corrections.allocation_corrections_book`).
`allocation_run_queue` puts a run on a worker; `allocation_usage_rate` rates a
period ahead of its run; `allocation_run_close` closes the period on approval.
"""

import time
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db import transaction

from allocation.access import Permission, access_require
from allocation.choices import AllocationProgressState, AllocationRunStatus
from allocation.models import (
    AllocationRun,
    MappingVersion,
    RatingRun,
)
from allocation.selectors.mapping import mapping_version_in_force
from allocation.services.rating import usage_rate_period
from allocation.services.runs.corrections import PeriodClosed, allocation_corrections_book
from allocation.services.runs.engine import (
    allocation_compute,
    default_tolerance,
    kept_sums_prune,
    rating_for_allocation,
)
from allocation.services.runs.progress import (
    AllocationRunning,
    allocation_progress,
    period_lock,
    progress_set,
    progress_start,
    run_in_progress,
)
from pricing.errors import ValidationFailed
from pricing.periods import Period
from pricing.task_queue import task_queue_on_commit

__all__ = [
    "PeriodClosed",
    "allocation_run_close",
    "allocation_run_execute",
    "allocation_run_queue",
    "allocation_usage_rate",
    "open_periods",
]


def _refuse_if_not_runnable(period: Period, actor) -> None:
    """An actor without the role, or a closed period, is refused."""
    if actor is not None:
        access_require(actor, Permission.RUN_ALLOCATION, doing=f"run the allocation of {period}")
    closed = (
        AllocationRun.objects.filter(period=period, closed_at__isnull=False)
        .exclude(status=AllocationRunStatus.CORRECTION)
        .first()
    )
    if closed is not None:
        raise PeriodClosed(
            f"{period} is closed: a statement from allocation run #{closed.pk} was approved; "
            "late data for it is booked as corrections in the next open period's run",
            extra={"period": str(period), "run": closed.pk},
        )


def _version_in_force_or_refuse(period: Period) -> MappingVersion:
    version = mapping_version_in_force(period=period)
    if version is None:
        raise ValidationFailed(
            f"no signed mapping version is in force for {period}: load one (load_mapping) and sign it off",
            code="no_mapping_version",
        )
    return version


@transaction.atomic
def allocation_usage_rate(*, period: Period, actor=None) -> RatingRun:
    """Rate a period ahead of its allocation (nightly, the command, the rating pages),
    keeping what the mapping version in force needs, so that the month's allocation
    runs price the kept sums instead of reading the ledger. A rating that still stands
    for the ledger and the prices in force is returned as it is. Without a version in
    force, a plain rating."""
    version = mapping_version_in_force(period=period)
    if version is None:
        return usage_rate_period(period=period, created_by=actor)
    rating = rating_for_allocation(
        period=period, actor=actor, rules=list(version.rules.order_by("position")), pools=list(version.pools.all())
    )
    kept_sums_prune(period, rating)
    return rating


def open_periods(*, today: date | None = None) -> list[Period]:
    """The months a nightly rating keeps ready: the last one (its close is under way) and this one."""
    this = Period.of(today) if today is not None else Period.current()
    return [this.previous, this]


def allocation_run_execute(
    *,
    period: Period,
    actor=None,
    tolerance: Decimal | None = None,
) -> AllocationRun:
    """Allocate one period: every invoice cent on a cost center or in the named unallocated
    bucket. Complete or nothing (one transaction); refused while another run of the period
    runs, and when the period is closed. Supersedes the period's current run, and books in
    the period the corrections of earlier closed periods that late data changed."""
    if actor is not None:
        access_require(actor, Permission.RUN_ALLOCATION, doing=f"run the allocation of {period}")
    tolerance = default_tolerance() if tolerance is None else tolerance
    if not 0 <= tolerance < 1:
        raise ValidationFailed(f"tolerance {tolerance} must be at least 0 and below 1", code="tolerance_invalid")
    began = time.monotonic()
    try:
        with transaction.atomic():
            period_lock(period, actor)
            _refuse_if_not_runnable(period, None)  # the actor's role is checked before the lock
            version = _version_in_force_or_refuse(period)
            run = allocation_compute(period=period, version=version, actor=actor, tolerance=tolerance, began=began)
            progress_set(period, step="booking corrections of closed periods", percent=95)
            allocation_corrections_book(period=period, actor=actor)
    except AllocationRunning:
        raise
    except Exception as exc:
        if (allocation_progress(period=period) or {}).get("state") == AllocationProgressState.RUNNING:
            progress_set(period, state=AllocationProgressState.FAILED, error=str(exc))
        raise
    progress_set(period, state=AllocationProgressState.COMPLETED, step="done", percent=100, run_id=run.pk)
    # The month now has statements to drill into: its ledger indexes, built on a worker.
    task_queue_on_commit("allocation.tasks.ledger_month_indexes_task", str(period))
    return run


@transaction.atomic
def allocation_run_close(*, run: AllocationRun, at: datetime | None = None) -> AllocationRun:
    """Close the run's period: a statement from it was approved. Later runs of the period
    are refused, and so is booking corrections in it: the corrections booked in it close
    with it; late data for it goes to the next open period as corrections."""
    run = AllocationRun.objects.select_for_update().get(pk=run.pk)
    if run.status == AllocationRunStatus.CORRECTION:
        raise ValidationFailed(
            f"allocation run #{run.pk} is a correction of {run.period}: it closes with {run.booked_in}, "
            "the period it is booked in",
            code="correction_not_closable",
            extra={"run": run.pk, "booked_in": run.booked_in},
        )
    if run.closed_at is None:
        run.closed_at = at or datetime.now(UTC)
        run.save(update_fields=["closed_at"])
        AllocationRun.objects.filter(
            status=AllocationRunStatus.CORRECTION, booked_in=run.period, closed_at__isnull=True
        ).update(closed_at=run.closed_at)
    return run


def allocation_run_queue(*, period: Period, actor=None) -> None:
    """Queue a run of a period on a worker (in-process when Celery is eager).

    Refused at once, before queueing, when the period is closed or a run of it
    is in progress; the worker's run checks both again under its lock.
    """
    _refuse_if_not_runnable(period, actor)
    _version_in_force_or_refuse(period)
    running = run_in_progress(period)
    if running is not None:
        raise AllocationRunning(
            f"an allocation run of {period} is already {running.get('state', 'running')} "
            f"(started {running.get('started_at', '')} by {running.get('user') or 'someone'})",
            extra={"period": str(period), "progress": running},
        )
    progress_start(period, actor, state=AllocationProgressState.QUEUED, step="waiting for a worker")
    task_queue_on_commit("allocation.tasks.allocation_run_task", str(period), actor.pk if actor is not None else None)
