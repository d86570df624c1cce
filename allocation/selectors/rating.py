"""Reads of the rated ledger: usage summaries with their cost, and what a rating could not price.

These live in allocation, not pricing: they read the rated ledger, and
pricing, the lowest layer, never imports allocation.
"""

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Sum

from allocation.choices import TAG_FIELDS, RatingRunStatus
from allocation.models import RatedUsage, RatingRule, RatingRun, UsageLine
from allocation.selectors.ledger import line_count, line_count_sql, usage_lines_in_period
from pricing.errors import ValidationFailed
from pricing.money import decimal_from_db
from pricing.periods import Period
from pricing.selectors import model_resolve

__all__ = [
    "SUMMARY_GROUP_KEYS",
    "usage_summary",
    "UNPRICED_REASONS",
    "rated_lines_params",
    "rated_lines_sql",
    "rating_run_current",
    "unpriced_usage",
]

# Why a usage key has no price, as a code and as a sentence a user can act on.
UNPRICED_REASONS: dict[str, str] = {
    "unknown_model": "model not in the catalog",
    "no_price": "no price for this unit/tier in force",
}


def rating_run_current(*, period: Period) -> RatingRun | None:
    """The newest completed rating run of a period: the one reports use."""
    return (
        RatingRun.objects.filter(period=period, status=RatingRunStatus.COMPLETED)
        .select_related("created_by")
        .order_by("-created_at", "-id")
        .first()
    )


def unpriced_usage(*, period: Period) -> dict:
    """The usage the period's newest completed rating run left unpriced.

    Grouped by provider, model, unit, service tier and unit tier, largest
    line count first, each with its reason: the model is not in the catalog,
    or the catalog has the model but no price in force for that unit and
    tier. Also the ledger's line count for the period, so a page can tell
    when usage arrived after the run.
    """
    ledger_lines = usage_lines_in_period(period).aggregate(lines=line_count())["lines"]
    run = rating_run_current(period=period)
    rows: list[dict] = []
    if run is not None:
        groups = (
            RatedUsage.objects.filter(run=run, price__isnull=True)
            .values("provider", "model", "unit", "service_tier", "tier")
            .annotate(quantity=Sum("quantity"), line_count=Sum("line_count"), days=Count("day", distinct=True))
            .order_by("-line_count", "provider", "model", "unit", "service_tier", "tier")
        )
        known: dict[tuple[str, str], bool] = {}
        for group in groups:
            name = (group["provider"], group["model"])
            if name not in known:
                known[name] = model_resolve(provider=group["provider"], model=group["model"]) is not None
            reason = "no_price" if known[name] else "unknown_model"
            rows.append(
                {
                    **group,
                    "quantity": group["quantity"] or Decimal(0),
                    "reason_code": reason,
                    "reason": UNPRICED_REASONS[reason],
                }
            )
    return {
        "period": period,
        "run": run,
        "rows": rows,
        "unpriced_lines": sum(row["line_count"] for row in rows),
        "ledger_lines": ledger_lines,
        "stale": run is not None and ledger_lines != run.lines_rated,
    }


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
               SUM(l.quantity) AS quantity, {line_count_sql("l")} AS line_count,
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


def usage_summary(*, period: Period, group_by: list[str]) -> list[dict]:
    """Quantity, line count, rated cost and unpriced line count per group of a period.

    Cost comes from the period's current rating run (None before any rating);
    lines it could not price count as unpriced, never as $0. Quantities of
    different units are summed only if the caller groups by something else.
    """
    fields = _group_fields(group_by)
    start, end = period.bounds
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
