"""Our documented JSON lines: one event object per line (see events.py)."""

from collections.abc import Iterator
from typing import TextIO

from ..records import (
    LineBuilder,
    ParsedRecord,
    RejectedRecord,
    RowError,
    SourceFormatError,
    require_nesting,
    storable_text,
)
from .events import event_lines
from .json_documents import json_loads

__all__ = ["parse_jsonl"]


def parse_jsonl(stream: TextIO, *, builder: LineBuilder) -> Iterator[ParsedRecord | RejectedRecord]:
    seen_object = False
    for line, text in enumerate(stream, start=1):
        text = text.strip()
        if not text:
            continue
        raw = storable_text(text, 2000)
        try:
            event = json_loads(text)
        except ValueError as exc:
            if not seen_object:
                raise SourceFormatError(f"line {line} is not JSON ({exc}): not a JSON lines file") from None
            yield RejectedRecord(line, "(line)", f"not JSON: {exc}", raw)
            continue
        if not isinstance(event, dict):
            if not seen_object:
                raise SourceFormatError(f"line {line} is not a JSON object: not a JSON lines file of events")
            yield RejectedRecord(line, "(line)", "not a JSON object", raw)
            continue
        seen_object = True
        try:
            require_nesting(event, "(line)")
            yield ParsedRecord(line, event_lines(event, line=line, builder=builder))
        except RowError as exc:
            yield RejectedRecord(line, exc.field, exc.reason, raw)
