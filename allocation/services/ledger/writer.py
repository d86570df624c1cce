"""Writing ledger rows: the seam between PostgreSQL COPY and the portable path.

Both writers take a chunk of parsed records and report, per record, whether
it was inserted or already in the ledger (a duplicate). A record's rows are
written together, so a record is either wholly new or wholly a duplicate.
"""

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import chain
from typing import Protocol

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


class LedgerWriter(Protocol):
    def write(self, records: Iterable[ParsedRecord]) -> ChunkResult:
        """Write one chunk; consumes `records` to the end, which may be a stream."""
        ...


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
            existing.update(
                k.hex for k in UsageLine.objects.filter(event_key__in=part).values_list("event_key", flat=True)
            )
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
                values = dict(zip(LEDGER_COLUMNS, row, strict=True))
                values["event_key"] = uuid.UUID(hex=values["event_key"])
                new_lines.append(UsageLine(**values))
        UsageLine.objects.bulk_create(new_lines, batch_size=1000)
        return ChunkResult(inserted, len(records) - inserted, len(new_lines), frozenset(duplicate_lines))


class CopyLedgerWriter(LedgerWriter):
    """PostgreSQL: COPY straight into the ledger; on a key clash, via a staging table.

    A first load (the common case) pays for one COPY. When a chunk holds keys
    already present, it is copied into a temporary table and inserted with
    ON CONFLICT DO NOTHING, counting the records that went in on the server.

    Rows are formatted and sent as the parser yields them, so the server
    stores and indexes a chunk while Python parses it (two processes, two
    cores). The text sent is kept, to send the chunk again via the staging
    table if the ledger refuses it. Once a chunk has held duplicates, the next
    goes straight to the staging table (a re-run repeats a whole file), until
    a chunk holds none.
    """

    def __init__(self) -> None:
        self._via_staging = False

    def write(self, records: Iterable[ParsedRecord]) -> ChunkResult:
        counts = _Counts()
        blocks = _copy_text(records, counts)
        first = next(blocks, None)
        if first is None:  # no record: nothing to send
            return ChunkResult(0, 0, 0)
        blocks = chain((first,), blocks)
        if self._via_staging:
            result = self._write_via_staging(blocks, counts)
        else:
            sent: list[bytes] = []
            try:
                with transaction.atomic():
                    self._copy(_TABLE, _keeping(blocks, sent))
                result = ChunkResult(counts.records, 0, counts.lines)
            except (IntegrityError, psycopg.errors.UniqueViolation):
                sent.extend(blocks)  # the rest, should the COPY have stopped early
                result = self._write_via_staging(sent, counts)
        self._via_staging = result.duplicate > 0
        return result

    def _write_via_staging(self, blocks: Iterable[bytes], counts: "_Counts") -> ChunkResult:
        with connection.cursor() as cursor:
            cursor.execute(
                f'CREATE TEMP TABLE IF NOT EXISTS usage_line_stage (LIKE "{_TABLE}" INCLUDING DEFAULTS) '
                "ON COMMIT DELETE ROWS"
            )
            cursor.execute("TRUNCATE usage_line_stage")
        self._copy("usage_line_stage", blocks)
        with connection.cursor() as cursor:
            cursor.execute(
                f'WITH ins AS (INSERT INTO "{_TABLE}" ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM usage_line_stage '
                "ON CONFLICT (event_key) DO NOTHING RETURNING source_line) "
                "SELECT count(*), count(DISTINCT source_line) FROM ins"
            )
            lines_inserted, inserted = cursor.fetchone()
        return ChunkResult(inserted, counts.records - inserted, lines_inserted)

    @staticmethod
    def _copy(table: str, blocks: Iterable[bytes]) -> None:
        with connection.cursor() as cursor, cursor.cursor.copy(f'COPY "{table}" ({_COLUMN_LIST}) FROM STDIN') as copy:
            for block in blocks:
                copy.write(block)


@dataclass(slots=True)
class _Counts:
    records: int = 0
    lines: int = 0


def _keeping(blocks: Iterable[bytes], kept: list[bytes]) -> Iterator[bytes]:
    """The blocks, each appended to `kept` as it passes."""
    for block in blocks:
        kept.append(block)
        yield block


