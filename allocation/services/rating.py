"""Rating a period's usage: set-based, in the database.

The period's ledger is summed in one pass by price segment (the spans of days
between price changes, usually the whole month), rating key and request-size
bucket; price resolution (pricing.selectors.price_segments) then runs once per
distinct key, a few hundred for millions of lines, and yields non-overlapping
rules; the rules are joined to the sums and the cost is stored per segment,
key and price. A sum no rule prices is kept with an empty price: unpriced.
"""

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from allocation.models import RatedUsage, RatingRule, RatingRun, UsageLine
from allocation.selectors import period_bounds, rated_lines_params
from pricing.models import Price
from pricing.selectors import (
    context_band_floor,
    latest_price_book_versions,
    model_resolve,
    price_change_moments,
    price_segments,
)

__all__ = ["RATED_KEYS", "RATING_SUMS", "priced_sums_sql", "usage_rate_period"]

# The temporary table of the period's sums a caller may keep (`keep_sums`) and read
# with `priced_sums_sql`; the caller drops it.
RATING_SUMS = "rating_sums"

# The rating's keys, which RatedUsage keeps (with the segment's first day and the price).
RATED_KEYS: tuple[str, ...] = ("provider", "model", "unit", "service_tier", "tier")


def _rules_for(run: RatingRun, keys, start, end, versions) -> list[RatingRule]:
    """Rules for each distinct (provider, model, unit, service tier, tier, band) rated."""
    models: dict[tuple[str, str], object] = {}
    rules: list[RatingRule] = []
    for provider, model, unit, service_tier, tier, context_band in keys:
        if (provider, model) not in models:
            models[(provider, model)] = model_resolve(provider=provider, model=model)
        catalog_model = models[(provider, model)]
        if catalog_model is None:
            continue
        for segment in price_segments(
            model=catalog_model,
            unit=unit,
            service_tier=service_tier,
            tier=tier,
            start=start,
            end=end,
            versions=versions,
        ):
            rules.append(
                RatingRule(
                    run=run,
                    provider=provider,
                    model=model,
                    unit=unit,
                    service_tier=service_tier,
                    tier=tier,
                    context_band=context_band,
                    valid_from=segment.valid_from,
                    valid_to=segment.valid_to,
                    context_above=segment.context_above,
                    context_upto=segment.context_upto,
                    band_context=context_band_floor(context_band),
                    price=segment.price,
                )
            )
    return rules


def _segment_sql(start: datetime, moments: list[datetime]) -> tuple[str, dict]:
    """SQL of the first day of ledger line `l`'s price segment, and its parameters.

    Summing by segment rather than by day keeps the sums a month's tag combinations
    (not 30 times as many): the one read of the ledger hashes into a table that stays
    small. The days are literals made from dates, never from input.
    """
    if connection.vendor == "postgresql":

        def literal(moment: datetime) -> str:
            return f"DATE '{moment:%Y-%m-%d}'"
    else:

        def literal(moment: datetime) -> str:
            return f"'{moment:%Y-%m-%d}'"

    if not moments:
        return literal(start), {}
    adapt = connection.ops.adapt_datetimefield_value
    firsts = [start, *moments]
    whens = "".join(f"WHEN l.occurred_at < %(cut{i})s THEN {literal(firsts[i])} " for i in range(len(moments)))
    return f"CASE {whens}ELSE {literal(firsts[-1])} END", {f"cut{i}": adapt(m) for i, m in enumerate(moments)}


def _day_start_sql(day: str) -> str:
    if connection.vendor == "postgresql":
        return f"({day}::timestamp AT TIME ZONE 'UTC')"
    return f"datetime({day})"


def _rules_join(context: str) -> str:
    """Join of sums `s` to the run's rules `r` and their prices `p`."""
    return f"""
        LEFT JOIN "{RatingRule._meta.db_table}" r
          ON r.run_id = %(run)s AND r.provider = s.provider AND r.model = s.model AND r.unit = s.unit
         AND r.service_tier = s.service_tier AND r.tier = s.tier AND r.context_band = s.context_band
         AND {_day_start_sql("s.day")} >= r.valid_from AND {_day_start_sql("s.day")} < r.valid_to
         AND (r.context_above = 0 OR {context} > r.context_above)
         AND (r.context_upto IS NULL OR {context} <= r.context_upto)
        LEFT JOIN pricing_price p ON p.id = r.price_id
    """


def _context_sql(thresholds: list[int]) -> str:
    # A request size inside each bucket stands for all of it; -1 (none given) uses the stated band.
    representative = (
        "CASE s.bucket WHEN -1 THEN NULL WHEN 0 THEN 0 "
        + "".join(f"WHEN {i + 1} THEN {t + 1} " for i, t in enumerate(thresholds))
        + "END"
    )
    return f"COALESCE({representative}, r.band_context, 0)"


def priced_sums_sql(fields: Sequence[str], thresholds: list[int]) -> str:
    """SELECT of the kept sums priced by run %(run)s's rules, by `fields` and price:
    quantity, line count and cost (`* 1.0` keeps SQLite from integer division)."""
    keys = ", ".join(f"s.{f}" for f in fields)
    return f"""
        SELECT {keys}, r.price_id, SUM(s.quantity), SUM(s.line_count),
               SUM(s.quantity) * p.amount * 1.0 / p.quantum
        FROM {RATING_SUMS} s {_rules_join(_context_sql(thresholds))}
        GROUP BY {keys}, r.price_id, p.amount, p.quantum
    """


