"""Our documented JSON lines: one event object per line (see events.py)."""

import json
from collections.abc import Iterator
from typing import TextIO

from ..records import LineBuilder, ParsedRecord, RejectedRecord, RowError, SourceFormatError
from .events import event_lines

__all__ = ["parse_jsonl"]


def parse_jsonl(stream: TextIO, *, builder: LineBuilder) -> Iterator[ParsedRecord | RejectedRecord]:
    seen_object = False
    for line, text in enumerate(stream, start=1):
        text = text.strip()
        if not text:
            continue
        try:
            event = json.loads(text)
        except json.JSONDecodeError as exc:
            if not seen_object:
                raise SourceFormatError(f"line {line} is not JSON ({exc.msg}): not a JSON lines file") from None
            yield RejectedRecord(line, "(line)", f"not JSON: {exc.msg}", text[:2000])
            continue
        if not isinstance(event, dict):
            if not seen_object:
                raise SourceFormatError(f"line {line} is not a JSON object: not a JSON lines file of events")
            yield RejectedRecord(line, "(line)", "not a JSON object", text[:2000])
            continue
        seen_object = True
        try:
            yield ParsedRecord(line, event_lines(event, line=line, builder=builder, raw_identity=text))
        except RowError as exc:
            yield RejectedRecord(line, exc.field, exc.reason, text[:2000])
