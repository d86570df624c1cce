"""The provider invoice formats `ingest_invoice` reads (`--format`), one parser each:

* `focus`: a FOCUS 1.0 to 1.2 cost and usage CSV. Columns used: BilledCost,
  EffectiveCost, ListCost, ChargeCategory (Usage, Purchase, Tax, Credit,
  Adjustment), ChargeDescription, SkuId, ConsumedQuantity and ConsumedUnit
  (else PricingQuantity and PricingUnit), ChargePeriodStart/End,
  BillingPeriodStart/End, BillingCurrency, InvoiceId (when present),
  ProviderName, BillingAccountId, SubAccountId (as the project). The literal
  `NULL` is an empty value. Without InvoiceId, the invoice is one per billing
  account and billing month: `<provider>:<BillingAccountId>:<YYYY-MM>`.
* `openai-costs`: pages of OpenAI's /v1/organization/costs. `amount.value` is
  in **dollars** (a JSON number), `currency` lower case; `line_item` is the
  SKU, `project_id` the project. One invoice per billing month of the bucket
  start: `<provider>:<YYYY-MM>`.
* `anthropic-costs`: pages of Anthropic's /v1/organizations/cost_report.
  `amount` is in **cents**, as a decimal string (`"123.78912"` is
  $1.2378912): divided by 100 exactly. `cost_type`, `token_type` and
  `context_window` make the SKU; `description`, `model`, `service_tier` and
  `workspace_id` (the project) are kept. One invoice per billing month.
* `csv`: our simple form, one invoice line a row, with a header row:

  ==================== ======== =====================================================
  column               required meaning
  ==================== ======== =====================================================
  invoice_id           yes      the provider's invoice number
  charge_period_start  yes      ISO 8601 time (naive is UTC)
  charge_period_end    yes      ISO 8601 time, not before the start
  charge_category      yes      usage, purchase, tax, credit or adjustment
  billed_cost          yes      decimal, in the invoice currency (negative for credits)
  currency             yes      ISO 4217 code, e.g. USD
  provider             no       must be the `--provider` given, when filled
  billing_period_start no       default: the month of charge_period_start
  billing_period_end   no       default: the first of the following month
  effective_cost       no       default: billed_cost
  list_cost            no       empty when unknown
  sku, description     no
  unit, quantity       no       quantity a decimal, not negative
  model, service_tier  no
  project              no       provider project or workspace
  ==================== ======== =====================================================

A parser yields a parsed line or a rejected record (line, field, reason) per
line read; a file not in its format, or not readable at all, raises
`SourceFormatError`. A negative quantity is accepted only as a reversal (a
negative billed cost, as Azure states refunds in FOCUS) and rejected otherwise.

Every value a line cannot hold is that line's rejection, never the load's
error: a number not in ASCII digits, beyond its column (with a digit to
spare for SQLite's float read-back) or not finite; a time outside
`EARLIEST`..`LATEST`; text with a NUL or a lone surrogate or over its
column; a JSON result nested deeper than `MAX_NESTING`; a CSV row with more
or fewer fields than its header, or one the csv module cannot read.
"""

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import TextIO

from allocation.choices import ChargeCategory, InvoiceSourceFormat
from allocation.models.invoices import (
    INVOICE_MONEY_DECIMAL_PLACES,
    INVOICE_MONEY_MAX_DIGITS,
    INVOICE_QUANTITY_DECIMAL_PLACES,
    INVOICE_QUANTITY_MAX_DIGITS,
    InvoiceLine,
)
from allocation.services.ledger.parsers.json_documents import page_buckets
from allocation.services.ledger.records import (
    MAX_NESTING,
    RejectedRecord,
    RowError,
    SourceFormatError,
    nests_too_deep,
    require_nesting,
)
from pricing.money import parse_decimal, quantize

__all__ = [
    "INVOICE_FORMATS",
    "MAX_NESTING",
    "PARSERS",
    "InvoiceHeader",
    "ParsedInvoiceLine",
    "SourceFormatError",
    "parse_anthropic_costs",
    "parse_focus",
    "parse_invoice_csv",
    "parse_openai_costs",
]

