"""Reads of the usage ledger: summaries by any tag, tag coverage, batches and their rejections."""

import calendar
import re
from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Count, Max, Q, QuerySet, Sum
from django.utils import timezone

from allocation.choices import CORE_TAGS, TAG_FIELDS
from allocation.models import UsageBatch, UsageLine
from pricing.errors import ValidationFailed

__all__ = [
    "period_bounds",
    "tag_coverage",
    "usage_batches",
    "usage_latest_period",
    "usage_lines_in_period",
    "usage_rejection_rows",
]


_PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a period written YYYY-MM."""
    # Strict: "2026-1" would name the same month as "2026-01" and slip past keys on the text.
    if not isinstance(period, str) or not _PERIOD.fullmatch(period):
        raise ValidationFailed(f"period {period!r} is not YYYY-MM", code="invalid_period")
    year, month = (int(part) for part in period.split("-"))
    start = datetime(year, month, 1, tzinfo=UTC)
    days = calendar.monthrange(year, month)[1]
    end = start.replace(day=days) + (datetime(2000, 1, 2) - datetime(2000, 1, 1))
    return start, end


def usage_lines_in_period(period: str) -> QuerySet[UsageLine]:
    start, end = period_bounds(period)
    return UsageLine.objects.filter(occurred_at__gte=start, occurred_at__lt=end)


def tag_coverage(*, period: str) -> list[dict]:
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
    return UsageBatch.objects.select_related("created_by")


REJECTION_CSV_HEADER = ("batch", "source", "line", "field", "reason", "raw")


def usage_rejection_rows(*, batch: UsageBatch):
    """The batch's rejected records as CSV rows (header first), streamed."""
    yield REJECTION_CSV_HEADER
    for line, field, reason, raw in (
        batch.rejections.order_by("line", "id").values_list("line", "field", "reason", "raw").iterator()
    ):
        yield (batch.pk, batch.source_name, line, field, reason, raw)


def usage_latest_period() -> str:
    """The latest month holding usage (one indexed MAX), else the current month (UTC)."""
    latest = UsageLine.objects.aggregate(latest=Max("occurred_at"))["latest"]
    return f"{latest or timezone.now():%Y-%m}"