# COPY text, written here rather than by psycopg's write_row: it is the same
# text psycopg's dumpers give, at about a third of the cost, because nearly
# every value is already a string and a row is then one join. The columns
# that are not text are converted by position, from the types LineBuilder
# gives them (int, datetime, a finite Decimal, int or None, bool).
_BLOCK_ROWS = 300  # rows per write: about 110 KB, under psycopg's 128 KB, which it would split
_BATCH_ID, _SOURCE_LINE, _OCCURRED_AT, _QUANTITY, _CONTEXT_TOKENS, _IS_UNTAGGED = map(
    LEDGER_COLUMNS.index, ("batch_id", "source_line", "occurred_at", "quantity", "context_tokens", "is_untagged")
)
_TABS = len(LEDGER_COLUMNS) - 1
# psycopg's escapes for text COPY (backslash, and the characters it would read as escapes).
_ESCAPES = str.maketrans({"\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"})


def _copy_text(records: Iterable[ParsedRecord], counts: _Counts) -> Iterator[bytes]:
    """The records' rows as COPY text in blocks of lines; counts records and lines as it goes."""
    lines: list[str] = []
    row_text = _row_formatter()
    for record in records:
        counts.records += 1
        counts.lines += len(record.lines)
        if record.copy_text is not None:
            lines.append(record.copy_text)
        else:
            lines.extend(map(row_text, record.lines))
        if len(lines) >= _BLOCK_ROWS:
            lines.append("")
            yield "\n".join(lines).encode()
            lines.clear()
    if lines:
        lines.append("")
        yield "\n".join(lines).encode()


def timestamp_formatter() -> Callable[[datetime], str]:
    """A function giving str() of a datetime, which psycopg sends in COPY text; faster for UTC.

    str() spends most of its time on the UTC offset. For UTC the text is the
    date, the time and "+00:00"; and the date, shared by many rows, is kept.
    """
    last_date = last_date_text = None

    def timestamp_text(time: datetime) -> str:
        nonlocal last_date, last_date_text
        if time.tzinfo is not UTC:
            return str(time)
        date = time.date()
        if date != last_date:
            last_date, last_date_text = date, str(date)
        return last_date_text + " " + time.time().isoformat() + "+00:00"

    return timestamp_text


def _row_formatter() -> Callable[[tuple], str]:
    """A function giving a row's COPY text line, as psycopg's text dumpers would."""
    timestamp_text = timestamp_formatter()
    last_time = last_time_text = None

    def row_text(row: tuple) -> str:
        nonlocal last_time, last_time_text
        values = list(row)
        # The rows of one event share their time: convert it once.
        time = values[_OCCURRED_AT]
        if time is not last_time:
            last_time, last_time_text = time, timestamp_text(time)
        values[_OCCURRED_AT] = last_time_text
        values[_BATCH_ID] = str(values[_BATCH_ID])
        values[_SOURCE_LINE] = str(values[_SOURCE_LINE])
        values[_QUANTITY] = str(values[_QUANTITY])
        context_tokens = values[_CONTEXT_TOKENS]
        values[_CONTEXT_TOKENS] = "\\N" if context_tokens is None else str(context_tokens)
        values[_IS_UNTAGGED] = "t" if values[_IS_UNTAGGED] else "f"
        try:
            line = "\t".join(values)
        except TypeError:  # a value of a type not expected in its column
            return _copy_line(row)
        if line.count("\t") != _TABS or "\\" in line or "\n" in line or "\r" in line or "\x00" in line:
            return _copy_line(row)  # a value to escape (or refuse)
        return line

    return row_text


def _copy_line(row: tuple) -> str:
    """One row as COPY text, value by value, as psycopg's text dumpers write it."""
    out = []
    for value in row:
        if value is None:
            out.append("\\N")
        elif isinstance(value, str):
            if "\x00" in value:
                raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
            out.append(value.translate(_ESCAPES))
        elif isinstance(value, bool):
            out.append("t" if value else "f")
        elif isinstance(value, Decimal) and value.is_nan():
            out.append("NaN")
        else:
            out.append(str(value))
    return "\t".join(out)


def ledger_writer(*, per_record_results: bool = False) -> LedgerWriter:
    """COPY on PostgreSQL; the portable writer elsewhere, or where each record's fate is asked for."""
    if connection.vendor == "postgresql" and not per_record_results:
        return CopyLedgerWriter()
    return OrmLedgerWriter()
