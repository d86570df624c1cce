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
line read; a file not in its format raises `SourceFormatError`. A negative
quantity is accepted only as a reversal (a negative billed cost, as Azure
states refunds in FOCUS) and rejected otherwise.
"""

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TextIO

from allocation.choices import ChargeCategory, InvoiceSourceFormat
from allocation.models.invoices import (
    INVOICE_MONEY_DECIMAL_PLACES,
    INVOICE_MONEY_MAX_DIGITS,
    INVOICE_QUANTITY_DECIMAL_PLACES,
    INVOICE_QUANTITY_MAX_DIGITS,
    InvoiceLine,
)
from allocation.services.ledger.parsers.json_documents import usage_buckets, whole_number
from allocation.services.ledger.records import RejectedRecord, RowError, SourceFormatError, parse_occurred_at
from pricing.money import parse_decimal, quantize

__all__ = [
    "INVOICE_FORMATS",
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
MONEY_LIMIT = Decimal(10) ** (INVOICE_MONEY_MAX_DIGITS - INVOICE_MONEY_DECIMAL_PLACES)
QUANTITY_QUANTUM = Decimal(1).scaleb(-INVOICE_QUANTITY_DECIMAL_PLACES)
QUANTITY_LIMIT = Decimal(10) ** (INVOICE_QUANTITY_MAX_DIGITS - INVOICE_QUANTITY_DECIMAL_PLACES)
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
    identity: str  # the line's full content, canonical: what its key is derived from


Parser = Callable[..., Iterator[ParsedInvoiceLine | RejectedRecord]]


# -- values -------------------------------------------------------------------------------------------------------


def _money(value: object, field: str, *, required: bool = True, cents: bool = False) -> Decimal | None:
    """A Decimal amount (never through float); `cents` divides by 100 exactly."""
    if value is None or value == "":
        if required:
            raise RowError(field, "missing")
        return None
    try:
        amount = parse_decimal(value)
    except ValueError as exc:
        raise RowError(field, str(exc)) from None
    if cents:
        amount = amount.scaleb(-2)  # exact: moves the decimal point, no rounding
    if abs(amount) >= MONEY_LIMIT:
        raise RowError(field, f"amount too large: {value}")
    return quantize(amount, MONEY_QUANTUM)


def _quantity(value: object, field: str, *, billed_cost: Decimal) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        quantity = parse_decimal(value)
    except ValueError as exc:
        raise RowError(field, str(exc)) from None
    if quantity < 0 and billed_cost >= 0:
        raise RowError(field, f"negative quantity: {value} (only a reversal, with a negative cost, may have one)")
    if abs(quantity) >= QUANTITY_LIMIT:
        raise RowError(field, f"quantity too large: {value}")
    return quantize(quantity, QUANTITY_QUANTUM)


def _category(value: object, field: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else ""
    if not text:
        raise RowError(field, "missing")
    if text not in ChargeCategory.values:
        raise RowError(field, f"unknown charge category {value!r}; expected one of {_CATEGORIES}")
    return text


def _currency(value: object, field: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise RowError(field, "missing")
    if len(text) != 3 or not text.isascii() or not text.isalpha():
        raise RowError(field, f"not an ISO 4217 currency code: {value!r}")
    return text.upper()


def _text(value: object, field: str, column: str) -> str:
    text = "" if value is None else str(value).strip()
    limit = _MAX_LENGTHS.get(column)
    if limit is not None and len(text) > limit:
        raise RowError(field, f"longer than {limit} characters")
    return text


def _period(start: datetime, end: datetime, end_field: str, *, strict: bool) -> None:
    if end < start or (strict and end == start):
        raise RowError(end_field, f"{end.isoformat()} is not after the start {start.isoformat()}")


def _month(moment: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) holding a moment: the default billing period."""
    start = moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


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


def _csv_rows(stream: TextIO, *, what: str, required: tuple[str, ...], known: frozenset[str] | None = None):
    """(line, row) pairs of a CSV; refused whole when its header is not `what`'s."""
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
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as exc:
        raise SourceFormatError(f"line {reader.line_num}: not CSV ({exc}): expected {what}") from None