def _rating_sql(thresholds: list[int], segment: str, extra_fields: Sequence[str] = ()) -> tuple[str, str]:
    """The rating statements: the ledger summed first, then priced per sum.

    Every rule starts and ends at a UTC midnight where a price changes (periods and
    effective dates are days), so the lines of one key between two such midnights
    (`segment`, see `_segment_sql`) share their rules; and the context-band
    thresholds of all rules cut requests into a few size buckets whose members
    fall in the same band (any finer cut does too: `thresholds` may be every
    band edge of the price books). Summing the lines by (segment, key, bucket) before the
    join leaves a few thousand sums to price instead of millions of lines, and
    the big aggregation, over ledger columns alone, can run in parallel.
    `extra_fields` (ledger columns such as the tags a mapping reads) are kept in
    the sums too, so that an allocation prices them without reading the ledger again.
    Returns the summing SELECT and the pricing SELECT, which reads `{summed}`.
    """
    bucket = (
        "CASE WHEN l.context_tokens IS NULL THEN -1 "
        + "".join(f"WHEN l.context_tokens > {t} THEN {i + 1} " for i, t in reversed(list(enumerate(thresholds))))
        + "ELSE 0 END"
    )
    keys = ", ".join(f"s.{k}" for k in RATED_KEYS)
    extra = "".join(f", l.{f}" for f in extra_fields)
    positions = ", ".join(str(i) for i in range(1, 9 + len(extra_fields)))
    summed = f"""
        SELECT {segment} AS day, l.provider, l.model, l.unit, l.service_tier, l.tier, l.context_band,
               {bucket} AS bucket{extra}, SUM(l.quantity) AS quantity, COUNT(*) AS line_count
        FROM "{UsageLine._meta.db_table}" l
        WHERE l.occurred_at >= %(start)s AND l.occurred_at < %(end)s
        GROUP BY {positions}
    """
    priced = f"""
        SELECT %(run)s, s.day, {keys}, r.price_id, SUM(s.quantity), SUM(s.line_count),
               SUM(s.quantity) * p.amount * 1.0 / p.quantum
        FROM {{summed}} s {_rules_join(_context_sql(thresholds))}
        GROUP BY s.day, {keys}, r.price_id, p.amount, p.quantum
    """
    return summed, priced


@transaction.atomic
def usage_rate_period(
    *, period: str, created_by=None, extra_fields: Sequence[str] = (), keep_sums: bool = False
) -> RatingRun:
    """Rate every ledger line of a period at the prices in force; returns the run.

    With `keep_sums`, the period's sums (by price segment, rating key, request-size bucket and
    `extra_fields`) stay in the temporary table RATING_SUMS for the caller, inside
    the same transaction, to price with `priced_sums_sql` and then drop: one read of
    the ledger serves the rating and the allocation.
    """
    start, end = period_bounds(period)
    versions = latest_price_book_versions()
    run = RatingRun.objects.create(period=period, created_by=created_by)
    run.price_book_versions.set(versions)
    # Every band edge in the books: the request-size buckets need no rules yet.
    thresholds = sorted(
        set(Price.objects.filter(version__in=versions, context_above__gt=0).values_list("context_above", flat=True))
    )
    columns = ", ".join(["run_id", "day", *RATED_KEYS, "price_id", "quantity", "line_count", "cost"])
    segment, cuts = _segment_sql(start, price_change_moments(versions=versions, start=start, end=end))
    summed, priced = _rating_sql(thresholds, segment, extra_fields)
    params = {**rated_lines_params(run_id=run.pk, start=start, end=end), **cuts}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The month's sums in memory, on parallel workers: CREATE TABLE AS may run
            # in parallel where INSERT ... SELECT may not, and the planner, unable to
            # guess how few sums there are, needs the nudge. Settings end with the
            # transaction.
            cursor.execute("SET LOCAL work_mem = '256MB'")
            cursor.execute("SET LOCAL parallel_setup_cost = 0")
            cursor.execute("SET LOCAL parallel_tuple_cost = 0")
            # The planner cannot know how few sums there are, and would sort every line on
            # disk to find them; hashing, in parallel, needs the sort off. Back on after.
            cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"DROP TABLE IF EXISTS {RATING_SUMS}")
        cursor.execute(f"CREATE TEMP TABLE {RATING_SUMS} AS {summed}", params)
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_sort = on")
        # The distinct keys come from the sums: one pass over the ledger in all.
        cursor.execute("SELECT DISTINCT provider, model, unit, service_tier, tier, context_band FROM rating_sums")
        keys = cursor.fetchall()
        RatingRule.objects.bulk_create(_rules_for(run, keys, start, end, versions), batch_size=2000)
        cursor.execute(
            f'INSERT INTO "{RatedUsage._meta.db_table}" ({columns}) {priced.format(summed="rating_sums")}', params
        )
        if not keep_sums:
            cursor.execute(f"DROP TABLE {RATING_SUMS}")
    totals = RatedUsage.objects.filter(run=run).aggregate(lines=Sum("line_count"), cost=Sum("cost"))
    unpriced = RatedUsage.objects.filter(run=run, price__isnull=True).aggregate(lines=Sum("line_count"))
    run.lines_rated = totals["lines"] or 0
    run.lines_unpriced = unpriced["lines"] or 0
    run.cost = totals["cost"] or Decimal(0)
    run.status = "completed"
    run.finished_at = timezone.now()
    run.save()
    run.thresholds = thresholds  # the buckets of the kept sums, for priced_sums_sql
    return run
