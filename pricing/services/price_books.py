"""Writing price books: a new immutable version, validated whole, from rows,
a YAML or CSV file, or an import; and exporting a version back to a file."""

import csv
import hashlib
import io
import json
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from django.db import connection, transaction

from pricing.choices import PriceBookKind
from pricing.config_files import ConfigErrors, yaml_parse
from pricing.csv_export import csv_cell_restore, csv_write
from pricing.errors import NotFound, ValidationFailed
from pricing.models import PRICE_DECIMAL_PLACES, AiModel, Price, PriceBook, PriceBookVersion, Unit
from pricing.money import decimal_text, parse_decimal

__all__ = [
    "PRICE_FILE_COLUMNS",
    "PriceRow",
    "price_book_export",
    "price_book_load_file",
    "price_book_version_create",
]

ERROR_CODE = "price_book_invalid"
PRICE_FILE_COLUMNS = (
    "provider",
    "model",
    "unit",
    "amount",
    "per",
    "service_tier",
    "tier",
    "context_above",
    "effective_from",
    "effective_to",
    "currency",
)
_REQUIRED = ("unit", "amount", "per")


@dataclass(frozen=True, slots=True)
class PriceRow:
    """One price as a file states it; `where` names its place for messages."""

    where: str
    provider: str
    model: str
    unit: str
    amount: Decimal
    per: int
    service_tier: str = ""
    tier: str = ""
    context_above: int = 0
    effective_from: date | None = None
    effective_to: date | None = None
    currency: str = "USD"

    def key(self) -> tuple:
        return (self.provider, self.model, self.unit, self.service_tier, self.tier, self.context_above)


def _checksum(rows: list[PriceRow]) -> str:
    canonical = sorted(
        json.dumps([*r.key(), decimal_text(r.amount), r.per, str(r.effective_from), str(r.effective_to), r.currency])
        for r in rows
    )
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()


def _overlaps(rows: list[PriceRow]) -> list[str]:
    by_key: dict[tuple, list[PriceRow]] = defaultdict(list)
    for row in rows:
        by_key[row.key()].append(row)
    problems = []
    for same in by_key.values():
        same.sort(key=lambda r: r.effective_from or date.min)
        for earlier, later in zip(same, same[1:], strict=False):
            earlier_end = earlier.effective_to or date.max
            if (later.effective_from or date.min) < earlier_end:
                problems.append(
                    f"{later.where}: its effective range overlaps {earlier.where} for the same model, unit and tiers"
                )
    return problems


@transaction.atomic
def price_book_version_create(
    *,
    book: PriceBook,
    rows: list[PriceRow],
    source: str,
    created_by=None,
    only_if_changed: bool = False,
) -> tuple[PriceBookVersion, bool]:
    """A new version of the book holding exactly these prices; refused whole if any is bad.

    With `only_if_changed`, prices equal to the latest version's make no new
    version (re-importing adds versions, never rewrites or repeats history).
    Returns the version and whether it was created.
    """
    # Each message names its row (`row.where`: the file and line, or the import it came from).
    errors = ConfigErrors(f"price book {book.code}", code=ERROR_CODE, name_unlocated=False)
    units = set(Unit.objects.values_list("code", flat=True))
    models: dict[tuple[str, str], AiModel] = {
        (m.provider.code, m.code): m for m in AiModel.objects.select_related("provider")
    }
    for row in rows:
        if row.unit not in units:
            errors.add(f"{row.where}: unit: unknown unit {row.unit!r}")
        if row.amount < 0:
            errors.add(f"{row.where}: amount: negative price {row.amount}")
        if row.per <= 0:
            errors.add(f"{row.where}: per: must be a positive number of units, not {row.per}")
        if row.context_above < 0:
            errors.add(f"{row.where}: context_above: must not be negative")
        if row.effective_from and row.effective_to and row.effective_to <= row.effective_from:
            errors.add(f"{row.where}: effective_to: must be after effective_from")
        if row.model and (row.provider, row.model) not in models:
            errors.add(
                f"{row.where}: model: {row.provider}/{row.model} is not in the catalog "
                "(run import_prices, or check the spelling)"
            )
        if not row.model and book.kind != PriceBookKind.RATE_CARD:
            errors.add(f"{row.where}: model: missing (only rate cards price per tier without a model)")
        if -row.amount.as_tuple().exponent > PRICE_DECIMAL_PLACES:
            errors.add(f"{row.where}: amount: more than {PRICE_DECIMAL_PLACES} decimal places")
    for overlap in _overlaps(rows):
        errors.add(overlap)
    errors.refuse_if_any()
    checksum = _checksum(rows)
    latest = PriceBookVersion.objects.select_for_update().filter(book=book).order_by("-number").first()
    if only_if_changed and latest is not None and latest.checksum == checksum:
        return latest, False
    version = PriceBookVersion.objects.create(
        book=book,
        number=(latest.number + 1) if latest else 1,
        source=source[:500],
        checksum=checksum,
        created_by=created_by,
    )
    Price.objects.bulk_create(
        [
            Price(
                version=version,
                model=models.get((row.provider, row.model)) if row.model else None,
                unit_id=row.unit,
                service_tier=row.service_tier,
                tier=row.tier,
                context_above=row.context_above,
                amount=row.amount,
                quantum=row.per,
                currency=row.currency,
                effective_from=row.effective_from,
                effective_to=row.effective_to,
            )
            for row in rows
        ],
        batch_size=2000,
    )
    if connection.vendor == "postgresql":
        # Fresh statistics, or the planner scans a book's thousands of prices per lookup.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE pricing_price")
    return version, True


