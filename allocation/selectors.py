"""Reads of the usage ledger and cost objects: summaries and tag coverage."""

import calendar
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Context, Decimal

from django.db import connection
from django.db.models import Count, Max, Q, QuerySet, Sum
from django.utils import timezone

from pricing.errors import ValidationFailed
from pricing.money import QUANTITY_DECIMAL_PLACES, quantize

from .choices import CORE_TAGS, TAG_FIELDS
from .models import CostCenter, RatingRule, RatingRun, UsageBatch, UsageLine

__all__ = [
    "SUMMARY_GROUP_KEYS",
    "cost_center_tree",
    "decimal_from_db",
    "period_bounds",
    "rated_lines_params",
    "rated_lines_sql",
    "rating_run_current",
    "tag_coverage",
    "usage_batches",
    "usage_latest_period",
    "usage_lines_in_period",
    "usage_rejection_rows",
    "usage_summary",
]

# Group key (as users say it) -> UsageLine field.
SUMMARY_GROUP_KEYS: dict[str, str] = {
    "provider": "provider",
    "model": "model",
    "unit": "unit",
    "service_tier": "service_tier",
    "tier": "tier",
    "context_band": "context_band",
    **TAG_FIELDS,
}


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


def _group_fields(group_by: list[str]) -> list[str]:
    if not group_by:
        raise ValidationFailed("group_by needs at least one key", code="invalid_group_by")
    unknown = [key for key in group_by if key not in SUMMARY_GROUP_KEYS]
    if unknown:
        raise ValidationFailed(
            f"unknown group key(s) {', '.join(unknown)}; keys are {', '.join(SUMMARY_GROUP_KEYS)}",
            code="invalid_group_by",
            extra={"allowed": list(SUMMARY_GROUP_KEYS)},
        )
    return [SUMMARY_GROUP_KEYS[key] for key in group_by]


def rating_run_current(*, period: str) -> RatingRun | None:
    """The newest completed rating of a period: the one reports use."""
    return RatingRun.objects.filter(period=period, status="completed").order_by("-id").first()


def usage_summary(*, period: str, group_by: list[str]) -> list[dict]:
    """Quantity, line count, rated cost and unpriced line count per group of a period.

    Cost comes from the period's current rating run (None before any rating);
    lines it could not price count as unpriced, never as $0. Quantities of
    different units are summed only if the caller groups by something else.
    """
    fields = _group_fields(group_by)
    start, end = period_bounds(period)
    run = rating_run_current(period=period)
    keys = ", ".join(f"rated.{field}" for field in fields)
    sql = (
        f"SELECT {keys}, SUM(rated.quantity), SUM(rated.line_count), SUM(rated.cost), "
        "SUM(CASE WHEN rated.price_id IS NULL THEN rated.line_count ELSE 0 END) "
        f"FROM ({rated_lines_sql(fields)}) rated GROUP BY {keys} ORDER BY {keys}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, rated_lines_params(run_id=run.pk if run else 0, start=start, end=end))
        rows = cursor.fetchall()
    names = list(group_by)
    width = len(fields)
    return [
        {
            **dict(zip(names, row[:width], strict=True)),
            "quantity": decimal_from_db(row[width]),
            "line_count": int(row[width + 1]),
            "cost": decimal_from_db(row[width + 2], 12) if run is not None and row[width + 2] is not None else None,
            "unpriced_line_count": int(row[width + 3]) if run is not None else int(row[width + 1]),
        }
        for row in rows
    ]


def decimal_from_db(value, places: int = QUANTITY_DECIMAL_PLACES) -> Decimal:
    """A Decimal from what the database returns.

    SQLite sums decimals as floats, good to 15 significant digits: rounding to
    those, and to the column's places, undoes the float noise
    (176707.59999999998 is 176707.6). PostgreSQL returns exact decimals.
    """
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    significant = Context(prec=15).create_decimal(repr(value))
    return quantize(significant, Decimal(1).scaleb(-places)).normalize()


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


def cost_center_tree() -> list[dict]:
    """Cost centers in roll-up order (each under its parent) with their depth,
    teams and features prefetched: three queries whatever the size.

    A parent chain that loops (the database forbids only a center being its
    own parent; load_org refuses cycles) is shown from its first member.
    """
    centers = list(CostCenter.objects.prefetch_related("teams__features"))
    known = {center.pk for center in centers}
    by_parent: dict[int | None, list[CostCenter]] = {}
    for center in centers:
        by_parent.setdefault(center.parent_id if center.parent_id in known else None, []).append(center)
    codes = {center.pk: center.code for center in centers}
    ordered: list[dict] = []
    seen: set[int] = set()

    def visit(center: CostCenter, depth: int) -> None:
        if center.pk in seen:
            return
        seen.add(center.pk)
        ordered.append({"center": center, "depth": depth, "parent_code": codes.get(center.parent_id, "")})
        for child in by_parent.get(center.pk, []):
            visit(child, depth + 1)

    for center in [*by_parent.get(None, []), *centers]:
        visit(center, 0)
    return ordered


def rated_lines_sql(group_fields: Sequence[str]) -> str:
    """SELECT of ledger lines of [%(start)s, %(end)s) joined to run %(run)s's
    rules, summed by `group_fields` and price: quantity, line count and cost.
    Costs by any tag come from here, priced by the same rules as the run.

    `* 1.0` keeps SQLite from integer division (1000 tokens x $10 / 1M is not
    0); on PostgreSQL it stays exact numeric arithmetic.
    """
    keys = [f"l.{field}" for field in group_fields]
    context = "COALESCE(l.context_tokens, r.band_context, 0)"
    return f"""
        SELECT {", ".join(keys) + "," if keys else ""} r.price_id,
               SUM(l.quantity) AS quantity, COUNT(*) AS line_count,
               SUM(l.quantity) * p.amount * 1.0 / p.quantum AS cost
        FROM "{UsageLine._meta.db_table}" l
        LEFT JOIN "{RatingRule._meta.db_table}" r
          ON r.run_id = %(run)s AND r.provider = l.provider AND r.model = l.model AND r.unit = l.unit
         AND r.service_tier = l.service_tier AND r.tier = l.tier AND r.context_band = l.context_band
         AND l.occurred_at >= r.valid_from AND l.occurred_at < r.valid_to
         AND (r.context_above = 0 OR {context} > r.context_above)
         AND (r.context_upto IS NULL OR {context} <= r.context_upto)
        LEFT JOIN pricing_price p ON p.id = r.price_id
        WHERE l.occurred_at >= %(start)s AND l.occurred_at < %(end)s
        GROUP BY {", ".join(keys) + "," if keys else ""} r.price_id, p.amount, p.quantum
    """


def rated_lines_params(*, run_id: int, start: datetime, end: datetime) -> dict:
    """Parameters of `rated_lines_sql`, adapted as the ORM stores times (SQLite keeps text)."""
    adapt = connection.ops.adapt_datetimefield_value
    return {"run": run_id, "start": adapt(start), "end": adapt(end)}
