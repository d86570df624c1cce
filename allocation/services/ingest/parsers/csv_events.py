"""Our documented CSV: one usage line per row, tags as columns (see events.py)."""

import csv
from collections.abc import Iterator
from typing import TextIO

from ..records import LineBuilder, ParsedRecord, RejectedRecord, RowError, SourceFormatError
from .events import EVENT_FIELDS, IMAGE_FIELDS, event_lines

__all__ = ["parse_csv"]

REQUIRED_COLUMNS = ("occurred_at", "provider", "unit", "quantity")
KNOWN_COLUMNS = frozenset(EVENT_FIELDS) | frozenset(IMAGE_FIELDS)


def parse_csv(stream: TextIO, *, builder: LineBuilder) -> Iterator[ParsedRecord | RejectedRecord]:
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except StopIteration:
        raise SourceFormatError("empty file: expected a CSV header line") from None
    except csv.Error as exc:
        raise SourceFormatError(f"not a CSV file: {exc}") from None
    columns = [name.strip().lstrip("\ufeff") for name in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in KNOWN_COLUMNS]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing required column(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown column(s) {', '.join(unknown)}")
        raise SourceFormatError(
            f"line 1 is not our usage CSV header: {'; '.join(problems)}",
            extra={"known_columns": sorted(KNOWN_COLUMNS)},
        )
    if len(set(columns)) != len(columns):
        raise SourceFormatError("line 1: a column name appears twice")
    width = len(columns)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RejectedRecord(reader.line_num, "(row)", f"unreadable CSV: {exc}", "")
            continue
        line = reader.line_num
        if not row:
            continue
        raw = ",".join(row)
        if len(row) != width:
            yield RejectedRecord(line, "(row)", f"{len(row)} fields, header has {width}", raw)
            continue
        try:
            yield ParsedRecord(line, event_lines(dict(zip(columns, row)), line=line, builder=builder, raw_identity=raw))
        except RowError as exc:
            yield RejectedRecord(line, exc.field, exc.reason, raw)