def _parse_row(raw: dict[str, Any], where: str, errors: ConfigErrors) -> PriceRow | None:
    unknown = sorted(set(raw) - set(PRICE_FILE_COLUMNS))
    if unknown:
        errors.add(f"{where}: unknown field(s) {', '.join(unknown)}")
        return None
    missing = [field for field in _REQUIRED if raw.get(field) in (None, "")]
    if missing:
        errors.add(f"{where}: {', '.join(missing)}: missing")
        return None

    def text(field: str) -> str:
        value = raw.get(field)
        return "" if value is None else str(value).strip()

    def whole(field: str, default: int) -> int | None:
        value = text(field)
        if not value:
            return default
        try:
            return int(value)
        except ValueError:
            errors.add(f"{where}: {field}: not a whole number: {value!r}")
            return None

    def day(field: str) -> date | None:
        value = text(field)
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            errors.add(f"{where}: {field}: not a date (YYYY-MM-DD): {value!r}")
            return None

    try:
        amount = parse_decimal(raw["amount"] if not isinstance(raw["amount"], float) else repr(raw["amount"]))
    except ValueError as exc:
        errors.add(f"{where}: amount: {exc}")
        return None
    per = whole("per", 1)
    context_above = whole("context_above", 0)
    effective_from, effective_to = day("effective_from"), day("effective_to")
    if per is None or context_above is None:
        return None
    if text("model") and not text("provider"):
        errors.add(f"{where}: provider: missing (a model belongs to a provider)")
        return None
    return PriceRow(
        where=where,
        provider=text("provider"),
        model=text("model"),
        unit=text("unit"),
        amount=amount,
        per=per,
        service_tier=text("service_tier"),
        tier=text("tier"),
        context_above=context_above,
        effective_from=effective_from,
        effective_to=effective_to,
        currency=text("currency").upper() or "USD",
    )


def _read_rows(path: Path, file_format: str) -> tuple[list[PriceRow], dict[str, Any]]:
    errors = ConfigErrors(str(path), code=ERROR_CODE, name_unlocated=False)
    rows: list[PriceRow] = []
    header: dict[str, Any] = {}
    text = path.read_text(encoding="utf-8")
    if file_format == "yaml":
        document, lines = yaml_parse(text=text, source=str(path), error_code=ERROR_CODE)
        if not isinstance(document, dict) or not isinstance(document.get("prices"), list):
            raise ValidationFailed(f"{path}: expected a mapping with a 'prices' list", code=ERROR_CODE)
        header = {k: v for k, v in document.items() if k != "prices"}
        for index, raw in enumerate(document["prices"]):
            where = f"{path}:{lines.get(('prices', index, None), '?')}"
            if not isinstance(raw, dict):
                errors.add(f"{where}: expected a mapping of price fields")
                continue
            if (row := _parse_row(raw, where, errors)) is not None:
                rows.append(row)
    elif file_format == "csv":
        reader = csv.DictReader(io.StringIO(text))
        unknown = sorted(set(reader.fieldnames or []) - set(PRICE_FILE_COLUMNS))
        if not reader.fieldnames or unknown:
            raise ValidationFailed(
                f"{path}:1: unknown column(s) {', '.join(unknown)}; columns are {', '.join(PRICE_FILE_COLUMNS)}"
                if unknown
                else f"{path}: empty file",
                code=ERROR_CODE,
            )
        for read in reader:
            # A cell our export neutralized against spreadsheet formulas reads back as written.
            raw = {key: csv_cell_restore(value) if isinstance(value, str) else value for key, value in read.items()}
            where = f"{path}:{reader.line_num}"
            if (row := _parse_row(raw, where, errors)) is not None:
                rows.append(row)
    else:
        raise ValidationFailed(f"unknown price file format {file_format!r}: yaml or csv", code=ERROR_CODE)
    errors.refuse_if_any()
    return rows, header


