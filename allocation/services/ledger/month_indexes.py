"""The ledger's drill-down indexes, made per month once the month has been allocated.

A statement line's calls (its six tags, then time) and one trace's calls are found by
B-tree indexes. Kept over the whole ledger, they cost every ingested line its share of
two more index inserts: bench/ingest measured PostgreSQL's CPU a line go from ~7 to ~17
microseconds and the load rate halve. Drill-downs only ever read a month that has been
allocated (statements come from its run), so each month gets its own partial indexes
(`WHERE occurred_at` within the month) when its first allocation run is done: the month
being ingested pays for none, late lines of an indexed month for theirs.

PostgreSQL only (SQLite, the embedded default, holds a demo's months: it scans them).
Outside a transaction the indexes are built CONCURRENTLY, so ingestion goes on meanwhile.
"""

from django.db import connection

from pricing.periods import Period

__all__ = ["LEDGER_MONTH_INDEXES", "ledger_month_index_names", "ledger_month_indexes_ensure"]

# name prefix -> the indexed columns; `_YYYY_MM` completes a month's index name.
LEDGER_MONTH_INDEXES: dict[str, tuple[str, ...]] = {
    "usage_line_drilldown": ("feature", "team", "environment", "model", "provider", "modality", "occurred_at"),
    "usage_line_trace": ("trace_id",),
}
_TABLE = "allocation_usageline"


def ledger_month_index_names(period: Period) -> list[str]:
    """The month's index names, e.g. usage_line_drilldown_2026_10."""
    suffix = str(period).replace("-", "_")
    return [f"{prefix}_{suffix}" for prefix in LEDGER_MONTH_INDEXES]


def _validity(name: str) -> bool | None:
    """True: the index is usable; False: a CONCURRENTLY build failed half-way; None: none."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
            [name],
        )
        row = cursor.fetchone()
    return None if row is None else row[0]


def ledger_month_indexes_ensure(*, period: Period) -> list[str]:
    """Build the month's drill-down indexes that are missing (or left invalid by a failed
    build); returns the names built. Nothing on a database other than PostgreSQL."""
    if connection.vendor != "postgresql":
        return []
    start, end = period.bounds
    # Literals, not parameters: DDL takes none. Both come from a parsed Period.
    predicate = f"occurred_at >= '{start.isoformat()}'::timestamptz AND occurred_at < '{end.isoformat()}'::timestamptz"
    concurrently = "" if connection.in_atomic_block else " CONCURRENTLY"
    built = []
    for name, columns in zip(ledger_month_index_names(period), LEDGER_MONTH_INDEXES.values(), strict=True):
        valid = _validity(name)
        if valid:
            continue
        with connection.cursor() as cursor:
            if valid is False:
                cursor.execute(f"DROP INDEX{concurrently} IF EXISTS {name}")
            cursor.execute(
                f"CREATE INDEX{concurrently} IF NOT EXISTS {name} ON {_TABLE} ({', '.join(columns)}) WHERE {predicate}"
            )
        built.append(name)
    return built