def _row_problem(row: dict) -> str | None:
    if None in row:
        return "more fields than the header has columns"
    if any(v is None for v in row.values()):
        return "fewer fields than the header has columns"
    return None


def parse_focus(stream: TextIO, *, provider: str) -> Iterator[ParsedInvoiceLine | RejectedRecord]:
    for line, row in _csv_rows(stream, what=_FOCUS_WHAT, required=FOCUS_REQUIRED):
        raw = json.dumps(row, sort_keys=True, default=str)[:2000]
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
                "description": v.get("ChargeDescription", ""),
                "charge_period_start": parse_occurred_at(v["ChargePeriodStart"], "ChargePeriodStart"),
                "charge_period_end": parse_occurred_at(v["ChargePeriodEnd"], "ChargePeriodEnd"),
                "project": _text(v.get("SubAccountId"), "SubAccountId", "project"),
            }
            _period(fields["charge_period_start"], fields["charge_period_end"], "ChargePeriodEnd", strict=False)
            billing_start = parse_occurred_at(v["BillingPeriodStart"], "BillingPeriodStart")
            billing_end = parse_occurred_at(v["BillingPeriodEnd"], "BillingPeriodEnd")
            _period(billing_start, billing_end, "BillingPeriodEnd", strict=True)
            account = v.get("BillingAccountId", "")
            invoice_id = v.get("InvoiceId") or f"{provider}:{account or '-'}:{billing_start:%Y-%m}"
            header = InvoiceHeader(
                invoice_id=_text(invoice_id, "InvoiceId", "invoice_id"),
                billing_period_start=billing_start,
                billing_period_end=billing_end,
                currency=_currency(v["BillingCurrency"], "BillingCurrency"),
                issuer=v.get("ProviderName", "")[:255],
                billing_account=account[:255],
            )
        except RowError as exc:
            yield RejectedRecord(line, exc.field, exc.reason, raw)
            continue
        yield ParsedInvoiceLine(line, header, fields, json.dumps(row, sort_keys=True))


_OPENAI_WHAT = "OpenAI costs API pages ({'object': 'page', 'data': [buckets with start_time, end_time, results]})"
_ANTHROPIC_WHAT = "Anthropic cost report pages ({'data': [buckets with starting_at, ending_at, results]})"


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


