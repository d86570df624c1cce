"""Requests and traces per feature of a month, the divisors of a statement's cost per
request and per trace.

Counted from the ledger once per usage batch (batches are written once and never
change) and kept (LedgerFeatureCount), so that building statements reads a few thousand
kept rows instead of a distinct count over the month's millions of lines; a build
counts only the batches that landed since the last count. A batch still loading, and
every later one, waits for a later count, so that no batch is counted half-written.
"""

from django.db import transaction
from django.db.models import Count, Max, Min, Q, Sum

from allocation.choices import UsageBatchStatus
from allocation.models import UsageBatch, UsageLine
from chargeback.models import LedgerFeatureCount, LedgerFeatureCountMark
from pricing.periods import Period

__all__ = ["feature_counts", "feature_counts_update"]

_LOADING = (UsageBatchStatus.PENDING, UsageBatchStatus.RUNNING)


def _settled_high() -> int:
    """The newest batch below any still loading (0: none)."""
    figures = UsageBatch.objects.aggregate(high=Max("pk"), loading=Min("pk", filter=Q(status__in=_LOADING)))
    if figures["loading"] is not None:
        return figures["loading"] - 1
    return figures["high"] or 0


@transaction.atomic
def feature_counts_update(*, period: Period) -> int:
    """Count the month's lines of the batches that landed since its last count; returns
    how many rows it kept."""
    LedgerFeatureCountMark.objects.get_or_create(period=str(period))
    mark = LedgerFeatureCountMark.objects.select_for_update().get(period=str(period))
    high = _settled_high()
    if high <= mark.batch_high:
        return 0
    start, end = period.bounds
    rows = (
        UsageLine.objects.filter(
            occurred_at__gte=start,
            occurred_at__lt=end,
            batch_id__gt=mark.batch_high,
            batch_id__lte=high,
            restatement__gte=0,  # reversals of restated buckets are not calls
        )
        .values("batch_id", "team", "feature", "environment")
        .annotate(
            requests=Count("request_id", distinct=True, filter=~Q(request_id="")),
            traces=Count("trace_id", distinct=True, filter=~Q(trace_id="")),
        )
        .order_by()
    )
    counts = [LedgerFeatureCount(period=str(period), **row) for row in rows]
    LedgerFeatureCount.objects.bulk_create(counts, batch_size=5000)
    mark.batch_high = high
    mark.save(update_fields=["batch_high"])
    return len(counts)


def feature_counts(*, period: Period) -> dict[tuple[str, str, str], tuple[int, int]]:
    """Requests and traces per (team, feature, environment) in the month's ledger, the
    batches not counted yet counted first."""
    feature_counts_update(period=period)
    rows = (
        LedgerFeatureCount.objects.filter(period=str(period))
        .values("team", "feature", "environment")
        .annotate(requests=Sum("requests"), traces=Sum("traces"))
        .order_by()
    )
    return {(r["team"], r["feature"], r["environment"]): (r["requests"], r["traces"]) for r in rows}
