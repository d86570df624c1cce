"""Celery tasks of the allocation app: thin callers of services.

Each takes ids and text (JSON-serializable), parses them at this interface (a
period with `Period.parse`), loads rows and calls one service. Services queue
them by name through `pricing.task_queue`, never by importing this module.
"""

from celery import shared_task
from django.contrib.auth import get_user_model

from allocation.models import UsageBatch
from allocation.services.ledger import usage_batch_ingest_file
from allocation.services.ledger.month_indexes import ledger_month_indexes_ensure
from allocation.services.runs.run import allocation_run_execute, allocation_usage_rate, open_periods
from pricing.periods import Period

__all__ = [
    "allocation_run_task",
    "ledger_month_indexes_task",
    "usage_batch_ingest_task",
    "usage_rate_open_periods_task",
    "usage_rate_period_task",
]


def _user(user_id: int | None):
    return get_user_model().objects.filter(pk=user_id).first() if user_id else None


@shared_task(acks_late=True)
def usage_batch_ingest_task(batch_id: int, path: str) -> dict:
    """Ingest a created batch's file. Re-running is safe: event keys dedupe."""
    batch = UsageBatch.objects.get(pk=batch_id)
    batch = usage_batch_ingest_file(batch=batch, path=path)
    return {"batch_id": batch.pk, "status": batch.status, "rows_read": batch.rows_read}


@shared_task(acks_late=True)
def usage_rate_period_task(period: str, user_id: int | None = None) -> dict:
    """Rate a period; a repeat makes a newer run, which reports then use."""
    run = allocation_usage_rate(period=Period.parse(period), actor=_user(user_id))
    return {"rating_run": run.pk, "lines_rated": run.lines_rated, "lines_unpriced": run.lines_unpriced}


@shared_task(acks_late=True)
def usage_rate_open_periods_task() -> list[dict]:
    """Nightly (beat): rate this month and the last, so that their allocation runs at the
    close price kept sums; a month whose rating still stands is left as it is."""
    return [
        {"period": str(period), "rating_run": run.pk, "lines_rated": run.lines_rated}
        for period in open_periods()
        for run in [allocation_usage_rate(period=period)]
    ]


@shared_task(acks_late=True)
def allocation_run_task(period: str, user_id: int | None = None) -> dict:
    """Allocate a period. A refusal (a run in progress, a closed period) is the answer, not
    a retry: the service's transaction leaves nothing behind."""
    run = allocation_run_execute(period=Period.parse(period), actor=_user(user_id))
    return {"allocation_run": run.pk, "fingerprint": run.fingerprint, "flagged": run.is_flagged}


@shared_task(acks_late=True)
def ledger_month_indexes_task(period: str) -> dict:
    """Build an allocated month's drill-down indexes (queued when its run is done)."""
    return {"period": period, "built": ledger_month_indexes_ensure(period=Period.parse(period))}
