"""Reading provider exports that are JSON documents: one, a list, or JSON lines."""

import json
from collections.abc import Iterator
from typing import TextIO

from ..records import RowError, SourceFormatError

__all__ = ["json_documents", "usage_buckets", "whole_number"]


def json_documents(stream: TextIO, *, what: str) -> Iterator[tuple[int, object]]:
    """(line, document) pairs: a file holding one JSON value (a list gives its
    items), or JSON lines with one document a line. Not JSON: refused whole."""
    text = stream.read()
    if not text.strip():
        raise SourceFormatError(f"empty file: expected {what}")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as whole_error:
        lines = [(n, t) for n, t in enumerate(text.splitlines(), start=1) if t.strip()]
        documents = []
        for n, line in lines:
            try:
                documents.append((n, json.loads(line)))
            except json.JSONDecodeError:
                where = f"line {whole_error.lineno}, column {whole_error.colno}"
                raise SourceFormatError(f"not JSON ({where}: {whole_error.msg}): expected {what}") from None
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
    integral_text = isinstance(value, str) and value.strip().lstrip("-").isdigit()
    integral_float = isinstance(value, float) and value.is_integer()
    if not (isinstance(value, int) or integral_text or integral_float):
        raise RowError(field, f"not a whole number: {value!r}")
    number = int(value)
    if number < 0:
        raise RowError(field, f"negative: {value!r}")
    return number


def usage_buckets(
    stream: TextIO, *, what: str, time_key: str, other_time_key: str, other_format: str
) -> list[tuple[str, dict]]:
    """The (path, bucket) of every time bucket of provider report pages.

    All pages are checked before any record is read, so a file in another
    format (its buckets keyed by `other_time_key`) is refused whole, with a hint.
    """
    buckets = []
    for _, page in json_documents(stream, what=what):
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
