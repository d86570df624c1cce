"""Allocated cost as a FOCUS 1.2 cost and usage CSV: the one service behind `export_focus`.

One row per allocation line of the period's current run whose amount or
quantity is not zero (two for a share of a purchase, below), then one per line of
the corrections booked in the period (below), streamed from the database. The
columns:

* the 21 columns FOCUS 1.2 requires of every dataset, and the conditional or
  recommended ones we can fill truthfully: ChargeFrequency, ConsumedQuantity,
  ConsumedUnit, InvoiceId, ServiceSubcategory, SkuId, SkuMeter, Tags;
* the allocation in `x_` columns (FOCUS ColumnHandling: custom columns carry
  the `x_` prefix and come after the FOCUS columns).

Money. BilledCost = EffectiveCost = ListCost = ContractedCost = the line's
allocated amount, in the invoice currency. The run splits each invoice's
effective (amortized) cost, so the file sums to the run's invoice total; for
an invoice with a prepayment (billed now, effective later) BilledCost is the
amortized share, not the cash billed. A share of a purchase (a platform fee)
is two rows, as FOCUS shows a purchase and its use: the Purchase row bills it
with EffectiveCost 0 (EffectiveCost-C-005-C, which focus-validator asks of
every Purchase row), and a Usage row "..., used this period" carries it as
EffectiveCost with BilledCost, ListCost and ContractedCost 0. Each cost column
still sums to the run's invoice total. We emit no unit price columns, and
FOCUS then asks ListCost and ContractedCost of a charge to match its
BilledCost (ListCost-C-008-C, ContractedCost-C-008-C); no discount is claimed.

Who pays. A chargeback line and a showback line are both rows with their
cost, told apart by `x_Treatment` (showback is reported, never journalled): a
consumer that wants only what is charged filters `x_Treatment = chargeback`.
The unallocated bucket is rows with `x_CostCenter` null and
`x_UnallocatedReason` saying why; `x_AllocationMethod` is `unallocated`. An
internal fixed-fee transfer is two rows that net to zero (payer +fee, service
owner -fee), with the service owner as ProviderName.

Invoices. Every row names one (InvoiceId-C-005-C as focus-validator reads it):
its line's invoice; for a line with none (usage no price book prices), its
provider's one invoice in the run; for a fixed-fee transfer, the internal one
of the period (`internal:<owner>:<YYYY-MM>`, the chargeback bills it); for
usage no invoice stands for yet, a provisional id, `provisional:<provider>:
<YYYY-MM>` (InvoiceId-C-006-O: it may be generated before the invoice is).

ChargeFrequency. Usage is Usage-Based, a fixed monthly fee Recurring; a
purchase, tax, credit or adjustment One-Time (the invoice says no more).

Quantities. A line with a ledger unit is priced in that unit's FOCUS unit
(`FOCUS_UNITS`: `1000000 Tokens`, `Seconds`, `Images` ...): ConsumedQuantity
is the ledger quantity, PricingQuantity the same over the pricing quantum. A
line without one (a share of a shared-cost pool, a fixed fee) is a lump sum:
PricingQuantity is its share of the pooled charge in `Units` (of a fee, in
`Months`), signed as its cost. Companion lines (margins, rate-card spreads)
carry their unit with quantity 0: their tokens are counted on the paying row.
Tax rows have no quantity, unit or SKU (FOCUS asks them null); Credit and
Adjustment rows neither.

Corrections. A closed period's late data is booked in a later, open period as a
correction run whose lines are differences (FOCUS's Delta style: a decrement for
the cost center that pays less, an increment for the one that pays more); the
export of the period they are booked in carries them after the run's own rows,
as FOCUS's closed-billing-period examples show a correction: ChargeClass
`Correction`, BillingPeriodStart/End the period exported (the one that bills
them), ChargePeriodStart/End the corrected period (when the cost was incurred),
InvoiceId the corrected period's invoice they tie to, x_AllocationRunId the
correction's run, and ChargeDescription beginning "Correction of YYYY-MM: ".
Quantities and costs are signed as the change is. The run's own rows keep
ChargeClass null: a run restates its own period, it never corrects an invoiced one.

Format. Date/times `YYYY-MM-DDTHH:mm:ssZ` in UTC, decimals in plain notation
(no exponent), currency ISO 4217, Tags a JSON object; a null is an empty
field and no non-null value is ever empty. The file is written by the one CSV
writer (`pricing.csv_export`): a text cell that begins with `=`, `+`, `-`,
`@`, a tab or a carriage return (a tag, a model, an invoice id from outside)
gets a leading `'` so a spreadsheet shows it rather than runs it. FOCUS says
nothing against that in x_ columns and free text; in an id column it alters
the id, a price we pay for a file finance opens in a spreadsheet. Costs and
quantities are numbers and never altered, and Tags is a JSON object (it begins
with `{`), so the exact tag values survive there.
"""

