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

from allocation.choices import RatingRunStatus, UsageBatchStatus, UsageLineRestatement
from allocation.models import RatedUsage, RatingRequestCount, RatingRule, RatingRun, RatingSum, UsageBatch, UsageLine
from allocation.selectors.ledger import line_count_sql
from allocation.selectors.rating import rated_lines_params
from pricing.models import Price
from pricing.periods import Period
from pricing.selectors import (
    context_band_floor,
    latest_price_book_versions,
    model_resolve,
    price_change_moments,
    price_segments,
)

__all__ = [
    "RATED_KEYS",
    "REQUEST_TAGS",
    "SUM_TAGS",
    "priced_sums_sql",
    "rating_run_is_current",
    "rating_run_standing",
    "usage_rate_kept",
    "usage_rate_period",
]

# The temporary table of the period's sums while the rating runs.
RATING_SUMS = "rating_sums"
_LEDGER = f'"{UsageLine._meta.db_table}"'
_ORIGINAL = UsageLineRestatement.ORIGINAL.value
# A rating extending an earlier one reads the ledger once for the lines of the batches
# after its mark, into this temporary table, and sums (and counts requests) from it.
LATER_LINES = "rating_later_lines"
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


def _rating_sql(
    thresholds: list[int], segment: str, extra_fields: Sequence[str] = (), source: str = _LEDGER
) -> tuple[str, str]:
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
    the sums too, so that an allocation prices them without reading the ledger again;
    `source` is the ledger, or LATER_LINES when a rating extends another.
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
               {bucket} AS bucket{extra}, SUM(l.quantity) AS quantity, {line_count_sql("l")} AS line_count
        FROM {source} l
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


def _kept(columns: Sequence[str], kept: Sequence[str]) -> str:
    """The values of a kept row's `columns`: the column where it is `kept`, else empty."""
    unknown = set(kept) - set(columns)
    if unknown:
        raise ValueError(f"cannot keep by {sorted(unknown)}: the kept rows have {list(columns)}")
    return ", ".join(column if column in kept else ("FALSE" if column == "is_untagged" else "''") for column in columns)


def _price_edges(versions, start: datetime, end: datetime) -> tuple[list[int], list[datetime]]:
    """Where the prices of `versions` cut a period's usage: every band edge in the books
    (the request-size buckets need no rules yet) and the midnights where a price starts
    or ends (the price segments)."""
    thresholds = sorted(
        set(Price.objects.filter(version__in=versions, context_above__gt=0).values_list("context_above", flat=True))
    )
    return thresholds, price_change_moments(versions=versions, start=start, end=end)


def _batch_high() -> int | None:
    """The newest usage batch."""
    return UsageBatch.objects.aggregate(high=Max("pk"))["high"]


def _ledger_mark() -> tuple[int | None, bool]:
    """The newest usage batch, and whether none is loading: read before the ledger, so
    that a batch which lands while the rating reads makes the rating stale, not wrong."""
    high = _batch_high()
    loading = UsageBatch.objects.filter(status__in=[UsageBatchStatus.PENDING, UsageBatchStatus.RUNNING]).exists()
    return high, not loading


