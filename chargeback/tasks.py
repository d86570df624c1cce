"""Celery tasks of the close: thin callers of services."""

from celery import shared_task

from allocation.services.runs.run import open_periods
from chargeback.services.feature_counts import feature_counts_update

__all__ = ["feature_counts_open_periods_task"]


@shared_task(acks_late=True)
def feature_counts_open_periods_task() -> list[dict]:
    """Nightly (beat): count the requests and traces per feature of the batches that
    landed in this month and the last, so that building their statements reads kept
    counts only."""
    return [{"period": str(period), "rows": feature_counts_update(period=period)} for period in open_periods()]
