"""Reading provider exports that are JSON documents: one, a list, or JSON lines."""

import json
from collections.abc import Iterator
from typing import TextIO

from ..records import SourceFormatError

__all__ = ["json_documents", "whole_number"]


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
                raise SourceFormatError(
                    f"not JSON (line {whole_error.lineno}, column {whole_error.colno}: {whole_error.msg}): expected {what}"
                ) from None
        yield from documents
        return
    if isinstance(document, list):
        for item in document:
            yield 1, item
    else:
        yield 1, document


def whole_number(value: object, field: str) -> int:
    """A non-negative integer from JSON (OTLP sends 64-bit ints as strings)."""
    from ..records import RowError

    if value is None:
        return 0
    if isinstance(value, bool):
        raise RowError(field, f"not a whole number: {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value)
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise RowError(field, f"not a whole number: {value!r}")
    if number < 0:
        raise RowError(field, f"negative: {value!r}")
    return number