import itertools
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from pathlib import Path
from typing import TextIO

from allocation.choices import AllocationMethod, ChargeCategory, UnallocatedReason
from allocation.models import AllocationLine, AllocationRun, CostCenter, ProviderInvoice
from allocation.selectors.runs import allocation_run_current, correction_runs_booked_in
from pricing.csv_export import csv_write
from pricing.errors import NotFound
from pricing.formatting import focus_money, focus_quantity
from pricing.models import Provider, Unit
from pricing.money import QUANTITY_DECIMAL_PLACES, quantize
from pricing.periods import Period

__all__ = [
    "FOCUS_COLUMNS",
    "FOCUS_UNITS",
    "FocusExportResult",
    "FocusUnit",
    "X_COLUMNS",
    "focus_export",
    "focus_export_file",
]


@dataclass(frozen=True)
class FocusUnit:
    """A ledger unit as FOCUS UnitFormat says it: the plural base unit and the pricing quantum."""

    name: str
    quantum: int = 1

    @property
    def pricing(self) -> str:
        """`<unit-quantity> <plural-units>` when priced per block (`1000000 Tokens`), else the unit."""
        return f"{self.quantum} {self.name}" if self.quantum > 1 else self.name


# Ledger unit (pricing.units.UNIT_CATALOG) -> its FOCUS unit. Quanta follow how
# providers publish prices: tokens and characters per million, tool calls and
# requests per thousand. A unit missing here is exported in `Units` (a test
# keeps the table complete).
_TOKENS = FocusUnit("Tokens", 1_000_000)
FOCUS_UNITS: dict[str, FocusUnit] = {
    "input_token": _TOKENS,
    "cached_input_token": _TOKENS,
    "cache_write_token": _TOKENS,
    "cache_write_1h_token": _TOKENS,
    "output_token": _TOKENS,
    "reasoning_token": _TOKENS,
    "audio_input_token": _TOKENS,
    "cached_audio_input_token": _TOKENS,
    "audio_output_token": _TOKENS,
    "image_input_token": _TOKENS,
    "cached_image_input_token": _TOKENS,
    "image_output_token": _TOKENS,
    "embedding_token": _TOKENS,
    "character": FocusUnit("Characters", 1_000_000),
    "audio_input_second": FocusUnit("Seconds"),
    "audio_output_second": FocusUnit("Seconds"),
    "transcription_second": FocusUnit("Seconds"),
    "realtime_second": FocusUnit("Seconds"),
    "gpu_second": FocusUnit("Seconds"),
    "image_tile": FocusUnit("Tiles"),
    "image": FocusUnit("Images"),
    "vector_query": FocusUnit("Queries"),
    "vector_gb_day": FocusUnit("GB-Days"),
    "vector_gb_month": FocusUnit("GB-Months"),
    "gb_month": FocusUnit("GB-Months"),
    "tool_call": FocusUnit("Calls", 1000),
    "container_session": FocusUnit("Sessions"),
    "request": FocusUnit("Requests", 1000),
}
_UNKNOWN_UNIT = FocusUnit("Units")
# Lump sums: a share of a pooled charge, and a fixed monthly fee.
_SHARE_UNIT = "Units"
_FEE_UNIT = "Months"

# FOCUS columns first, alphabetically; then ours (ColumnHandling-A-013-O).
FOCUS_COLUMNS: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "Tags",
)
X_COLUMNS: tuple[str, ...] = (
    "x_CostCenter",
    "x_Team",
    "x_Feature",
    "x_Environment",
    "x_Modality",
    "x_Model",
    "x_AllocationMethod",
    "x_Treatment",
    "x_UnallocatedReason",
    "x_AllocationRunId",
)