@transaction.atomic
def usage_rate_period(
    *,
    period: Period,
    created_by=None,
    sum_fields: Sequence[str] = (),
    request_fields: Sequence[str] | None = None,
    extends: RatingRun | None = None,
) -> RatingRun:
    """Rate every ledger line of a period at the prices in force; returns the run.

    With `sum_fields` (ledger tags among SUM_TAGS), the run also keeps the period's sums
    by price segment, rating key, request-size bucket, batch and those tags
    (RatingSum), which an allocation prices with `priced_sums_sql`: the same read of
    the ledger serves the rating and the allocation, now or later. With
    `request_fields` (among REQUEST_TAGS), it keeps the period's requests (distinct
    calls of each batch) by those tags (RatingRequestCount); that is a second read.

    `extends`: a standing rating of the period (see `rating_run_standing`) whose kept
    rows stand for the batches up to its mark. Only the lines of later batches are
    read and summed, cut as its rows are, and added to them; the sums are then priced
    at the prices in force now. Batches are written once and never change, and its
    cuts are at least as fine as the prices now need, so the result is a full
    rating's, for a read of the new lines only.
    """
    start, end = period.bounds
    versions = latest_price_book_versions()
    if extends is None:
        thresholds, moments = _price_edges(versions, start, end)
    else:
        sum_fields, request_fields = extends.sum_fields, extends.request_fields
        thresholds, moments = extends.thresholds, [datetime.fromisoformat(m) for m in extends.price_cuts]
    batch_high, settled = _ledger_mark()
    run = RatingRun.objects.create(
        period=str(period),
        created_by=created_by,
        sum_fields=list(sum_fields),
        request_fields=None if request_fields is None else list(request_fields),
        ledger_batch_high=batch_high,
        ledger_settled=settled,
        thresholds=thresholds,
        price_cuts=[moment.isoformat() for moment in moments],
    )
    run.price_book_versions.set(versions)
    columns = ", ".join(["run_id", "day", *RATED_KEYS, "price_id", "quantity", "line_count", "cost"])
    segment, cuts = _segment_sql(start, moments)
    summed, priced = _rating_sql(
        run.thresholds,
        segment,
        [*sum_fields, "batch_id"] if sum_fields else (),
        source=_LEDGER if extends is None else LATER_LINES,
    )
    params = {**rated_lines_params(run_id=run.pk, start=start, end=end), **cuts}
    if extends is not None:
        params |= {"since": extends.ledger_batch_high or 0, "base": extends.pk}
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
        if extends is not None:
            cursor.execute(f"DROP TABLE IF EXISTS {LATER_LINES}")
            cursor.execute(
                f"CREATE TEMP TABLE {LATER_LINES} AS SELECT * FROM {_LEDGER} l "
                "WHERE l.occurred_at >= %(start)s AND l.occurred_at < %(end)s AND l.batch_id > %(since)s",
                params,
            )
        cursor.execute(f"CREATE TEMP TABLE {RATING_SUMS} AS {summed}", params)
        kept = ["day", "provider", "model", "unit", "service_tier", "tier", "context_band", "bucket"]
        if extends is not None:
            columns_kept = ", ".join([*kept, *sum_fields, "batch_id", "quantity", "line_count"])
            cursor.execute(
                f"INSERT INTO {RATING_SUMS} ({columns_kept}) SELECT {columns_kept} "
                f'FROM "{RatingSum._meta.db_table}" WHERE run_id = %(base)s',
                params,
            )
        if request_fields is not None:
            _requests_keep(cursor, run, request_fields, params, extends=extends)
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
            cursor.execute(
                f'INSERT INTO "{RatingSum._meta.db_table}" (run_id, {", ".join(kept)}, {", ".join(SUM_TAGS)}, '
                f"batch_id, quantity, line_count) "
                f"SELECT %(run)s, {', '.join(kept)}, {_kept(SUM_TAGS, sum_fields)}, "
                f"batch_id, quantity, line_count FROM {RATING_SUMS}",
                params,
            )
            if connection.vendor == "postgresql":
                # The allocation reads these next: its plan needs their numbers, not last run's.
                cursor.execute(f'ANALYZE "{RatingSum._meta.db_table}"')
        cursor.execute(f"DROP TABLE {RATING_SUMS}")
        if extends is not None:
            cursor.execute(f"DROP TABLE {LATER_LINES}")
    totals = RatedUsage.objects.filter(run=run).aggregate(lines=Sum("line_count"), cost=Sum("cost"))
    unpriced = RatedUsage.objects.filter(run=run, price__isnull=True).aggregate(lines=Sum("line_count"))
    run.lines_rated = totals["lines"] or 0
    run.lines_unpriced = unpriced["lines"] or 0
    run.cost = totals["cost"] or Decimal(0)
    run.status = RatingRunStatus.COMPLETED
    run.finished_at = timezone.now()
    run.save()
    # As stored, so that a run reading it now and one reusing it later see the same values.
    run.refresh_from_db()
    return run


