"""The one CSV writer of every export: cells a spreadsheet cannot run as formulas.

A cell that begins with `=`, `+`, `-` or `@` is a formula to Excel, LibreOffice
and Google Sheets, and one that begins with a tab or a carriage return can be
made into one (OWASP, "CSV Injection"). Tags, model names, rejected raw records
and invoice ids come from outside, so every text cell that begins with one of
those characters is written with a single quote in front: a spreadsheet shows
it as text, and a reader that knows the rule takes the quote off again
(`csv_cell_restore`).

Numbers are told apart by their type, never guessed from their text: an `int`
or a `Decimal` is a number and is written as it stands (a Decimal in plain
notation, digit for digit: '-12.50', '0.000000125'), so a negative credit stays
a number. A number the caller has already turned into text is text, and is
neutralized like any other; callers hand over Decimals. Floats are refused:
money and quantities are never floats here.

Every export goes through here: the run lines CSV and the batch rejections CSV
(page and API, streamed with `csv_lines`), the FOCUS export and the price book
CSV (written with `csv_write`).
"""

import csv
from collections.abc import Iterable, Iterator
from datetime import date
from decimal import Decimal
from typing import TextIO

__all__ = [
    "CSV_CONTENT_TYPE",
    "FORMULA_TRIGGERS",
    "csv_cell",
    "csv_cell_restore",
    "csv_lines",
    "csv_write",
    "xlsx_bytes",
]

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
# The first characters that make a spreadsheet cell a formula (OWASP's list).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NEUTRALIZER = "'"


def csv_cell(value: object) -> str:
    """One cell's text: None is empty, int and Decimal as numbers, anything else as neutralized text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, float):
        raise TypeError(f"CSV cell {value!r} is a float: pass a Decimal (money and quantities are never floats)")
    text = value.isoformat() if isinstance(value, date) else str(value)
    if text.startswith(FORMULA_TRIGGERS):
        return _NEUTRALIZER + text
    return text


def csv_cell_restore(text: str) -> str:
    """A cell read back from one of our files: the neutralizing quote taken off again."""
    if text.startswith(_NEUTRALIZER) and text[1:].startswith(FORMULA_TRIGGERS):
        return text[1:]
    return text


class _Line:
    """A file-like object whose write returns the line, so csv.writer yields text to stream."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[Iterable[object]], *, lineterminator: str = "\r\n") -> Iterator[str]:
    """Each row as one line of CSV text, for a streamed download that holds no memory."""
    writer = csv.writer(_Line(), lineterminator=lineterminator)
    for row in rows:
        yield writer.writerow([csv_cell(value) for value in row])


def csv_write(
    stream: TextIO,
    rows: Iterable[Iterable[object]],
    *,
    header: Iterable[str] | None = None,
    lineterminator: str = "\r\n",
) -> int:
    """Write the header (when given) and the rows to `stream`, opened with newline=''; returns the rows written."""
    if header is not None:
        stream.write(next(csv_lines([header], lineterminator=lineterminator)))
    count = 0
    for line in csv_lines(rows, lineterminator=lineterminator):
        stream.write(line)
        count += 1
    return count


XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def xlsx_bytes(sheets: dict[str, tuple[list[str], Iterable[Iterable[object]]]]) -> bytes:
    """A workbook of one sheet per (header, rows): ints and Decimals as numbers, every
    other cell as text neutralized as in a CSV (openpyxl would store `=...` as a formula)."""
    from io import BytesIO

    from openpyxl import Workbook

    book = Workbook(write_only=True)
    for title, (header, rows) in sheets.items():
        sheet = book.create_sheet(title=title[:31])
        sheet.append(header)
        for row in rows:
            sheet.append([_xlsx_cell(value) for value in row])
    buffer = BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _xlsx_cell(value: object) -> object:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal):
        return value
    return csv_cell(value)


__all__ += ["XLSX_CONTENT_TYPE"]