# ChargeFrequency's allowed values (ChargeFrequency-C-003-M).
ONE_TIME, RECURRING, USAGE_BASED = "One-Time", "Recurring", "Usage-Based"
SERVICE_CATEGORY = "AI and Machine Learning"
SERVICE_SUBCATEGORY = "Generative AI"
# The price books' default currency (pricing.Price.currency): the currency of
# internal transfers when the run's invoices do not agree on one.
DEFAULT_CURRENCY = "USD"
# The usage tags that are user-defined tags in FOCUS terms (one scheme, so no key prefix: Tags-C-016-C).
TAG_KEYS: tuple[str, ...] = ("team", "feature", "environment")
_QUANTITY_CONTEXT_PRECISION = 60
# A lump sum's share is kept to the ledger's quantity precision.
_SHARE_QUANTUM = Decimal(1).scaleb(-QUANTITY_DECIMAL_PLACES)


@dataclass(frozen=True)
class FocusExportResult:
    run_id: int
    period: str
    rows: int
    # The corrections booked in the period, exported after the run's rows.
    correction_run_ids: tuple[int, ...] = ()


def focus_export(*, period: Period, stream: TextIO) -> FocusExportResult:
    """Write the period's current allocation run to `stream` as FOCUS 1.2 CSV; nothing when refused.

    Raises NotFound when the period has no current run, before anything is written.
    """
    run = allocation_run_current(period=period)
    if run is None:
        raise NotFound(
            f"period {period} has no current allocation run: run `python manage.py run_allocation "
            f"--period {period}` first",
            code="no_current_run",
            extra={"period": str(period)},
        )
    corrections = list(correction_runs_booked_in(period=period))
    rows = csv_write(
        stream,
        itertools.chain(
            _rows(run, period),
            *(_rows(correction, Period.parse(correction.period), booked_in=period) for correction in corrections),
        ),
        header=FOCUS_COLUMNS + X_COLUMNS,
    )
    return FocusExportResult(
        run_id=run.pk,
        period=str(period),
        rows=rows,
        correction_run_ids=tuple(correction.pk for correction in corrections),
    )


def focus_export_file(*, period: Period, path: str | os.PathLike) -> FocusExportResult:
    """`focus_export` into `path`, replaced whole only when the export succeeds."""
    path = Path(path)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            result = focus_export(period=period, stream=stream)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return result


# --- rows ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    run: AllocationRun
    # The run's period: of a correction, the period it corrects (its charge period).
    period: Period
    start: str
    end: str
    currency: str
    providers: dict[str, str]
    units: dict[str, str]
    pool_totals: dict[tuple, Decimal]
    # Each provider's one invoice in the run, for its lines that carry none (usage no price book prices).
    provider_invoices: dict[str, ProviderInvoice]
    # A correction's: the period it is booked in, which bills it (its rows' billing period).
    booked_in: tuple[str, str] | None = None


def _rows(run: AllocationRun, period: Period, booked_in: Period | None = None) -> Iterator[list]:
    """The run's rows; a correction's (`booked_in` the period exported) marked as corrections."""
    start, end = period.bounds
    context = _Context(
        run=run,
        period=period,
        start=_datetime(start),
        end=_datetime(end),
        currency=_run_currency(run),
        providers=dict(Provider.objects.values_list("code", "name")),
        units=dict(Unit.objects.values_list("code", "name")),
        pool_totals=_pool_totals(run),
        provider_invoices=_provider_invoices(run),
        booked_in=None if booked_in is None else (_datetime(booked_in.start), _datetime(booked_in.end)),
    )
    lines = (
        AllocationLine.objects.filter(run=run)
        .exclude(amount=0, quantity=0)
        .select_related("invoice", "cost_center", "pool", "rule__cost_center", "rule__service_owner")
        .order_by("id")
    )
    columns = FOCUS_COLUMNS + X_COLUMNS
    for line in lines.iterator(chunk_size=2000):
        row = _row(line, context)
        if row["ChargeCategory"] == ChargeCategory.PURCHASE.label and row["EffectiveCost"] != 0:
            # EffectiveCost-C-005-C: a Purchase row's EffectiveCost is 0; what the run allocated of the
            # purchase is this period's use of it, a Usage row with no BilledCost of its own.
            yield [{**row, "EffectiveCost": Decimal("0.00")}[name] for name in columns]
            yield [_purchase_use(row)[name] for name in columns]
        else:
            yield [row[name] for name in columns]


def _purchase_use(row: dict) -> dict:
    """The period's use of a purchase: its allocated (effective) cost, billed on the Purchase row."""
    zero = Decimal("0.00")
    return {
        **row,
        "BilledCost": zero,
        "ChargeCategory": ChargeCategory.USAGE.label,
        "ChargeDescription": f"{row['ChargeDescription']}, used this period",
        "ChargeFrequency": USAGE_BASED,
        "ConsumedQuantity": row["PricingQuantity"],
        "ConsumedUnit": row["PricingUnit"],
        "ContractedCost": zero,
        "ListCost": zero,
    }