def price_book_load_file(
    *,
    path: str | os.PathLike,
    book_code: str | None = None,
    name: str | None = None,
    kind: str | None = None,
    service: str = "",
    created_by=None,
) -> tuple[PriceBookVersion, bool]:
    """Load a YAML or CSV price file as a new version of a book (created if new).

    YAML may name its book at the top (`book`, `name`, `kind`, `service`);
    arguments win. A file equal to the latest version adds no version.
    Contract prices override list prices where both apply. Returns the
    version and whether it is new.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: no such file", code="file_not_found")
    file_format = "csv" if path.suffix.lower() == ".csv" else "yaml"
    rows, header = _read_rows(path, file_format)
    code = book_code or header.get("book")
    if not code:
        raise ValidationFailed(f"{path}: name the price book (--book CODE, or `book:` in YAML)", code=ERROR_CODE)
    kind = kind or header.get("kind") or PriceBookKind.CONTRACT
    if kind not in PriceBookKind.values:
        raise ValidationFailed(
            f"{path}: kind {kind!r} is not one of {', '.join(PriceBookKind.values)}", code=ERROR_CODE
        )
    book, _ = PriceBook.objects.get_or_create(
        code=code,
        defaults={
            "name": name or header.get("name") or code,
            "kind": kind,
            "service": service or header.get("service", ""),
        },
    )
    if book.kind != kind:
        raise ValidationFailed(f"price book {code} is a {book.kind} book, not {kind}", code=ERROR_CODE)
    return price_book_version_create(
        book=book, rows=rows, source=f"file {path.name}", created_by=created_by, only_if_changed=True
    )


def price_book_export(*, version: PriceBookVersion, file_format: str) -> str:
    """A version as YAML or CSV in the form `price_book_load_file` reads back."""
    prices = version.prices.select_related("model__provider").order_by(
        "model__provider__code", "model__code", "unit", "service_tier", "tier", "context_above", "effective_from"
    )
    records = [
        {
            "provider": p.model.provider.code if p.model else "",
            "model": p.model.code if p.model else "",
            "unit": p.unit_id,
            "amount": decimal_text(p.amount),
            "per": p.quantum,
            "service_tier": p.service_tier,
            "tier": p.tier,
            "context_above": p.context_above,
            "effective_from": p.effective_from.isoformat() if p.effective_from else "",
            "effective_to": p.effective_to.isoformat() if p.effective_to else "",
            "currency": p.currency,
        }
        for p in prices
    ]
    if file_format == "csv":
        out = io.StringIO()
        # The amount as a number, so the one CSV writer leaves it alone; codes are text.
        cells = ([Decimal(r[c]) if c == "amount" else r[c] for c in PRICE_FILE_COLUMNS] for r in records)
        csv_write(out, cells, header=PRICE_FILE_COLUMNS, lineterminator="\n")
        return out.getvalue()
    if file_format == "yaml":
        compact = [{k: v for k, v in r.items() if v not in ("", 0) or k in _REQUIRED} for r in records]
        document = {
            "book": version.book.code,
            "name": version.book.name,
            "kind": version.book.kind,
            "service": version.book.service,
            "version": version.number,
            "prices": compact,
        }
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    raise ValidationFailed(f"unknown price file format {file_format!r}: yaml or csv", code=ERROR_CODE)
