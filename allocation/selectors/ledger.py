"""Reads of the usage ledger: summaries by any tag, tag coverage, batches and their rejections."""

from decimal import Decimal

from django.core.cache import cache
from django.db.models import Case, IntegerField, Max, Q, QuerySet, Sum, Value, When
from django.db.models.query import ModelIterable

from allocation.choices import CORE_TAGS, TAG_FIELDS, UsageBatchStatus, UsageLineRestatement
from allocation.models import UsageBatch, UsageLine
from pricing.periods import FIRST_PERIOD, LAST_PERIOD, Period

__all__ = [
    "USAGE_PROGRESS_SECONDS",
    "line_count",
    "line_count_sql",
    "tag_coverage",
    "usage_batch_progress",
    "usage_batches",
    "usage_latest_period",
    "usage_lines_in_period",
    "usage_progress_key",
    "usage_rejection_rows",
]

# How long a load's published counts are kept: longer than any load takes.
USAGE_PROGRESS_SECONDS = 6 * 3600


def line_count(condition: Q | None = None) -> Sum:
    """The number of ledger lines, net of restatements: a reversal line takes back the
    line it reverses (-1), so a restated bucket counts as the one line it now is."""
    sign = Case(
        When(restatement=UsageLineRestatement.REVERSAL, then=Value(-1)), default=Value(1), output_field=IntegerField()
    )
    return Sum(sign, filter=condition, default=0)


def line_count_sql(alias: str) -> str:
    """line_count as SQL over the ledger aliased `alias`."""
    return f"SUM(CASE WHEN {alias}.restatement = {UsageLineRestatement.REVERSAL.value} THEN -1 ELSE 1 END)"


def usage_lines_in_period(period: Period) -> QuerySet[UsageLine]:
    return UsageLine.objects.filter(occurred_at__gte=period.start, occurred_at__lt=period.end)


def tag_coverage(*, period: Period) -> list[dict]:
    """Per source format: the share of lines and of quantity carrying each core tag.

    Quantity shares are taken per unit family as summed; they show where the
    untagged volume is, which line counts alone can hide.
    """
    tagged = {tag: ~Q(**{TAG_FIELDS[tag]: ""}) for tag in CORE_TAGS}
    aggregates = {
        "lines": line_count(),
        "total_quantity": Sum("quantity"),
        "untagged_lines": line_count(Q(is_untagged=True)),
        "untagged_quantity": Sum("quantity", filter=Q(is_untagged=True)),
    }
    for tag, condition in tagged.items():
        aggregates[f"{tag}_lines"] = line_count(condition)
        aggregates[f"{tag}_quantity"] = Sum("quantity", filter=condition)
    source = "batch__source_format"
    rows = usage_lines_in_period(period).values(source).annotate(**aggregates).order_by(source)
    report = []
    for row in rows:
        lines, quantity = row["lines"], row["total_quantity"] or Decimal(0)
        entry = {
            "source": row[source],
            "lines": lines,
            "quantity": quantity,
            "untagged_lines": row["untagged_lines"],
            "untagged_quantity": row["untagged_quantity"] or Decimal(0),
        }
        for tag in (*CORE_TAGS,):
            entry[f"{tag}_line_share"] = _share(row[f"{tag}_lines"], lines)
            entry[f"{tag}_quantity_share"] = _share(row[f"{tag}_quantity"] or Decimal(0), quantity)
        entry["untagged_line_share"] = _share(row["untagged_lines"], lines)
        report.append(entry)
    return report


def _share(part: int | Decimal, whole: int | Decimal) -> Decimal:
    if not whole:
        return Decimal(0)
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"))


def usage_progress_key(batch_id: int) -> str:
    return f"usage-batch:{batch_id}:progress"


def usage_batch_progress(*, batch_id: int) -> dict | None:
    """The counts a running load has published (rows read, inserted, duplicate,
    rejected, bytes read ...): its own transaction keeps the batch's row unchanged
    until it completes."""
    return cache.get(usage_progress_key(batch_id))


class _LiveBatchIterable(ModelIterable):
    """Batches as stored, a running one with the counts its load published so far."""

    def __iter__(self):
        for batch in super().__iter__():
            if batch.status == UsageBatchStatus.RUNNING:
                for name, value in (usage_batch_progress(batch_id=batch.pk) or {}).items():
                    setattr(batch, name, value)
            yield batch


def usage_batches() -> QuerySet[UsageBatch]:
    """Every batch, newest first; a running one shows its load's progress."""
    queryset = UsageBatch.objects.select_related("created_by", "api_token")
    queryset._iterable_class = _LiveBatchIterable
    return queryset


REJECTION_CSV_HEADER = ("batch", "source", "line", "field", "reason", "raw")


def usage_rejection_rows(*, batch: UsageBatch):
    """The batch's rejected records as CSV rows (header first), streamed."""
    yield REJECTION_CSV_HEADER
    for line, field, reason, raw in (
        batch.rejections.order_by("line", "id").values_list("line", "field", "reason", "raw").iterator()
    ):
        yield (batch.pk, batch.source_name, line, field, reason, raw)


def usage_latest_period() -> Period:
    """The latest month holding usage up to this one (one indexed MAX), else the current
    month (UTC): the month the pages open on.

    Usage dated after this month, or outside the months a user may name, is left out:
    one event stamped 9999-12-31 must not send every page to a month no link can reach.
    """
    this = min(Period.current(), LAST_PERIOD)
    window = UsageLine.objects.filter(occurred_at__gte=FIRST_PERIOD.start, occurred_at__lt=this.end)
    latest = window.aggregate(latest=Max("occurred_at"))["latest"]
    return Period.of(latest) if latest is not None else this