MONEY_QUANTUM = Decimal(1).scaleb(-INVOICE_MONEY_DECIMAL_PLACES)
QUANTITY_QUANTUM = Decimal(1).scaleb(-INVOICE_QUANTITY_DECIMAL_PLACES)
# One integer digit short of the columns: SQLite reads a decimal column back
# through a float, which rounds the largest values up past the column's digits
# (and Django then fails to read the row at all).
MONEY_LIMIT = Decimal(10) ** (INVOICE_MONEY_MAX_DIGITS - INVOICE_MONEY_DECIMAL_PLACES - 1)
QUANTITY_LIMIT = Decimal(10) ** (INVOICE_QUANTITY_MAX_DIGITS - INVOICE_QUANTITY_DECIMAL_PLACES - 1)
# Charge and billing times a line may hold: before 1900 is a broken source, not a
# charge; from December 9999 the month after (a default billing period) does not exist.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 1, tzinfo=UTC)
# How deep a JSON result may nest. Cost results are flat; deeper ones are rejected
# before anything walks them, so no reading or showing of a result can overflow the stack.
# Python refuses to make an int of more digits than this (4300); longer JSON
# integers are read as Decimal, and rejected where a field cannot hold them.
_INT_DIGITS = 4000
_UNIX_LIMIT = 10**12  # seconds: beyond the year 9999 either way
_CATEGORIES = ", ".join(label for _, label in ChargeCategory.choices)
_MAX_LENGTHS: dict[str, int] = {
    f.name: f.max_length for f in InvoiceLine._meta.concrete_fields if getattr(f, "max_length", None)
}


@dataclass(frozen=True, slots=True)
class InvoiceHeader:
    """The invoice a line belongs to, as its source states or implies it."""

    invoice_id: str
    billing_period_start: datetime
    billing_period_end: datetime
    currency: str
    issuer: str = ""
    billing_account: str = ""


@dataclass(slots=True)
class ParsedInvoiceLine:
    line: int
    header: InvoiceHeader
    fields: dict
    # The source row's whole content (as the file spells it): the new line's own
    # key is derived from it. Whether the line is new, a duplicate or a
    # restatement goes by its canonical values instead (see `ingest`).
    identity: str


Parser = Callable[..., Iterator[ParsedInvoiceLine | RejectedRecord]]


# -- values -------------------------------------------------------------------------------------------------------


def _shown(value: object) -> str:
    """A value as a rejection reason shows it: short, and never walking a nested or huge value."""
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:60] + "...")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int | Decimal):
        text = str(value) if not isinstance(value, int) or value.bit_length() < 1000 else ""
        return text if text and len(text) <= 60 else "a number of more than 60 digits"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _decimal(value: object, field: str) -> Decimal:
    """A Decimal from text in ASCII digits or a JSON number, never through float."""
    if isinstance(value, str):
        # Decimal() reads any Unicode digit ('١٢' is 12): a source spelling a
        # figure so is broken, not a figure.
        if not value.isascii():
            raise RowError(field, f"not a number: {_shown(value)} (digits must be 0-9)")
    elif isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise RowError(field, f"not a number: {_shown(value)}")
    try:
        return parse_decimal(value)
    except ValueError as exc:  # its message shows the whole value: keep the reason only
        raise RowError(field, f"{str(exc).split(':')[0]}: {_shown(value)}") from None


def _bounded(number: Decimal, *, field: str, value: object, quantum: Decimal, limit: Decimal, what: str) -> Decimal:
    """`number` rounded to the column's places, if the column (on both databases) holds it.

    Compared before any arithmetic (a huge exponent would overflow it), rounded in
    a context wide enough for every digit the column has, compared again (rounding
    may carry up to the limit); a negative zero is zero, so it reads and compares as 0.
    """
    if number.copy_abs() < limit:
        with localcontext() as context:
            context.prec = 60
            rounded = quantize(number, quantum)
        if rounded.copy_abs() < limit:
            return rounded if rounded else rounded.copy_abs()
    digits = len(str(int(limit))) - 1
    raise RowError(field, f"{what} too large: {_shown(value)} (at most {digits} digits before the point)")


