"""Reads of the usage ledger: summaries by any tag, tag coverage, batches and their rejections."""

from decimal import Decimal

from django.db.models import Count, Max, Q, QuerySet, Sum

from allocation.choices import CORE_TAGS, TAG_FIELDS
from allocation.models import UsageBatch, UsageLine
from pricing.periods import Period

__all__ = [
    "tag_coverage",
    "usage_batches",
    "usage_latest_period",
    "usage_lines_in_period",
    "usage_rejection_rows",
]


def usage_lines_in_period(period: Period) -> QuerySet[UsageLine]:
    return UsageLine.objects.filter(occurred_at__gte=period.start, occurred_at__lt=period.end)


def tag_coverage(*, period: Period) -> list[dict]:
    """Per source format: the share of lines and of quantity carrying each core tag.

    Quantity shares are taken per unit family as summed; they show where the
    untagged volume is, which line counts alone can hide.
    """
    tagged = {tag: ~Q(**{TAG_FIELDS[tag]: ""}) for tag in CORE_TAGS}
    aggregates = {
        "lines": Count("event_key"),
        "total_quantity": Sum("quantity"),
        "untagged_lines": Count("event_key", filter=Q(is_untagged=True)),
        "untagged_quantity": Sum("quantity", filter=Q(is_untagged=True)),
    }
    for tag, condition in tagged.items():
        aggregates[f"{tag}_lines"] = Count("event_key", filter=condition)
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


def usage_batches() -> QuerySet[UsageBatch]:
    return UsageBatch.objects.select_related("created_by", "api_token")


REJECTION_CSV_HEADER = ("batch", "source", "line", "field", "reason", "raw")


def usage_rejection_rows(*, batch: UsageBatch):
    """The batch's rejected records as CSV rows (header first), streamed."""
    yield REJECTION_CSV_HEADER
    for line, field, reason, raw in (
        batch.rejections.order_by("line", "id").values_list("line", "field", "reason", "raw").iterator()
    ):
        yield (batch.pk, batch.source_name, line, field, reason, raw)


def usage_latest_period() -> Period:
    """The latest month holding usage (one indexed MAX), else the current month (UTC)."""
    latest = UsageLine.objects.aggregate(latest=Max("occurred_at"))["latest"]
    return Period.of(latest) if latest is not None else Period.current()