def parse_openai_costs(stream: TextIO, *, provider: str) -> Iterator[ParsedInvoiceLine | RejectedRecord]:
    buckets = usage_buckets(
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
        raw = json.dumps(result, sort_keys=True)[:2000]
        try:
            if not isinstance(result, dict):
                raise RowError("(result)", "not an object")
            start = whole_number(bucket.get("start_time"), f"{path}.start_time")
            end = whole_number(bucket["end_time"], "end_time") if bucket.get("end_time") is not None else start + 86400
            amount = result.get("amount")
            if not isinstance(amount, dict):
                raise RowError(f"{path}.amount", "missing")
            billed = _money(amount.get("value"), f"{path}.amount.value")
            charge_start = datetime.fromtimestamp(start, tz=UTC)
            charge_end = datetime.fromtimestamp(end, tz=UTC)
            _period(charge_start, charge_end, f"{path}.end_time", strict=False)
            fields = {
                "billed_cost": billed,
                "effective_cost": billed,
                "list_cost": None,
                "charge_category": ChargeCategory.USAGE,
                "quantity": _quantity(result.get("quantity"), f"{path}.quantity", billed_cost=billed),
                "unit": _text(result.get("quantity_unit"), f"{path}.quantity_unit", "unit"),
                "sku": _text(result.get("line_item"), f"{path}.line_item", "sku"),
                "description": str(result.get("line_item") or ""),
                "charge_period_start": charge_start,
                "charge_period_end": charge_end,
                "project": _text(result.get("project_id"), f"{path}.project_id", "project"),
            }
            header = _monthly_header(
                provider, charge_start, _currency(amount.get("currency"), f"{path}.amount.currency")
            )
        except RowError as exc:
            yield RejectedRecord(record, exc.field, exc.reason, raw)
            continue
        identity = json.dumps({"start": start, "end": end, "result": result}, sort_keys=True)
        yield ParsedInvoiceLine(record, header, fields, identity)


def parse_anthropic_costs(stream: TextIO, *, provider: str) -> Iterator[ParsedInvoiceLine | RejectedRecord]:
    buckets = usage_buckets(
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
        raw = json.dumps(result, sort_keys=True)[:2000]
        try:
            if not isinstance(result, dict):
                raise RowError("(result)", "not an object")
            # Cents, as a decimal string: "123.78912" is $1.2378912.
            billed = _money(result.get("amount"), f"{path}.amount", cents=True)
            charge_start = parse_occurred_at(bucket.get("starting_at"), "starting_at")
            charge_end = parse_occurred_at(bucket.get("ending_at"), "ending_at")
            _period(charge_start, charge_end, "ending_at", strict=False)
            parts = (result.get(k) for k in ("cost_type", "token_type", "context_window"))
            fields = {
                "billed_cost": billed,
                "effective_cost": billed,
                "list_cost": None,
                "charge_category": ChargeCategory.USAGE,
                "quantity": None,
                "unit": "",
                "sku": _text("/".join(str(p) for p in parts if p), f"{path}.token_type", "sku"),
                "description": str(result.get("description") or ""),
                "charge_period_start": charge_start,
                "charge_period_end": charge_end,
                "model": _text(result.get("model"), f"{path}.model", "model"),
                "service_tier": _text(result.get("service_tier"), f"{path}.service_tier", "service_tier"),
                "project": _text(result.get("workspace_id"), f"{path}.workspace_id", "project"),
            }
            header = _monthly_header(provider, charge_start, _currency(result.get("currency"), f"{path}.currency"))
        except RowError as exc:
            yield RejectedRecord(record, exc.field, exc.reason, raw)
            continue
        identity = json.dumps({"start": bucket["starting_at"], "result": result}, sort_keys=True)
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
    for line, row in _csv_rows(stream, what=_CSV_WHAT, required=CSV_REQUIRED, known=CSV_COLUMNS):
        raw = json.dumps(row, sort_keys=True, default=str)[:2000]
        try:
            if problem := _row_problem(row):
                raise RowError("(row)", problem)
            v = {k: value.strip() for k, value in row.items()}
            if v.get("provider") and v["provider"].lower() != provider.lower():
                raise RowError("provider", f"{v['provider']!r}, but the file is ingested for {provider!r}")
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
                "description": v.get("description", ""),
                "charge_period_start": parse_occurred_at(v["charge_period_start"], "charge_period_start"),
                "charge_period_end": parse_occurred_at(v["charge_period_end"], "charge_period_end"),
                "model": _text(v.get("model"), "model", "model"),
                "service_tier": _text(v.get("service_tier"), "service_tier", "service_tier"),
                "project": _text(v.get("project"), "project", "project"),
            }
            _period(fields["charge_period_start"], fields["charge_period_end"], "charge_period_end", strict=False)
            if v.get("billing_period_start") or v.get("billing_period_end"):
                billing_start = parse_occurred_at(v.get("billing_period_start"), "billing_period_start")
                billing_end = parse_occurred_at(v.get("billing_period_end"), "billing_period_end")
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
            yield RejectedRecord(line, exc.field, exc.reason, raw)
            continue
        yield ParsedInvoiceLine(line, header, fields, json.dumps(row, sort_keys=True))


PARSERS: dict[str, Parser] = {
    InvoiceSourceFormat.FOCUS: parse_focus,
    InvoiceSourceFormat.OPENAI_COSTS: parse_openai_costs,
    InvoiceSourceFormat.ANTHROPIC_COSTS: parse_anthropic_costs,
    InvoiceSourceFormat.CSV: parse_invoice_csv,
}
INVOICE_FORMATS: tuple[str, ...] = tuple(PARSERS)


# -- the service --------------------------------------------------------------------------------------------------