def _provider_invoices(run: AllocationRun) -> dict[str, ProviderInvoice]:
    """Providers with exactly one invoice in the run, to that invoice."""
    found: dict[str, list[ProviderInvoice]] = defaultdict(list)
    for invoice in run.invoices.order_by("pk"):
        found[invoice.provider].append(invoice)
    return {provider: invoices[0] for provider, invoices in found.items() if len(invoices) == 1}


def _run_currency(run: AllocationRun) -> str:
    currencies = set(run.invoices.values_list("currency", flat=True))
    return currencies.pop() if len(currencies) == 1 else DEFAULT_CURRENCY


def _pool_totals(run: AllocationRun) -> dict[tuple, Decimal]:
    """Each pooled charge (invoice, pool, category) in all: a pool line's quantity is its share of it.

    Summed from the Decimals here, exact on SQLite too; pool lines are few (pools x cost centers).
    """
    totals: dict[tuple, Decimal] = defaultdict(Decimal)
    pooled = AllocationLine.objects.filter(run=run, pool__isnull=False).values_list(
        "invoice_id", "pool_id", "category", "amount"
    )
    for invoice_id, pool_id, category, amount in pooled:
        totals[(invoice_id, pool_id, category)] += amount
    return dict(totals)


def _row(line: AllocationLine, context: _Context) -> dict:
    fee_owner = _fee_owner(line)
    invoice = line.invoice or (None if fee_owner else context.provider_invoices.get(line.provider))
    if fee_owner is not None:
        provider_name = fee_owner.name
        account = f"internal:{fee_owner.code}"
        service = f"{fee_owner.name} AI service"
        invoice_id = f"{account}:{context.period}"
    else:
        provider_name = (invoice.issuer if invoice else "") or context.providers.get(line.provider) or line.provider
        account = (invoice.billing_account if invoice else "") or line.provider
        service = f"{provider_name} API"
        invoice_id = invoice.invoice_id if invoice else f"provisional:{line.provider}:{context.period}"
    category = ChargeCategory(line.category)
    cost = focus_money(line.amount)
    quantity, pricing_unit, consumed, consumed_unit, sku, meter = _quantities(line, category, fee_owner, context)
    if category != ChargeCategory.USAGE:
        consumed = consumed_unit = None  # ConsumedQuantity-C-004-C: only Usage rows are consumption
    tags = {key: getattr(line, key) for key in TAG_KEYS if getattr(line, key)}
    billing_start = _datetime(invoice.billing_period_start) if invoice else context.start
    billing_end = _datetime(invoice.billing_period_end) if invoice else context.end
    description = _description(line, category, provider_name, fee_owner, context)
    if context.booked_in is not None:
        # FOCUS's corrections of a closed billing period: billed in the open one, charged when incurred.
        billing_start, billing_end = context.booked_in
        description = f"Correction of {context.period}: {description}"
    focus = {
        "BilledCost": cost,
        "BillingAccountId": account,
        "BillingAccountName": None,
        "BillingCurrency": invoice.currency if invoice else context.currency,
        "BillingPeriodEnd": billing_end,
        "BillingPeriodStart": billing_start,
        "ChargeCategory": category.label,
        "ChargeClass": None if context.booked_in is None else "Correction",
        "ChargeDescription": description,
        "ChargeFrequency": _frequency(category, fee_owner),
        "ChargePeriodEnd": context.end,
        "ChargePeriodStart": context.start,
        "ConsumedQuantity": consumed,
        "ConsumedUnit": consumed_unit,
        "ContractedCost": cost,
        "EffectiveCost": cost,
        "InvoiceId": invoice_id,
        "InvoiceIssuerName": provider_name,
        "ListCost": cost,
        "PricingQuantity": quantity,
        "PricingUnit": pricing_unit,
        "ProviderName": provider_name,
        "PublisherName": provider_name,
        "ServiceCategory": SERVICE_CATEGORY,
        "ServiceName": service,
        "ServiceSubcategory": SERVICE_SUBCATEGORY,
        "SkuId": sku,
        "SkuMeter": meter,
        "Tags": json.dumps(tags, sort_keys=True, ensure_ascii=False) if tags else None,
    }
    custom = {
        "x_CostCenter": line.cost_center.code if line.cost_center else None,
        "x_Team": line.team or None,
        "x_Feature": line.feature or None,
        "x_Environment": line.environment or None,
        "x_Modality": line.modality or None,
        "x_Model": line.model or None,
        "x_AllocationMethod": line.method,
        "x_Treatment": line.treatment or None,
        "x_UnallocatedReason": line.reason or None,
        "x_AllocationRunId": str(context.run.pk),
    }
    return focus | custom