def _money(value: object, field: str, *, required: bool = True, cents: bool = False) -> Decimal | None:
    """A Decimal amount (never through float); `cents` divides by 100 exactly."""
    if value is None or value == "":
        if required:
            raise RowError(field, "missing")
        return None
    amount = _decimal(value, field)
    if cents and amount.copy_abs() < MONEY_LIMIT * 100:
        amount = amount.scaleb(-2)  # exact: moves the decimal point, no rounding
    return _bounded(amount, field=field, value=value, quantum=MONEY_QUANTUM, limit=MONEY_LIMIT, what="amount")


def _quantity(value: object, field: str, *, billed_cost: Decimal) -> Decimal | None:
    if value is None or value == "":
        return None
    quantity = _decimal(value, field)
    if quantity < 0 and billed_cost >= 0:
        raise RowError(
            field, f"negative quantity: {_shown(value)} (only a reversal, with a negative cost, may have one)"
        )
    return _bounded(quantity, field=field, value=value, quantum=QUANTITY_QUANTUM, limit=QUANTITY_LIMIT, what="quantity")


def _category(value: object, field: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else ""
    if not text:
        raise RowError(field, "missing" if value is None or isinstance(value, str) else f"not text: {_shown(value)}")
    if text not in ChargeCategory.values:
        raise RowError(field, f"unknown charge category {_shown(value)}; expected one of {_CATEGORIES}")
    return text


def _currency(value: object, field: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise RowError(field, "missing" if value is None or isinstance(value, str) else f"not text: {_shown(value)}")
    if len(text) != 3 or not text.isascii() or not text.isalpha():
        raise RowError(field, f"not an ISO 4217 currency code: {_shown(value)}")
    return text.upper()


def _text(value: object, field: str, column: str | None = None) -> str:
    """Text a column can hold on both databases: no NUL (PostgreSQL refuses it), no lone
    surrogate (a JSON escape such as "\\ud800", which no database can encode), within its length."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        text = str(value)  # an id sent as a JSON number (ints read are at most _INT_DIGITS long)
    else:
        raise RowError(field, f"not text: {_shown(value)}")
    if "\x00" in text:
        raise RowError(field, "holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RowError(field, "not valid Unicode (a lone surrogate)") from None
    limit = _MAX_LENGTHS.get(column) if column else None
    if limit is not None and len(text) > limit:
        raise RowError(field, f"longer than {limit} characters")
    return text


def _out_of_range(field: str, value: object) -> RowError:
    return RowError(field, f"{_shown(value)} is out of range (from {EARLIEST:%Y-%m-%d}, before {LATEST:%Y-%m-%d})")


def _in_range(moment: datetime, field: str, value: object) -> datetime:
    if not EARLIEST <= moment < LATEST:
        raise _out_of_range(field, value)
    return moment


def _unix_seconds(value: object, field: str) -> int:
    """Whole Unix seconds, as OpenAI states its bucket times (a JSON number, or ASCII digits)."""
    if value is None:
        raise RowError(field, "missing")
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():  # False for inf and NaN
        number = int(value)
    elif isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        number = int(value) if value.copy_abs() < _UNIX_LIMIT else _UNIX_LIMIT
    elif isinstance(value, str) and value.strip().lstrip("-").isascii() and value.strip().lstrip("-").isdigit():
        number = int(value.strip()) if len(value.strip()) < 16 else _UNIX_LIMIT
    if number is None:
        raise RowError(field, f"not a whole number: {_shown(value)}")
    if number < 0:
        raise RowError(field, f"negative: {_shown(value)}")
    return number


def _from_unix(seconds: int | float | Decimal, field: str, value: object) -> datetime:
    moment = None
    if abs(seconds) < _UNIX_LIMIT:
        try:
            moment = datetime.fromtimestamp(float(seconds), tz=UTC)
        except (OverflowError, OSError, ValueError):
            moment = None
    if moment is None:
        raise _out_of_range(field, value)
    return _in_range(moment, field, value)


def _moment(value: object, field: str) -> datetime:
    """An aware UTC datetime from ISO 8601 text (naive is UTC) or Unix seconds, within range."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise RowError(field, "missing")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise RowError(field, f"not an ISO 8601 time: {_shown(value)}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            moment = parsed.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:00-05:00 is in the year 10000 in UTC
            raise _out_of_range(field, value) from None
        return _in_range(moment, field, value)
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        if value != value:  # NaN
            raise RowError(field, f"not a time: {_shown(value)}")
        return _from_unix(value, field, value)
    if value is None:
        raise RowError(field, "missing")
    raise RowError(field, f"not a time: {_shown(value)}")


def _period(start: datetime, end: datetime, end_field: str, *, strict: bool) -> None:
    if end < start or (strict and end == start):
        raise RowError(end_field, f"{end.isoformat()} is not after the start {start.isoformat()}")


def _month(moment: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) holding a moment: the default billing period."""
    start = moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def _raw(value: object) -> str:
    """A rejected record as the rejection keeps it: JSON, ASCII (so NUL and surrogates are escaped)."""
    if isinstance(value, dict | list) and nests_too_deep(value):
        return "(not shown: nested too deeply)"
    if isinstance(value, dict) and None in value:  # a CSV row's fields beyond the header
        value = {("(more fields)" if k is None else k): v for k, v in value.items()}
    try:
        return json.dumps(value, sort_keys=True, default=str)[:2000]
    except (TypeError, ValueError, RecursionError):
        return "(not shown)"


# -- parsers ------------------------------------------------------------------------------------------------------

FOCUS_REQUIRED = (
    "BilledCost",
    "EffectiveCost",
    "ChargeCategory",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "BillingCurrency",
)
_FOCUS_WHAT = "a FOCUS 1.0 to 1.2 cost and usage CSV"


def _csv_rows(
    stream: TextIO, *, what: str, required: tuple[str, ...], known: frozenset[str] | None = None
) -> Iterator[tuple[int, dict] | RejectedRecord]:
    """(line, row) pairs of a CSV, or a rejection for a row the csv module cannot read;
    refused whole when its header is not `what`'s."""
    reader = csv.DictReader(stream)
    try:
        columns = reader.fieldnames
    except csv.Error as exc:
        raise SourceFormatError(f"not CSV ({exc}): expected {what}") from None
    if not columns:
        raise SourceFormatError(f"empty file: expected {what}")
    missing = [c for c in required if c not in columns]
    if missing:
        raise SourceFormatError(f"missing required column(s) {', '.join(missing)}: expected {what}")
    if known is not None:
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise SourceFormatError(f"unknown column(s) {', '.join(unknown)}: expected {what}")
    failed_at = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The reader goes on at the next line (a field over csv's size limit
            # costs its row); the same line failing twice would never end.
            line = reader.reader.line_num  # DictReader's own count stops before a failed row
            if line == failed_at:
                raise SourceFormatError(f"line {line}: not CSV ({exc}): expected {what}") from None
            failed_at = line
            yield RejectedRecord(line, "(row)", f"not readable as CSV: {exc}", "")
            continue
        yield reader.line_num, row


def _row_problem(row: dict) -> str | None:
    if None in row:
        return "more fields than the header has columns"
    if any(v is None for v in row.values()):
        return "fewer fields than the header has columns"
    return None


def parse_focus(stream: TextIO, *, provider: str) -> Iterator[ParsedInvoiceLine | RejectedRecord]:
    for item in _csv_rows(stream, what=_FOCUS_WHAT, required=FOCUS_REQUIRED):
        if isinstance(item, RejectedRecord):
            yield item
            continue
        line, row = item
        try:
            if problem := _row_problem(row):
                raise RowError("(row)", problem)
            v = {k: ("" if value.strip() == "NULL" else value.strip()) for k, value in row.items()}
            billed = _money(v["BilledCost"], "BilledCost")
            quantity_column, unit_column = (
                ("ConsumedQuantity", "ConsumedUnit")
                if v.get("ConsumedQuantity")
                else ("PricingQuantity", "PricingUnit")
            )
            fields = {
                "billed_cost": billed,
                "effective_cost": _money(v["EffectiveCost"], "EffectiveCost"),
                "list_cost": _money(v.get("ListCost"), "ListCost", required=False),
                "charge_category": _category(v["ChargeCategory"], "ChargeCategory"),
                "quantity": _quantity(v.get(quantity_column), quantity_column, billed_cost=billed),
                "unit": _text(v.get(unit_column), unit_column, "unit"),
                "sku": _text(v.get("SkuId"), "SkuId", "sku"),
                "description": _text(v.get("ChargeDescription"), "ChargeDescription"),
                "charge_period_start": _moment(v["ChargePeriodStart"], "ChargePeriodStart"),
                "charge_period_end": _moment(v["ChargePeriodEnd"], "ChargePeriodEnd"),
                "project": _text(v.get("SubAccountId"), "SubAccountId", "project"),
            }
            _period(fields["charge_period_start"], fields["charge_period_end"], "ChargePeriodEnd", strict=False)
            billing_start = _moment(v["BillingPeriodStart"], "BillingPeriodStart")
            billing_end = _moment(v["BillingPeriodEnd"], "BillingPeriodEnd")
            _period(billing_start, billing_end, "BillingPeriodEnd", strict=True)
            account = _text(v.get("BillingAccountId"), "BillingAccountId")
            invoice_id = v.get("InvoiceId") or f"{provider}:{account or '-'}:{billing_start:%Y-%m}"
            header = InvoiceHeader(
                invoice_id=_text(invoice_id, "InvoiceId", "invoice_id"),
                billing_period_start=billing_start,
                billing_period_end=billing_end,
                currency=_currency(v["BillingCurrency"], "BillingCurrency"),
                issuer=_text(v.get("ProviderName"), "ProviderName")[:255],
                billing_account=account[:255],
            )
        except RowError as exc:
            yield RejectedRecord(line, exc.field, exc.reason, _raw(row))
            continue
        yield ParsedInvoiceLine(line, header, fields, json.dumps(row, sort_keys=True))


_OPENAI_WHAT = "OpenAI costs API pages ({'object': 'page', 'data': [buckets with start_time, end_time, results]})"
_ANTHROPIC_WHAT = "Anthropic cost report pages ({'data': [buckets with starting_at, ending_at, results]})"


def _json_int(text: str) -> int | Decimal:
    return int(text) if len(text) <= _INT_DIGITS else Decimal(text)


def _json_documents(stream: TextIO, *, what: str) -> list[object]:
    """The documents of a file holding one JSON value (a list gives its items) or JSON
    lines, one document a line. Not JSON, or nested too deeply to read: refused whole."""
    text = stream.read()
    if not text.strip():
        raise SourceFormatError(f"empty file: expected {what}")
    try:
        document = json.loads(text, parse_int=_json_int)
    except RecursionError:
        raise SourceFormatError(f"nested too deeply to read: expected {what}") from None
    except json.JSONDecodeError as whole_error:
        documents = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                documents.append(json.loads(line, parse_int=_json_int))
            except RecursionError:
                raise SourceFormatError(f"line {n}: nested too deeply to read: expected {what}") from None
            except json.JSONDecodeError:
                where = f"line {whole_error.lineno}, column {whole_error.colno}"
                raise SourceFormatError(f"not JSON ({where}: {whole_error.msg}): expected {what}") from None
        return documents
    return document if isinstance(document, list) else [document]


def _buckets(
    stream: TextIO, *, what: str, time_key: str, other_time_key: str, other_format: str
) -> list[tuple[str, dict]]:
    """The (path, bucket) of every time bucket of provider cost report pages."""
    pages = ((1, page) for page in _json_documents(stream, what=what))
    return page_buckets(  # our reader refuses a bad page whole: it yields no UnreadableLine
        pages, what=what, time_key=time_key, other_time_key=other_time_key, other_format=other_format
    )


def _monthly_header(provider: str, start: datetime, currency: str) -> InvoiceHeader:
    month_start, month_end = _month(start)
    return InvoiceHeader(
        invoice_id=f"{provider}:{month_start:%Y-%m}",
        billing_period_start=month_start,
        billing_period_end=month_end,
        currency=currency,
    )


def _bucket_results(buckets: list[tuple[str, dict]]) -> Iterator[tuple[int, str, dict, object]]:
    record = 0
    for where, bucket in buckets:
        for i, result in enumerate(bucket["results"]):
            record += 1
            yield record, f"{where}.results[{i}]", bucket, result


def _flat_object(result: object, path: str) -> dict:
    if not isinstance(result, dict):
        raise RowError(path, f"not an object: {_shown(result)}")
    require_nesting(result, path)
    return result


def parse_openai_costs(stream: TextIO, *, provider: str) -> Iterator[ParsedInvoiceLine | RejectedRecord]:
    buckets = _buckets(
        stream, what=_OPENAI_WHAT, time_key="start_time", other_time_key="starting_at", other_format="anthropic-costs"
    )
    results = list(_bucket_results(buckets))
    for *_, result in results:
        kind = result.get("object") if isinstance(result, dict) else None
        if isinstance(kind, str) and kind.startswith("organization.usage."):
            raise SourceFormatError(
                f"its results are {kind!r}, usage rather than costs (ingest it with ingest_usage --format "
                f"openai-usage): expected {_OPENAI_WHAT}"
            )
    for record, path, bucket, result in results:
        try:
            _flat_object(result, path)
            start = _unix_seconds(bucket.get("start_time"), f"{path[: path.index('.')]}.start_time")
            end_value = bucket.get("end_time")
            end_field = f"{path[: path.index('.')]}.end_time"
            end = _unix_seconds(end_value, end_field) if end_value is not None else start + 86400
            amount = result.get("amount")
            if not isinstance(amount, dict):
                raise RowError(f"{path}.amount", "missing" if amount is None else f"not an object: {_shown(amount)}")
            billed = _money(amount.get("value"), f"{path}.amount.value")
            charge_start = _from_unix(start, f"{path[: path.index('.')]}.start_time", bucket.get("start_time"))
            charge_end = _from_unix(end, end_field, end_value if end_value is not None else end)
            _period(charge_start, charge_end, end_field, strict=False)
            line_item = _text(result.get("line_item"), f"{path}.line_item", "sku")
            fields = {
                "billed_cost": billed,
                "effective_cost": billed,
                "list_cost": None,
                "charge_category": ChargeCategory.USAGE,
                "quantity": _quantity(result.get("quantity"), f"{path}.quantity", billed_cost=billed),
                "unit": _text(result.get("quantity_unit"), f"{path}.quantity_unit", "unit"),
                "sku": line_item,
                "description": line_item,
                "charge_period_start": charge_start,
                "charge_period_end": charge_end,
                "project": _text(result.get("project_id"), f"{path}.project_id", "project"),
            }
            header = _monthly_header(
                provider, charge_start, _currency(amount.get("currency"), f"{path}.amount.currency")
            )
        except RowError as exc:
            yield RejectedRecord(record, exc.field, exc.reason, _raw(result))
            continue
        identity = json.dumps({"start": start, "end": end, "result": result}, sort_keys=True, default=str)
        yield ParsedInvoiceLine(record, header, fields, identity)


def parse_anthropic_costs(stream: TextIO, *, provider: str) -> Iterator[ParsedInvoiceLine | RejectedRecord]:
    buckets = _buckets(
        stream, what=_ANTHROPIC_WHAT, time_key="starting_at", other_time_key="start_time", other_format="openai-costs"
    )
    results = list(_bucket_results(buckets))
    for *_, result in results:
        if isinstance(result, dict) and "amount" not in result and "uncached_input_tokens" in result:
            raise SourceFormatError(
                "its results count tokens, a usage report rather than a cost report (ingest it with ingest_usage "
                f"--format anthropic-usage): expected {_ANTHROPIC_WHAT}"
            )
    for record, path, bucket, result in results:
        try:
            _flat_object(result, path)
            # Cents, as a decimal string: "123.78912" is $1.2378912.
            billed = _money(result.get("amount"), f"{path}.amount", cents=True)
            where = path[: path.index(".")]
            charge_start = _moment(bucket.get("starting_at"), f"{where}.starting_at")
            charge_end = _moment(bucket.get("ending_at"), f"{where}.ending_at")
            _period(charge_start, charge_end, f"{where}.ending_at", strict=False)
            parts = (_text(result.get(k), f"{path}.{k}") for k in ("cost_type", "token_type", "context_window"))
            fields = {
                "billed_cost": billed,
                "effective_cost": billed,
                "list_cost": None,
                "charge_category": ChargeCategory.USAGE,
                "quantity": None,
                "unit": "",
                "sku": _text("/".join(p for p in parts if p), f"{path}.token_type", "sku"),
                "description": _text(result.get("description"), f"{path}.description"),
                "charge_period_start": charge_start,
                "charge_period_end": charge_end,
                "model": _text(result.get("model"), f"{path}.model", "model"),
                "service_tier": _text(result.get("service_tier"), f"{path}.service_tier", "service_tier"),
                "project": _text(result.get("workspace_id"), f"{path}.workspace_id", "project"),
            }
            header = _monthly_header(provider, charge_start, _currency(result.get("currency"), f"{path}.currency"))
        except RowError as exc:
            yield RejectedRecord(record, exc.field, exc.reason, _raw(result))
            continue
        identity = json.dumps({"start": bucket["starting_at"], "result": result}, sort_keys=True, default=str)
        yield ParsedInvoiceLine(record, header, fields, identity)


CSV_REQUIRED = ("invoice_id", "charge_period_start", "charge_period_end", "charge_category", "billed_cost", "currency")
CSV_COLUMNS = frozenset(
    (
        *CSV_REQUIRED,
        "provider",
        "billing_period_start",
        "billing_period_end",
        "effective_cost",
        "list_cost",
        "sku",
        "description",
        "unit",
        "quantity",
        "model",
        "service_tier",
        "project",
    )
)
_CSV_WHAT = "our invoice CSV (see allocation/services/invoices/parsers.py)"


def parse_invoice_csv(stream: TextIO, *, provider: str) -> Iterator[ParsedInvoiceLine | RejectedRecord]:
    for item in _csv_rows(stream, what=_CSV_WHAT, required=CSV_REQUIRED, known=CSV_COLUMNS):
        if isinstance(item, RejectedRecord):
            yield item
            continue
        line, row = item
        try:
            if problem := _row_problem(row):
                raise RowError("(row)", problem)
            v = {k: value.strip() for k, value in row.items()}
            if v.get("provider") and v["provider"].lower() != provider.lower():
                raise RowError("provider", f"{_shown(v['provider'])}, but the file is ingested for {provider!r}")
            if not v["invoice_id"]:
                raise RowError("invoice_id", "missing")
            billed = _money(v["billed_cost"], "billed_cost")
            effective = _money(v.get("effective_cost"), "effective_cost", required=False)
            fields = {
                "billed_cost": billed,
                "effective_cost": billed if effective is None else effective,
                "list_cost": _money(v.get("list_cost"), "list_cost", required=False),
                "charge_category": _category(v["charge_category"], "charge_category"),
                "quantity": _quantity(v.get("quantity"), "quantity", billed_cost=billed),
                "unit": _text(v.get("unit"), "unit", "unit"),
                "sku": _text(v.get("sku"), "sku", "sku"),
                "description": _text(v.get("description"), "description"),
                "charge_period_start": _moment(v["charge_period_start"], "charge_period_start"),
                "charge_period_end": _moment(v["charge_period_end"], "charge_period_end"),
                "model": _text(v.get("model"), "model", "model"),
                "service_tier": _text(v.get("service_tier"), "service_tier", "service_tier"),
                "project": _text(v.get("project"), "project", "project"),
            }
            _period(fields["charge_period_start"], fields["charge_period_end"], "charge_period_end", strict=False)
            if v.get("billing_period_start") or v.get("billing_period_end"):
                billing_start = _moment(v.get("billing_period_start"), "billing_period_start")
                billing_end = _moment(v.get("billing_period_end"), "billing_period_end")
                _period(billing_start, billing_end, "billing_period_end", strict=True)
            else:
                billing_start, billing_end = _month(fields["charge_period_start"])
            header = InvoiceHeader(
                invoice_id=_text(v["invoice_id"], "invoice_id", "invoice_id"),
                billing_period_start=billing_start,
                billing_period_end=billing_end,
                currency=_currency(v["currency"], "currency"),
            )
        except RowError as exc:
            yield RejectedRecord(line, exc.field, exc.reason, _raw(row))
            continue
        yield ParsedInvoiceLine(line, header, fields, json.dumps(row, sort_keys=True))


PARSERS: dict[str, Parser] = {
    InvoiceSourceFormat.FOCUS: parse_focus,
    InvoiceSourceFormat.OPENAI_COSTS: parse_openai_costs,
    InvoiceSourceFormat.ANTHROPIC_COSTS: parse_anthropic_costs,
    InvoiceSourceFormat.CSV: parse_invoice_csv,
}
INVOICE_FORMATS: tuple[str, ...] = tuple(PARSERS)
