"""Our documented CSV: one usage line per row, tags as columns (see events.py).

This is the hot path of a bulk load (millions of rows), so it has a fast lane
at two levels, each giving exactly what the general code would:

* Lines: a line without a double quote is split on commas, which is what the
  csv module returns for it, at a fraction of the cost. A line with a quote
  (whose quoted field may hold commas or span lines) or one long enough to hit
  the csv field size limit is read by the csv module.
* Rows: `_fast_row_builder` builds the ledger row of a plain, valid row from
  column positions, without a dict and keyword arguments per row. Any row it
  is not sure of (an image input given by size, a missing, malformed or
  too-long value) goes through the general `event_lines`, which decides and
  names the rejection; so the fast lane never rejects, and accepts only what
  `event_lines` accepts, building the same row.

The fast lane also makes the row's COPY text as it goes (ParsedRecord.copy_text),
from the strings it already holds, which the PostgreSQL writer sends as is.
"""

import csv
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from typing import TextIO

from allocation.choices import CORE_TAGS, TAG_FIELDS
from pricing.money import QUANTITY_DECIMAL_PLACES, QUANTITY_LIMIT

from ..records import (
    _MAX_LENGTHS,
    LEDGER_COLUMNS,
    LineBuilder,
    ParsedRecord,
    RejectedRecord,
    RowError,
    SourceFormatError,
    event_key,
)
from ..writer import timestamp_formatter
from .events import _MODEL_LESS_UNITS, EVENT_FIELDS, IMAGE_FIELDS, event_lines

__all__ = ["parse_csv"]

REQUIRED_COLUMNS = ("occurred_at", "provider", "unit", "quantity")
KNOWN_COLUMNS = frozenset(EVENT_FIELDS) | frozenset(IMAGE_FIELDS)
# Characters a value may not hold as it is in COPY text (the COPY writer escapes or refuses them).
_COPY_SPECIALS = ("\t", "\\", "\n", "\r", "\x00")


class _Lines:
    """The stream's lines as the csv module reads them, counted; one can be handed back.

    The fast lane reads the stream itself and hands a line it cannot split
    back here, so the csv module reads it and any further lines of a quoted
    field; `count` says how many lines it took from the stream.
    """

    __slots__ = ("stream", "pending", "count")

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.pending: str | None = None
        self.count = 0

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        if self.pending is not None:
            text, self.pending = self.pending, None
            return text
        text = next(self.stream)
        self.count += 1
        return text

    def hand_back(self, text: str) -> None:
        self.pending = text
        self.count = 0


def parse_csv(stream: TextIO, *, builder: LineBuilder) -> Iterator[ParsedRecord | RejectedRecord]:
    lines = _Lines(stream)
    reader = csv.reader(lines)
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
    fast_row = _fast_row_builder(columns, builder)
    field_limit = csv.field_size_limit()
    line = lines.count  # the line number, as the csv module's line_num would say
    for text in stream:
        line += 1
        # A line ends in one newline (\n, \r\n or \r, as the stream splits and
        # keeps them); a quote, or a newline inside, is for the csv module.
        body = text.rstrip("\r\n")
        if '"' in body or "\n" in body or "\r" in body or len(body) > field_limit:
            lines.hand_back(text)
            body = None
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line += lines.count
                yield RejectedRecord(line, "(row)", f"unreadable CSV: {exc}", "")
                continue
            line += lines.count
        else:
            row = body.split(",") if body else []  # a blank line is an empty row to csv too
        if not row:
            continue
        if len(row) != width:
            yield RejectedRecord(line, "(row)", f"{len(row)} fields, header has {width}", ",".join(row))
            continue
        record = fast_row(row, line, body)
        if record is not None:
            yield record
            continue
        raw = ",".join(row)
        event = dict(zip(columns, row, strict=True))
        try:
            yield ParsedRecord(line, event_lines(event, line=line, builder=builder))
        except RowError as exc:
            yield RejectedRecord(line, exc.field, exc.reason, raw)


