"""The writers of the demo's files: the provider invoices and the activity counts.

Amounts are written digit for digit (never through float), so that a file read
back holds the same Decimal; a file is written whole, so that a run stopped
halfway leaves no half-written invoice for the next run to keep.
"""

import csv
import io
import json
import re
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from pricing.money import decimal_text

__all__ = ["csv_text", "file_write", "json_text"]


def _cell(value: Any, empty: str) -> str:
    if value is None or value == "":
        return empty
    return decimal_text(value) if isinstance(value, Decimal) else str(value)


def csv_text(columns: Sequence[str], rows: Sequence[dict | tuple], *, empty: str = "") -> str:
    """CSV with a header row; amounts written digit for digit, empty cells as `empty`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = [row.get(column) for column in columns] if isinstance(row, dict) else list(row)
        writer.writerow([_cell(value, empty) for value in values])
    return out.getvalue()


_NUMBER_MARK = "\x00"


def json_text(document: Any) -> str:
    """JSON in which Decimal amounts are JSON numbers, digit for digit (never through float)."""

    def number(value: Any) -> str:
        if isinstance(value, Decimal):
            return _NUMBER_MARK + decimal_text(value)
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    text = json.dumps(document, indent=2, default=number)
    return re.sub(r'"\\u0000(-?[0-9.]+)"', r"\1", text) + "\n"


def file_write(path: Path, text: str, *, replace: bool) -> None:
    """Write a file whole (through a temporary file), or keep it if it exists and not `replace`."""
    if path.exists() and not replace:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