def _frequency(category: ChargeCategory, fee_owner: CostCenter | None) -> str:
    """ChargeFrequency: usage is Usage-Based, a fixed monthly fee Recurring; a purchase (never
    Usage-Based: ChargeFrequency-C-004-C), a tax, a credit or an adjustment is charged once on its invoice,
    as far as the invoice tells."""
    if fee_owner is not None:
        return RECURRING
    return USAGE_BASED if category == ChargeCategory.USAGE else ONE_TIME


def _fee_owner(line: AllocationLine) -> CostCenter | None:
    """The service owner of an internal fixed-fee transfer (the rule's cost center when it names none)."""
    if line.method != AllocationMethod.FIXED_FEE or line.rule is None:
        return None
    return line.rule.service_owner or line.rule.cost_center


def _quantities(
    line: AllocationLine, category: ChargeCategory, fee_owner: CostCenter | None, context: _Context
) -> tuple:
    """(PricingQuantity, PricingUnit, ConsumedQuantity, ConsumedUnit, SkuId, SkuMeter) of a line.

    Only Usage and Purchase rows are priced: FOCUS asks PricingQuantity,
    PricingUnit and SkuId null on Tax rows and lets Credit and Adjustment rows
    leave them null, which they do.
    """
    if category not in (ChargeCategory.USAGE, ChargeCategory.PURCHASE):
        return None, None, None, None, None, None
    if line.unit:
        unit = FOCUS_UNITS.get(line.unit, _UNKNOWN_UNIT)
        priced = focus_quantity(_divide(line.quantity, Decimal(unit.quantum)))
        sku = "/".join(part for part in (line.provider, line.model, line.unit) if part)
        meter = context.units.get(line.unit, line.unit)
        return priced, unit.pricing, focus_quantity(line.quantity), unit.name, sku, meter
    if fee_owner is not None:
        share = focus_quantity(_share(line.amount, line.rule.fixed_fee))
        return share, _FEE_UNIT, share, _FEE_UNIT, f"internal/{fee_owner.code}/fixed-fee", "Fixed monthly fee"
    if line.pool is not None:
        total = context.pool_totals.get((line.invoice_id, line.pool_id, line.category), Decimal(0))
        share = focus_quantity(_share(line.amount, total))
        return share, _SHARE_UNIT, share, _SHARE_UNIT, f"{line.provider}/pool/{line.pool.code}", line.pool.name
    share = focus_quantity(_share(line.amount, line.amount))
    return share, _SHARE_UNIT, share, _SHARE_UNIT, f"{line.provider}/{line.category}", category.label


def _share(amount: Decimal, total: Decimal | None) -> Decimal:
    """A lump-sum line's part of the charge it comes from, signed as its cost (-1 for a fee recovered)."""
    if not total:
        return Decimal(-1) if amount < 0 else Decimal(1)
    return quantize(_divide(amount, abs(total)), _SHARE_QUANTUM)


def _divide(value: Decimal, by: Decimal) -> Decimal:
    with localcontext() as decimal_context:
        decimal_context.prec = _QUANTITY_CONTEXT_PRECISION
        return value / by


def _description(
    line: AllocationLine, category: ChargeCategory, provider: str, fee_owner: CostCenter | None, context: _Context
) -> str:
    if fee_owner is not None:
        return f"Fixed monthly fee of the {fee_owner.name} AI service (internal transfer)"
    if line.pool is not None:
        subject = f"{provider} {line.pool.name}"
    elif line.unit:
        subject = " ".join(part for part in (provider, line.model, context.units.get(line.unit, line.unit)) if part)
    else:
        subject = f"{provider} {category.label.lower()}"
    if category not in (ChargeCategory.USAGE, ChargeCategory.PURCHASE):
        subject = f"{category.label} on {subject}"
    text = f"{subject}: {AllocationMethod(line.method).label.lower()}"
    if line.reason:
        text += f" ({UnallocatedReason(line.reason).label.lower()})"
    return text


def _datetime(value: datetime) -> str:
    """ISO 8601 extended format in UTC with the `Z` designator (DateTimeFormat-A-003-M)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
