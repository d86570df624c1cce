"""Celery tasks of the allocation package: thin callers of services."""

from celery import shared_task

from allocation.models import UsageBatch
from allocation.services.ledger import usage_batch_ingest_file

__all__ = ["allocation_run_task", "usage_batch_ingest_task", "usage_rate_open_periods_task", "usage_rate_period_task"]


@shared_task(acks_late=True)
def usage_batch_ingest_task(batch_id: int, path: str) -> dict:
    """Ingest a created batch's file. Re-running is safe: event keys dedupe."""
    batch = UsageBatch.objects.get(pk=batch_id)
    batch = usage_batch_ingest_file(batch=batch, path=path)
    return {"batch_id": batch.pk, "status": batch.status, "rows_read": batch.rows_read}


@shared_task(acks_late=True)
def usage_rate_period_task(period: str, user_id: int | None = None) -> dict:
    """Rate a period; a repeat makes a newer run, which reports then use."""
    from django.contrib.auth import get_user_model

    from allocation.services.runs.run import allocation_usage_rate

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    run = allocation_usage_rate(period=period, actor=user)
    return {"rating_run": run.pk, "lines_rated": run.lines_rated, "lines_unpriced": run.lines_unpriced}


@shared_task(acks_late=True)
def usage_rate_open_periods_task() -> list[dict]:
    """Nightly (beat): rate this month and the last, so that their allocation runs at the
    close price kept sums; a month whose rating still stands is left as it is."""
    from allocation.services.runs.run import allocation_usage_rate, open_periods

    return [
        {"period": period, "rating_run": run.pk, "lines_rated": run.lines_rated}
        for period in open_periods()
        for run in [allocation_usage_rate(period=period)]
    ]


@shared_task(acks_late=True)
def allocation_run_task(period: str, user_id: int | None = None) -> dict:
    """Allocate a period. A refusal (a run in progress, a closed period) is the answer, not
    a retry: the service's transaction leaves nothing behind."""
    from django.contrib.auth import get_user_model

    from allocation.services.runs.run import allocation_run_execute

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    run = allocation_run_execute(period=period, actor=user)
    return {"allocation_run": run.pk, "fingerprint": run.fingerprint, "flagged": run.is_flagged}
