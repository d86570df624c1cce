"""Reading provider exports that are JSON documents: one, a list, or JSON lines."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from pricing.money import QUANTITY_LIMIT

from ..records import RowError, SourceFormatError

__all__ = [
    "UnreadableLine",
    "group_text",
    "json_documents",
    "json_loads",
    "page_buckets",
    "usage_buckets",
    "whole_number",
]

# Digits of the largest whole number worth reading: past the ledger's limit anyway,
# and short of Python's 4,300-digit limit on int(), which raises ValueError.
_MAX_DIGITS = len(str(QUANTITY_LIMIT))


@dataclass(frozen=True, slots=True)
class UnreadableLine:
    """A line of a JSON lines file that is not JSON, after lines that were: it costs
    the records it would have held (one rejection), not the file."""

    reason: str


def json_loads(text: str) -> object:
    """json.loads, with every way it fails as a ValueError naming why.

    Nesting past Python's recursion limit raises RecursionError, and a number of
    more than 4,300 digits a plain ValueError, neither a JSONDecodeError.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ValueError("nested too deeply to read") from None
    except ValueError as exc:
        raise ValueError(str(exc)[:200]) from None


def json_documents(stream: TextIO, *, what: str) -> Iterator[tuple[int, object]]:
    """(line, document) pairs: a file holding one JSON value (a list gives its
    items), or JSON lines with one document a line. A file whose first document
    is not JSON is refused whole; a later line that is not JSON is yielded as an
    UnreadableLine."""
    text = stream.read()
    if not text.strip():
        raise SourceFormatError(f"empty file: expected {what}")
    try:
        document = json_loads(text)
    except ValueError as whole_error:
        lines = [(n, t) for n, t in enumerate(text.splitlines(), start=1) if t.strip()]
        documents: list[tuple[int, object]] = []
        for n, line in lines:
            try:
                documents.append((n, json_loads(line)))
            except ValueError as exc:
                if not documents:
                    raise SourceFormatError(f"not JSON ({whole_error}): expected {what}") from None
                documents.append((n, UnreadableLine(f"not JSON: {exc}")))
        yield from documents
        return
    if isinstance(document, list):
        for item in document:
            yield 1, item
    else:
        yield 1, document


def whole_number(value: object, field: str) -> int:
    """A non-negative integer from JSON (OTLP sends 64-bit ints as strings)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise RowError(field, f"not a whole number: {value!r}")
    digits = value.strip().removeprefix("-") if isinstance(value, str) else ""
    # isdigit() alone takes '²' and '٣', which int() refuses or reads as another digit.
    integral_text = digits.isascii() and digits.isdigit()
    integral_float = isinstance(value, float) and value.is_integer()
    if not (isinstance(value, int) or integral_text or integral_float):
        raise RowError(field, f"not a whole number: {str(value)[:40]!r}")
    if integral_text and len(digits.lstrip("0")) > _MAX_DIGITS:
        raise RowError(field, f"too large: {len(digits)} digits")
    number = int(value)
    if number < 0:
        raise RowError(field, f"negative: {str(value)[:40]}")
    if number >= QUANTITY_LIMIT:
        raise RowError(field, f"too large: {str(value)[:40]} (the ledger holds less than 10^21)")
    return number


def group_text(result: dict, fields: tuple[str, ...]) -> str:
    """The grouping values of a provider result joined into its bucket's id, each in
    one canonical spelling (a whole float as an int), so the same bucket exported
    again reads as the same bucket."""
    parts = []
    for field in fields:
        value = result.get(field)
        if value is None:
            continue
        if isinstance(value, float) and value.is_integer() and abs(value) < QUANTITY_LIMIT:
            value = int(value)
        if not isinstance(value, str | int | float):  # bool is an int: str() gives True
            raise RowError(field, f"expected a text or number, got {type(value).__name__}")
        parts.append(str(value))
    return ":".join(parts)


def usage_buckets(
    stream: TextIO, *, what: str, time_key: str, other_time_key: str, other_format: str
) -> list[tuple[str, dict | UnreadableLine]]:
    """The (path, bucket) of every time bucket of provider report pages, or
    (line, UnreadableLine) for a page line that is not JSON."""
    return page_buckets(
        json_documents(stream, what=what),
        what=what,
        time_key=time_key,
        other_time_key=other_time_key,
        other_format=other_format,
    )


def page_buckets(
    pages: Iterable[tuple[int, object]], *, what: str, time_key: str, other_time_key: str, other_format: str
) -> list[tuple[str, dict | UnreadableLine]]:
    """The (path, bucket) of every time bucket of (line, page) pairs: provider report
    pages, of usage or of costs.

    All pages are checked before any record is read, so a file in another
    format (its buckets keyed by `other_time_key`) is refused whole, with a hint.
    """
    buckets: list[tuple[str, dict | UnreadableLine]] = []
    for line, page in pages:
        if isinstance(page, UnreadableLine):
            buckets.append((f"line {line}", page))
            continue
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            raise SourceFormatError(f"a document has no 'data' list: expected {what}")
        for b, bucket in enumerate(page["data"]):
            if not isinstance(bucket, dict) or time_key not in bucket or not isinstance(bucket.get("results"), list):
                hint = ""
                if isinstance(bucket, dict) and other_time_key in bucket:
                    hint = f" (its buckets have {other_time_key}: use --format {other_format})"
                raise SourceFormatError(f"data[{b}] is not a bucket with {time_key} and results{hint}: expected {what}")
            buckets.append((f"data[{b}]", bucket))
    return buckets
