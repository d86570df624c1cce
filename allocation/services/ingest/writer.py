"""Writing ledger rows: the seam between PostgreSQL COPY and the portable path.

Both writers take a chunk of parsed records and report, per record, whether
it was inserted or already in the ledger (a duplicate). A record's rows are
written together, so a record is either wholly new or wholly a duplicate.
"""

import uuid
from collections.abc import Iterable, Iterator
from itertools import chain
from dataclasses import dataclass

import psycopg
from django.db import IntegrityError, connection, transaction

from allocation.models import UsageLine

from .records import LEDGER_COLUMNS, ParsedRecord

__all__ = ["ChunkResult", "LedgerWriter", "CopyLedgerWriter", "OrmLedgerWriter", "ledger_writer"]

_TABLE = UsageLine._meta.db_table
_COLUMN_LIST = ", ".join(f'"{c}"' for c in LEDGER_COLUMNS)


@dataclass(frozen=True, slots=True)
class ChunkResult:
    inserted: int
    duplicate: int
    lines_inserted: int
    duplicate_lines: frozenset[int] | None = None  # source lines of duplicates, where known


class LedgerWriter:
    def write(self, records: Iterable[ParsedRecord]) -> ChunkResult:
        """Write one chunk; consumes `records` to the end, which may be a stream."""
        raise NotImplementedError


class OrmLedgerWriter(LedgerWriter):
    """Portable: looks up which keys exist, then inserts the rest with the ORM."""

    lookup_size = 500  # stays under SQLite's bound-parameter limit

    def write(self, records: Iterable[ParsedRecord]) -> ChunkResult:
        records = list(records)
        if not records:
            return ChunkResult(0, 0, 0)
        keys = [row[0] for record in records for row in record.lines]
        existing: set[str] = set()
        for start in range(0, len(keys), self.lookup_size):
            part = [uuid.UUID(hex=k) for k in keys[start : start + self.lookup_size]]
            existing.update(k.hex for k in UsageLine.objects.filter(event_key__in=part).values_list("event_key", flat=True))
        new_lines: list[UsageLine] = []
        duplicate_lines: set[int] = set()
        inserted = 0
        for record in records:
            if record.lines[0][0] in existing:
                duplicate_lines.add(record.line)
                continue
            inserted += 1
            for row in record.lines:
                existing.add(row[0])  # a second copy later in the same chunk is a duplicate
                values = dict(zip(LEDGER_COLUMNS, row))
                values["event_key"] = uuid.UUID(hex=values["event_key"])
                new_lines.append(UsageLine(**values))
        UsageLine.objects.bulk_create(new_lines, batch_size=1000)
        return ChunkResult(inserted, len(records) - inserted, len(new_lines), frozenset(duplicate_lines))


class CopyLedgerWriter(LedgerWriter):
    """PostgreSQL: COPY straight into the ledger; on a key clash, via a staging table.

    A first load (the common case) pays for one COPY. When a chunk holds keys
    already present, it is copied into a temporary table and inserted with
    ON CONFLICT DO NOTHING, counting the records that went in on the server.

    Records are sent as the parser yields them, so the server stores and
    indexes a chunk while Python parses it: on two cores the two overlap.
    They are kept as they pass, to send the chunk again via the staging table
    if the ledger refuses it. Once a chunk has held duplicates, the next goes
    straight to the staging table (a re-run repeats a whole file), until a
    chunk holds none.
    """

    def __init__(self) -> None:
        self._via_staging = False

    def write(self, records: Iterable[ParsedRecord]) -> ChunkResult:
        records = iter(records)
        first = next(records, None)
        if first is None:
            return ChunkResult(0, 0, 0)
        records = chain((first,), records)
        if self._via_staging:
            result = self._write_via_staging(records)
        else:
            kept: list[ParsedRecord] = []
            try:
                with transaction.atomic():
                    self._copy(_TABLE, _keeping(records, kept))
                result = ChunkResult(len(kept), 0, sum(len(r.lines) for r in kept))
            except (IntegrityError, psycopg.errors.UniqueViolation):
                kept.extend(records)  # the rest, should the COPY have stopped early
                result = self._write_via_staging(kept)
        self._via_staging = result.duplicate > 0
        return result

    def _write_via_staging(self, records: Iterable[ParsedRecord]) -> ChunkResult:
        with connection.cursor() as cursor:
            cursor.execute(
                f'CREATE TEMP TABLE IF NOT EXISTS usage_line_stage (LIKE "{_TABLE}" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS'
            )
            cursor.execute("TRUNCATE usage_line_stage")
        count = self._copy("usage_line_stage", records)
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH ins AS (INSERT INTO \"{_TABLE}\" ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM usage_line_stage "
                "ON CONFLICT (event_key) DO NOTHING RETURNING source_line) "
                "SELECT count(*), count(DISTINCT source_line) FROM ins"
            )
            lines_inserted, inserted = cursor.fetchone()
        return ChunkResult(inserted, count - inserted, lines_inserted)

    @staticmethod
    def _copy(table: str, records: Iterable[ParsedRecord]) -> int:
        """COPY the records' rows into the table; returns the number of records."""
        count = 0
        with connection.cursor() as cursor:
            with cursor.cursor.copy(f'COPY "{table}" ({_COLUMN_LIST}) FROM STDIN') as copy:
                write_row = copy.write_row
                for count, record in enumerate(records, 1):  # noqa: B007 - the count is the result
                    for row in record.lines:
                        write_row(row)
        return count


def _keeping(records: Iterable[ParsedRecord], kept: list[ParsedRecord]) -> Iterator[ParsedRecord]:
    """The records, each appended to `kept` as it passes."""
    keep = kept.append
    for record in records:
        keep(record)
        yield record


def ledger_writer(*, per_record_results: bool = False) -> LedgerWriter:
    """COPY on PostgreSQL; the portable writer elsewhere, or where each record's fate is asked for."""
    if connection.vendor == "postgresql" and not per_record_results:
        return CopyLedgerWriter()
    return OrmLedgerWriter()