def _requests_keep(
    cursor, run: RatingRun, request_fields: Sequence[str], params: dict, extends: RatingRun | None
) -> None:
    """Count the period's requests by `request_fields` into RatingRequestCount: the
    distinct calls of each batch (a call's lines sent in two batches count in each, so
    that a batch's requests never change once counted, and a rating extending
    `extends` adds the later batches' to its counts).

    COUNT(DISTINCT ...) always sorts every line; distinct (tags, batch, call) triples
    by hash, in parallel (a CREATE TABLE AS; an INSERT ... SELECT would run serially),
    then a count, do not.
    """
    if not request_fields:
        raise ValueError("requests are counted by at least one tag")
    columns = "".join(f"l.{f}, " for f in request_fields)
    outer = ", ".join(f"d.{f}" for f in request_fields)
    names = ", ".join(request_fields)
    cursor.execute("DROP TABLE IF EXISTS rating_requests")
    cursor.execute(
        f"CREATE TEMP TABLE rating_requests AS SELECT {outer}, COUNT(*) AS requests "
        f"FROM (SELECT DISTINCT {columns}l.batch_id, l.event_id FROM {_LEDGER if extends is None else LATER_LINES} l "
        # A restated bucket's lines are the same request again: counted once, where it came first.
        f"WHERE l.occurred_at >= %(start)s AND l.occurred_at < %(end)s AND l.restatement = {_ORIGINAL}) d "
        f"GROUP BY {outer}",
        params,
    )
    if extends is not None:
        cursor.execute(
            f"INSERT INTO rating_requests ({names}, requests) SELECT {names}, requests "
            f'FROM "{RatingRequestCount._meta.db_table}" WHERE run_id = %(base)s',
            params,
        )
    cursor.execute(
        f'INSERT INTO "{RatingRequestCount._meta.db_table}" (run_id, {", ".join(REQUEST_TAGS)}, requests) '
        f"SELECT %(run)s, {_kept(REQUEST_TAGS, request_fields)}, SUM(requests) "
        f"FROM rating_requests GROUP BY {names}",
        params,
    )
    cursor.execute("DROP TABLE rating_requests")


def rating_run_standing(
    *, period: Period, sum_fields: Sequence[str], request_fields: Sequence[str] | None
) -> RatingRun | None:
    """The period's newest rating if its kept rows still stand for the batches it read
    (none was loading then), are cut at least as finely as the prices in force need
    (every band edge and price change day of theirs is one of its cuts), and are by
    at least the tags asked for (and request counts, if asked); else None. Whether it
    is current, with no batch since and the same prices, is `rating_run_is_current`."""
    run = RatingRun.objects.filter(period=period, status=RatingRunStatus.COMPLETED).order_by("-pk").first()
    if run is None or not run.ledger_settled or not run.sum_fields:
        return None
    if not set(sum_fields) <= set(run.sum_fields):
        return None
    asked_requests = set(request_fields or ())
    if request_fields is not None and (run.request_fields is None or not asked_requests <= set(run.request_fields)):
        return None
    thresholds, moments = _price_edges(latest_price_book_versions(), period.start, period.end)
    if not set(thresholds) <= set(run.thresholds):
        return None
    if not {moment.isoformat() for moment in moments} <= set(run.price_cuts):
        return None
    return run


def rating_run_is_current(run: RatingRun) -> bool:
    """No usage batch has come since the rating read the ledger, and the price books in
    force are the ones it used."""
    if _batch_high() != run.ledger_batch_high:
        return False
    in_force = {version.pk for version in latest_price_book_versions()}
    return in_force == set(run.price_book_versions.values_list("pk", flat=True))


def usage_rate_kept(
    *, period: Period, created_by=None, sum_fields: Sequence[str], request_fields: Sequence[str] | None
) -> RatingRun:
    """The period's rating with the kept rows asked for: the standing rating as it is
    when it is current; else a new one, which extends the standing rating (the lines
    of later batches added, its sums priced at the prices in force) when there is one,
    or reads the period's ledger."""
    standing = rating_run_standing(period=period, sum_fields=sum_fields, request_fields=request_fields)
    if standing is not None and rating_run_is_current(standing):
        return standing
    return usage_rate_period(
        period=period, created_by=created_by, sum_fields=sum_fields, request_fields=request_fields, extends=standing
    )
