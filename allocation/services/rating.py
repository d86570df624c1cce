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
from django.db.models import Max, Sum
from django.utils import timezone

from allocation.choices import UsageBatchStatus
from allocation.models import RatedUsage, RatingRequestCount, RatingRule, RatingRun, RatingSum, UsageBatch, UsageLine
from allocation.selectors import period_bounds, rated_lines_params
from pricing.models import Price
from pricing.selectors import (
    context_band_floor,
    latest_price_book_versions,
    model_resolve,
    price_change_moments,
    price_segments,
)

__all__ = ["RATED_KEYS", "REQUEST_TAGS", "SUM_TAGS", "priced_sums_sql", "rating_run_reusable", "usage_rate_period"]

# The temporary table of the period's sums while the rating runs.
RATING_SUMS = "rating_sums"
# The ledger tags a rating may keep its sums by (RatingSum's columns), and its request counts.
SUM_TAGS: tuple[str, ...] = (
    "team",
    "feature",
    "environment",
    "tenant",
    "modality",
    "caller",
    "project",
    "outcome",
    "is_untagged",
)
REQUEST_TAGS: tuple[str, ...] = ("provider", "model", *(tag for tag in SUM_TAGS if tag != "is_untagged"))

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
    """SELECT of run %(run)s's kept sums (RatingSum) priced by its rules, by `fields` and
    price: quantity, line count and cost (`* 1.0` keeps SQLite from integer division)."""
    keys = ", ".join(f"s.{f}" for f in fields)
    return f"""
        SELECT {keys}, r.price_id, SUM(s.quantity), SUM(s.line_count),
               SUM(s.quantity) * p.amount * 1.0 / p.quantum
        FROM "{RatingSum._meta.db_table}" s {_rules_join(_context_sql(thresholds))}
        WHERE s.run_id = %(run)s
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


def _kept(fields: Sequence[str], kept: Sequence[str], known: Sequence[str]) -> str:
    """The columns `known` of a kept row, from `fields` where kept and empty otherwise."""
    unknown = set(kept) - set(known)
    if unknown:
        raise ValueError(f"cannot keep by {sorted(unknown)}: the kept rows have {list(known)}")
    return ", ".join(f"{field}" if field in kept else ("FALSE" if field == "is_untagged" else "''") for field in fields)


def _ledger_mark() -> tuple[int | None, bool]:
    """The newest usage batch, and whether none is loading: read before the ledger, so
    that a batch which lands while the rating reads makes the rating stale, not wrong."""
    high = UsageBatch.objects.aggregate(high=Max("pk"))["high"]
    loading = UsageBatch.objects.filter(status__in=[UsageBatchStatus.PENDING, UsageBatchStatus.RUNNING]).exists()
    return high, not loading


@transaction.atomic
def usage_rate_period(
    *,
    period: str,
    created_by=None,
    sum_fields: Sequence[str] = (),
    request_fields: Sequence[str] | None = None,
) -> RatingRun:
    """Rate every ledger line of a period at the prices in force; returns the run.

    With `sum_fields` (ledger tags among SUM_TAGS), the run also keeps the period's sums
    by price segment, rating key, request-size bucket, batch and those tags
    (RatingSum), which an allocation prices with `priced_sums_sql`: the same read of
    the ledger serves the rating and the allocation, now or later. With
    `request_fields` (among REQUEST_TAGS), it keeps the period's requests (distinct
    calls) by those tags (RatingRequestCount); that is a second read of the ledger.
    """
    start, end = period_bounds(period)
    versions = latest_price_book_versions()
    batch_high, settled = _ledger_mark()
    run = RatingRun.objects.create(
        period=period,
        created_by=created_by,
        sum_fields=list(sum_fields),
        request_fields=None if request_fields is None else list(request_fields),
        ledger_batch_high=batch_high,
        ledger_settled=settled,
    )
    run.price_book_versions.set(versions)
    # Every band edge in the books: the request-size buckets need no rules yet.
    run.thresholds = sorted(
        set(Price.objects.filter(version__in=versions, context_above__gt=0).values_list("context_above", flat=True))
    )
    columns = ", ".join(["run_id", "day", *RATED_KEYS, "price_id", "quantity", "line_count", "cost"])
    segment, cuts = _segment_sql(start, price_change_moments(versions=versions, start=start, end=end))
    summed, priced = _rating_sql(run.thresholds, segment, [*sum_fields, "batch_id"] if sum_fields else ())
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
        if request_fields is not None:
            _requests_keep(cursor, run, request_fields, params)
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_sort = on")
        # The distinct keys come from the sums: one pass over the ledger in all.
        cursor.execute(f"SELECT DISTINCT provider, model, unit, service_tier, tier, context_band FROM {RATING_SUMS}")
        keys = cursor.fetchall()
        RatingRule.objects.bulk_create(_rules_for(run, keys, start, end, versions), batch_size=2000)
        cursor.execute(
            f'INSERT INTO "{RatedUsage._meta.db_table}" ({columns}) {priced.format(summed=RATING_SUMS)}', params
        )
        if sum_fields:
            kept = ["day", "provider", "model", "unit", "service_tier", "tier", "context_band", "bucket"]
            cursor.execute(
                f'INSERT INTO "{RatingSum._meta.db_table}" (run_id, {", ".join(kept)}, {", ".join(SUM_TAGS)}, '
                f"batch_id, quantity, line_count) "
                f"SELECT %(run)s, {', '.join(kept)}, {_kept(SUM_TAGS, sum_fields, SUM_TAGS)}, "
                f"batch_id, quantity, line_count FROM {RATING_SUMS}",
                params,
            )
            if connection.vendor == "postgresql":
                # The allocation reads these next: its plan needs their numbers, not last run's.
                cursor.execute(f'ANALYZE "{RatingSum._meta.db_table}"')
        cursor.execute(f"DROP TABLE {RATING_SUMS}")
    totals = RatedUsage.objects.filter(run=run).aggregate(lines=Sum("line_count"), cost=Sum("cost"))
    unpriced = RatedUsage.objects.filter(run=run, price__isnull=True).aggregate(lines=Sum("line_count"))
    run.lines_rated = totals["lines"] or 0
    run.lines_unpriced = unpriced["lines"] or 0
    run.cost = totals["cost"] or Decimal(0)
    run.status = "completed"
    run.finished_at = timezone.now()
    run.save()
    # As stored, so that a run reading it now and one reusing it later see the same values.
    run.refresh_from_db()
    return run


def _requests_keep(cursor, run: RatingRun, request_fields: Sequence[str], params: dict) -> None:
    """Count the period's requests by `request_fields` into RatingRequestCount.

    COUNT(DISTINCT ...) always sorts every line; distinct (tags, call) pairs by hash,
    in parallel (a CREATE TABLE AS; an INSERT ... SELECT would run serially), then a
    count, do not.
    """
    if not request_fields:
        raise ValueError("requests are counted by at least one tag")
    columns = "".join(f"l.{f}, " for f in request_fields)
    outer = "".join(f"d.{f}, " for f in request_fields)
    cursor.execute("DROP TABLE IF EXISTS rating_requests")
    cursor.execute(
        f"CREATE TEMP TABLE rating_requests AS SELECT {outer}COUNT(*) AS requests "
        f'FROM (SELECT DISTINCT {columns}l.event_id FROM "{UsageLine._meta.db_table}" l '
        f"WHERE l.occurred_at >= %(start)s AND l.occurred_at < %(end)s) d "
        f"GROUP BY {outer.rstrip(', ')}",
        params,
    )
    cursor.execute(
        f'INSERT INTO "{RatingRequestCount._meta.db_table}" (run_id, {", ".join(REQUEST_TAGS)}, requests) '
        f"SELECT %(run)s, {_kept(REQUEST_TAGS, request_fields, REQUEST_TAGS)}, requests FROM rating_requests",
        params,
    )
    cursor.execute("DROP TABLE rating_requests")


def rating_run_reusable(
    *, period: str, sum_fields: Sequence[str], request_fields: Sequence[str] | None
) -> RatingRun | None:
    """The period's newest rating if an allocation may price its kept sums instead of
    reading the ledger: no usage batch has come (or was loading) since it read the
    ledger, the price books in force are the ones it used, and it kept sums (and
    request counts, if asked) by at least the tags asked for. Else None."""
    run = RatingRun.objects.filter(period=period, status="completed").order_by("-pk").first()
    if run is None or not run.ledger_settled or not run.sum_fields:
        return None
    if not set(sum_fields) <= set(run.sum_fields):
        return None
    if request_fields is not None and (
        run.request_fields is None or not set(request_fields) <= set(run.request_fields)
    ):
        return None
    if UsageBatch.objects.aggregate(high=Max("pk"))["high"] != run.ledger_batch_high:
        return None
    in_force = {version.pk for version in latest_price_book_versions()}
    if in_force != set(run.price_book_versions.values_list("pk", flat=True)):
        return None
    return run