def _fast_row_builder(
    columns: Sequence[str], builder: LineBuilder
) -> Callable[[list[str], int, str | None], ParsedRecord | None]:
    """For this header: a function giving a plain row's record, or None to defer.

    It repeats what event_lines and LineBuilder.line do for a row with a unit
    and a quantity, checking in the same order (so a value that makes them
    raise makes this raise too), and returns None wherever they would reject
    or take another path; the caller then runs them on the row.

    It is given the line the row was split from, if it was, for checks of the
    whole line at once: whether its values need stripping, and whether they
    can go into COPY text as they are (see ParsedRecord.copy_text).
    """
    position = {name: i for i, name in enumerate(columns)}
    blank = len(columns)  # each row gets a trailing "": an absent column reads blank

    def at(name: str) -> int:
        return position.get(name, blank)

    # The ledger's length limits of the columns, shortest first; LineBuilder
    # rejects stripped values longer (it lets a long unit by, but then the unit
    # is unknown). A row is checked against the limits below its longest value
    # only: a few columns for a typical row, whose values are short.
    limits = sorted(
        (_MAX_LENGTHS[field], i)
        for i, name in enumerate(columns)
        if (field := TAG_FIELDS.get(name, name)) in _MAX_LENGTHS
    )
    shortest_limit = limits[0][0] if limits else sys.maxsize
    i_event_id, i_occurred_at, i_provider, i_model = map(at, ("event_id", "occurred_at", "provider", "model"))
    i_unit, i_quantity, i_tier = map(at, ("unit", "quantity", "tier"))
    raw_context = position.get("context_tokens")
    i_context = at("context_tokens")
    i_team, i_feature, i_environment = map(at, CORE_TAGS)
    i_modality = at("modality")

    # The ledger row and its COPY text are picked from the row's values by two
    # itemgetters (a C call each, cheaper than building either by hand) once
    # the values computed per row are appended, after the blank: `computed`
    # as the ledger row holds them, then `as_text` as COPY text.
    computed = (
        *("event_key", "event_id", "modality", "batch_id", "source_line"),
        *("occurred_at", "quantity", "context_tokens", "is_untagged"),
    )
    as_text = ("batch_id", "source_line", "occurred_at", "quantity", "context_tokens", "is_untagged")
    tag_of_field = {field: tag for tag, field in TAG_FIELDS.items()}

    def source(column: str, text: bool) -> int:
        """Where the value of a ledger column is in a row's values, typed or as text."""
        if text and column in as_text:
            return blank + 1 + len(computed) + as_text.index(column)
        if column in computed:
            return blank + 1 + computed.index(column)
        return at(tag_of_field.get(column, column))

    ledger_row = itemgetter(*(source(column, False) for column in LEDGER_COLUMNS))
    copy_fields = itemgetter(*(source(column, True) for column in LEDGER_COLUMNS))
    batch_id = builder.batch_id
    batch_text = str(batch_id)
    unit_modalities = builder.unit_modalities
    # A modality goes into the COPY text as it is: make none if one would need escaping.
    copy_safe = not any(c in m for m in unit_modalities.values() for c in _COPY_SPECIALS)
    strip = str.strip
    fromisoformat = datetime.fromisoformat
    timestamp_text = timestamp_formatter()
    # Rows of one call share its time: parse each distinct text once.
    last_time_text = last_time_copy = None
    last_time: datetime | None = None
    earliest, latest = builder.earliest, builder.latest

    def fast_row(row: list[str], line: int, body: str | None) -> ParsedRecord | None:
        nonlocal last_time_text, last_time, last_time_copy
        if body is None:
            plain = bare = False
            if any("\x00" in value for value in row):
                return None  # NUL: LineBuilder rejects it
        else:
            if "\x00" in body:
                return None
            # (A split line holds no newline.) No character COPY text escapes:
            plain = not ("\t" in body or "\\" in body or "\x00" in body)
            # No whitespace, as str.strip() sees it in ASCII text: nothing to strip.
            bare = (
                plain
                and body.isascii()
                and not (" " in body or "\v" in body or "\f" in body or "\x1c" in body)
                and not ("\x1d" in body or "\x1e" in body or "\x1f" in body)
            )
        values = [*row, ""] if bare else [*map(strip, row), ""]
        longest = max(map(len, values))
        if longest > shortest_limit:
            for limit, i in limits:
                if limit >= longest:
                    break
                if len(values[i]) > limit:
                    return None
        provider = values[i_provider]
        if not provider:
            return None
        event_id = values[i_event_id]
        if not event_id:
            return None  # keyed by its canonical content: event_lines makes that key
        text = values[i_occurred_at]
        if text != last_time_text:
            try:
                parsed = fromisoformat(text)
                time = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
            except (ValueError, OverflowError):
                return None
            if not earliest <= time < latest:
                return None  # not a plausible usage time
            last_time = time
            last_time_text, last_time_copy = text, timestamp_text(last_time)
        model = values[i_model]
        text = values[i_context]
        if not text:
            if raw_context is not None and row[raw_context]:
                return None  # blanks only: not a whole number
            context_tokens = None
        elif text == "0":
            if row[raw_context] != "0":
                return None  # a padded zero is not the zero event_lines lets through
            context_tokens = 0
        else:
            # int() also reads '٣', '1_000' and ' 1'; event_lines takes a few ASCII digits only.
            if not (text.isascii() and text.isdigit() and len(text) <= 18):
                return None
            context_tokens = int(text)
            if context_tokens <= 0:
                return None
        unit = values[i_unit]
        text = values[i_quantity]
        if not unit or not text or "_" in text:
            return None  # missing, or an image input given by its size
        # Decimal() reads any Unicode digit; an exponent or more than the ledger's decimal
        # places is for LineBuilder to write out or refuse.
        if not text.isascii() or "e" in text or "E" in text:
            return None
        dot = text.find(".")
        if dot >= 0 and len(text) - dot - 1 > QUANTITY_DECIMAL_PLACES:
            return None
        try:
            quantity = Decimal(text)
        except InvalidOperation:
            return None
        if not quantity.is_finite() or quantity < 0 or quantity >= QUANTITY_LIMIT:
            return None
        if not model and unit not in _MODEL_LESS_UNITS:
            return None
        modality = unit_modalities.get(unit)
        if modality is None:
            return None
        untagged = not (values[i_team] and values[i_feature] and values[i_environment])
        values += (
            # computed
            event_key(provider, event_id, unit, values[i_tier]),
            event_id,
            values[i_modality] or modality,
            batch_id,
            line,
            last_time,
            quantity,
            context_tokens,
            untagged,
            # as_text, as the COPY writer writes them
            batch_text,
            str(line),
            last_time_copy,
            str(quantity),
            "\\N" if context_tokens is None else str(context_tokens),
            "t" if untagged else "f",
        )
        return ParsedRecord(line, [ledger_row(values)], "\t".join(copy_fields(values)) if plain and copy_safe else None)

    return fast_row
