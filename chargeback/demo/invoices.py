"""The providers' invoices of each demo month, written as files in their own formats
and ingested with `invoice_ingest_file`, as finance would at month end.

Per month: OpenAI's costs API page plus a CSV of the invoice's platform fee and
sales tax, Anthropic's cost report (cents, as strings), AWS SageMaker as FOCUS with
a savings plan bought up front and drawn down, CoreWeave's GPU cluster and
Pinecone's vector store in our invoice CSV. Usage is billed at the rated cost times
1.003 to 1.012 per model (providers round and meter differently), inside the 2%
tolerance, except in the second month: Anthropic's cost report also bills a workspace
the gateway never saw (a team's batch job run with its own key), so that month's run
is flagged beyond the tolerance and waits for finance's override (`STRAY_WORKSPACE`).
An invoice once written is never rewritten: a provider does not reissue
it when our prices change, and a second run re-ingests the same files as duplicates.
The five providers stay in this one module (a little over 500 lines) because they
share the month's bill and the invoice columns; each is one function.

OpenAI's usage the catalog has no price for (generated images, realtime audio) is
left off its invoice, so that the reconciliation compares like with like. GPU
seconds and vector queries have no list price either: CoreWeave, AWS and Pinecone
bill capacity, commitments and plan minimums, which the pools split by activity.
One demo scale per database: the invoices bill the month's whole ledger.
"""

import datetime
import random
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db.models import Sum
from django.db.models.functions import TruncDate

from allocation.models import UsageLine
from allocation.selectors.rating import usage_summary
from allocation.services.invoices.ingest import invoice_ingest_file
from chargeback.demo.files import csv_text, file_write, json_text
from chargeback.demo.mapping import demo_month_activity
from pricing.errors import ValidationFailed
from pricing.money import CENT, decimal_text, quantize
from pricing.periods import Period

__all__ = ["MonthBill", "demo_invoices_load", "demo_month_bill"]

# What the providers bill beyond usage, a month at scale 1: fees scale with the
# demo, so that the mix of a month is the same at any scale.
INVOICE_FACTOR_BASIS_POINTS = (30, 120)  # usage is billed 0.3% to 1.2% above our rating
OPENAI_PLATFORM_FEE = Decimal("12.00")  # Enterprise API platform fee
SALES_TAX = Decimal("0.08875")  # New York sales tax, on OpenAI's and Pinecone's invoices
PINECONE_MINIMUM = Decimal("50.00")  # the Standard plan's monthly minimum
PINECONE_READ_UNITS_PER_QUERY = 10
PINECONE_READ_UNIT_PRICE = Decimal("16")  # per million read units
PINECONE_WRITE_UNITS_PER_DOCUMENT = 5
PINECONE_WRITE_UNIT_PRICE = Decimal("4")  # per million write units
PINECONE_GB_PER_DOCUMENT = Decimal("0.00004")  # its chunks' vectors and metadata
PINECONE_STORAGE_PRICE = Decimal("0.33")  # per GB-month
COREWEAVE_GPU_HOUR = Decimal("2.89")  # H100 80GB SXM, reserved
COREWEAVE_STORAGE_GB = Decimal("1500")  # checkpoints and datasets
COREWEAVE_STORAGE_PRICE = Decimal("0.07")  # per GB-month
AWS_GPU_HOUR = Decimal("4.0963")  # SageMaker ml.p4d.24xlarge on demand, per A100 ($32.77 / 8)
AWS_SAVINGS_PLAN_GPU_HOUR = Decimal("2.8674")  # 30% off under the savings plan
# The savings plan, bought up front in the first month, covers this share of the
# three months' SageMaker spend at the plan's rate; the rest is billed on demand.
AWS_SAVINGS_PLAN_SHARE = Decimal("0.85")
AWS_ACCOUNT = "412345678901"
# The second month's stray Anthropic workspace: usage outside the gateway, billed at this
# share of the month's metered Anthropic usage, on its largest model. Three times the 2%
# tolerance, so its run is flagged at any scale and seed.
STRAY_WORKSPACE = "wrkspc_01larkspurbatchjobs"
STRAY_WORKSPACE_SHARE = Decimal("0.06")
MONEY_PLACES = Decimal("1e-8")  # invoice amounts below the cent, as providers state usage

OPENAI_LINE_ITEMS = {
    "input_token": "input",
    "cached_input_token": "cached input",
    "output_token": "output",
    "reasoning_token": "output (reasoning)",
    "image_input_token": "image input",
    "embedding_token": "input",
    "transcription_second": "audio transcription",
    "realtime_second": "realtime audio",
    "image": "image generation",
}
ANTHROPIC_TOKEN_TYPES = {
    "input_token": ("uncached_input_tokens", "Input Tokens"),
    "output_token": ("output_tokens", "Output Tokens"),
    "cached_input_token": ("cache_read_input_tokens", "Cache Read Input Tokens"),
    "cache_write_token": ("cache_creation.ephemeral_5m_input_tokens", "5m Cache Write Input Tokens"),
    "cache_write_1h_token": ("cache_creation.ephemeral_1h_input_tokens", "1h Cache Write Input Tokens"),
}
INVOICE_CSV_COLUMNS = (
    "invoice_id",
    "provider",
    "charge_period_start",
    "charge_period_end",
    "charge_category",
    "sku",
    "description",
    "unit",
    "quantity",
    "billed_cost",
    "effective_cost",
    "list_cost",
    "currency",
)
FOCUS_COLUMNS = (
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
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SubAccountId",
    "SubAccountName",
)


@dataclass(frozen=True)
class _InvoiceFile:
    """One provider document, as the provider (or its billing portal) hands it over."""

    period: str
    name: str
    source_format: str
    provider: str
    text: str


@dataclass
class MonthBill:
    """What a month's invoices are made of: its rated usage, quantities and activity."""

    month: datetime.date
    start: datetime.datetime
    end: datetime.datetime
    rated: list[dict]  # usage_summary rows by provider, model, unit, service tier and project
    quantities: dict[tuple[str, str], Decimal]  # (provider, unit) -> quantity
    activity: list[tuple[str, str, Decimal]]  # (driver, cost center, count)
    aws_gpu_hours: list[tuple[datetime.date, Decimal]]  # per day

    @property
    def period(self) -> str:
        return f"{self.month:%Y-%m}"


def demo_month_bill(month: datetime.date) -> MonthBill:
    """The month's figures its invoices and activity counts are made from, read from the
    rated ledger as it stands."""
    period = Period.of(month)
    start, end = period.bounds
    lines = UsageLine.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
    aws_days = (
        lines.filter(provider="aws", unit="gpu_second")
        .annotate(day=TruncDate("occurred_at", tzinfo=datetime.UTC))
        .values("day")
        .annotate(seconds=Sum("quantity"))
        .order_by("day")
    )
    return MonthBill(
        month=month,
        start=start,
        end=end,
        rated=usage_summary(period=period, group_by=["provider", "model", "unit", "service_tier", "project"]),
        quantities={
            (row["provider"], row["unit"]): row["quantity"]
            for row in usage_summary(period=period, group_by=["provider", "unit"])
        },
        activity=demo_month_activity(lines),
        aws_gpu_hours=[(row["day"], quantize(row["seconds"] / 3600, Decimal("0.000001"))) for row in aws_days],
    )


def demo_invoices_load(
    bills: list[MonthBill], *, scale: float, seed: int, user, workdir: Path
) -> list[tuple[str, dict[str, Any]]]:
    """Write each provider document into `workdir` (kept as is if written before) and
    ingest it; per file, its period and its figures."""
    loaded = []
    for invoice in _invoice_files(bills, scale=scale, seed=seed):
        path = workdir / invoice.period / invoice.name
        file_write(path, invoice.text, replace=False)
        batch = invoice_ingest_file(
            path=path, source_format=invoice.source_format, provider=invoice.provider, created_by=user
        )
        if batch.status != "completed" or batch.rejected:
            # The demo writes these files itself: a refusal or a rejected line is its own bug.
            raise ValidationFailed(
                f"demo invoice {path}: {batch.status}, {batch.rejected} line(s) rejected {batch.error}".strip(),
                code="demo_invoice_refused",
            )
        figures = {
            "file": str(path.relative_to(workdir)),
            "format": invoice.source_format,
            "provider": invoice.provider,
            "inserted": batch.inserted,
            "duplicate": batch.duplicate,
            "rejected": batch.rejected,
        }
        loaded.append((invoice.period, figures))
    return loaded


def _invoice_factor(*, seed: int, month: datetime.date, provider: str, model: str) -> Decimal:
    """What a provider bills over our rating of one model's usage in a month (1.003 to 1.012)."""
    rng = random.Random(f"{seed}:{month:%Y-%m}:invoice:{provider}:{model}")
    return 1 + Decimal(rng.randint(*INVOICE_FACTOR_BASIS_POINTS)) / 10000


def _invoice_files(bills: list[MonthBill], *, scale: float, seed: int) -> Iterator[_InvoiceFile]:
    """Every provider document of the demo's months, in the order a user would load them."""
    fee_scale = Decimal(f"{scale:g}")
    savings_plan = _aws_focus(bills)
    for index, bill in enumerate(bills):
        yield from _openai(bill, seed=seed, fee_scale=fee_scale)
        yield _anthropic(bill, seed=seed, stray=index == 1)
        yield _InvoiceFile(bill.period, "aws-focus.csv", "focus", "aws", savings_plan[bill.period])
        yield _coreweave(bill, fee_scale=fee_scale)
        yield _pinecone(bill, fee_scale=fee_scale)


def _usage_rows(bill: MonthBill, provider: str, *, seed: int) -> Iterator[tuple[dict, Decimal]]:
    """The provider's priced usage groups with the amount it bills for each."""
    factors: dict[str, Decimal] = {}
    for row in bill.rated:
        if row["provider"] != provider or not row["cost"]:
            continue
        if row["model"] not in factors:
            factors[row["model"]] = _invoice_factor(seed=seed, month=bill.month, provider=provider, model=row["model"])
        amount = quantize(row["cost"] * factors[row["model"]], MONEY_PLACES)
        if amount:
            yield row, amount


def _openai(bill: MonthBill, *, seed: int, fee_scale: Decimal) -> Iterator[_InvoiceFile]:
    """The costs API's page of the month, and the invoice's other lines (the platform fee
    and sales tax, which the API leaves out) in our CSV, on the same invoice."""
    results = []
    usage = Decimal(0)
    for row, amount in _usage_rows(bill, "openai", seed=seed):
        usage += amount
        item = f"{row['model']}, {OPENAI_LINE_ITEMS.get(row['unit'], row['unit'])}"
        results.append(
            {
                "object": "organization.costs.result",
                "amount": {"value": amount, "currency": "usd"},
                "line_item": item + (f" ({row['service_tier']})" if row["service_tier"] else ""),
                "project_id": row["project"] or None,
                "api_key_id": None,
                "quantity": None,
                "quantity_unit": None,
            }
        )
    bucket = {
        "object": "bucket",
        "start_time": int(bill.start.timestamp()),
        "end_time": int(bill.end.timestamp()),
        "results": results,
    }
    page = {"object": "page", "data": [bucket], "has_more": False, "next_page": None}
    yield _InvoiceFile(bill.period, "openai-costs.json", "openai-costs", "openai", json_text(page))
    fee = quantize(OPENAI_PLATFORM_FEE * fee_scale, CENT)
    invoice = {
        "invoice_id": f"openai:{bill.period}",
        "provider": "openai",
        "charge_period_start": _iso(bill.start),
        "charge_period_end": _iso(bill.end),
        "currency": "USD",
    }
    rows = [
        {
            **invoice,
            "charge_category": "purchase",
            "sku": "platform-fee-enterprise",
            "description": "API platform fee, Enterprise (SSO, data residency, support)",
            "billed_cost": fee,
        },
        {
            **invoice,
            "charge_category": "tax",
            "sku": "sales-tax-ny",
            "description": f"Sales tax, New York ({decimal_text(SALES_TAX * 100)}%)",
            "billed_cost": quantize((usage + fee) * SALES_TAX, CENT),
        },
    ]
    yield _InvoiceFile(bill.period, "openai-invoice-charges.csv", "csv", "openai", csv_text(INVOICE_CSV_COLUMNS, rows))


def _anthropic(bill: MonthBill, *, seed: int, stray: bool = False) -> _InvoiceFile:
    """The cost report of the month: amounts in cents, as decimal strings; with `stray`,
    also the stray workspace's input tokens on the month's largest model."""
    results = []
    by_model: dict[str, Decimal] = {}
    for row, amount in _usage_rows(bill, "anthropic", seed=seed):
        token_type, label = ANTHROPIC_TOKEN_TYPES.get(row["unit"], (row["unit"], row["unit"]))
        by_model[row["model"]] = by_model.get(row["model"], Decimal(0)) + amount
        results.append(_anthropic_result(row["model"], token_type, label, amount, tier=row["service_tier"]))
    if stray and by_model:
        model = max(sorted(by_model), key=by_model.__getitem__)
        amount = quantize(sum(by_model.values(), Decimal(0)) * STRAY_WORKSPACE_SHARE, MONEY_PLACES)
        token_type, label = ANTHROPIC_TOKEN_TYPES["input_token"]
        results.append(_anthropic_result(model, token_type, label, amount, workspace=STRAY_WORKSPACE))
    bucket = {"starting_at": _iso(bill.start), "ending_at": _iso(bill.end), "results": results}
    page = {"data": [bucket], "has_more": False, "next_page": None}
    return _InvoiceFile(bill.period, "anthropic-cost-report.json", "anthropic-costs", "anthropic", json_text(page))


def _anthropic_result(
    model: str, token_type: str, label: str, amount: Decimal, *, tier: str = "", workspace: str | None = None
) -> dict[str, Any]:
    return {
        "amount": decimal_text(quantize(amount * 100, Decimal("0.00001"))),
        "context_window": "0-200k",
        "cost_type": "tokens",
        "currency": "USD",
        "description": f"{model} Usage - {label}",
        "model": model,
        "service_tier": tier or "standard",
        "token_type": token_type,
        "workspace_id": workspace,
    }


def _aws_focus(bills: list[MonthBill]) -> dict[str, str]:
    """SageMaker's FOCUS export per month: a savings plan bought up front in the first
    month (billed, effective cost 0) and drawn down by the GPU hours it covers (billed 0,
    effective cost at the plan's rate); hours beyond it are billed on demand."""
    planned = sum((hours for bill in bills for _, hours in bill.aws_gpu_hours), Decimal(0))
    commitment = quantize(planned * AWS_SAVINGS_PLAN_GPU_HOUR * AWS_SAVINGS_PLAN_SHARE, Decimal(1))
    plan_id = f"arn:aws:savingsplans::{AWS_ACCOUNT}:savingsplan/sp-larkspur-gpu"
    balance = commitment
    files = {}
    for index, bill in enumerate(bills):
        invoice = {
            "BillingAccountId": AWS_ACCOUNT,
            "BillingAccountName": "Larkspur Software",
            "BillingCurrency": "USD",
            "BillingPeriodStart": _iso(bill.start),
            "BillingPeriodEnd": _iso(bill.end),
            "InvoiceId": f"{bill.month:%Y%m}-{AWS_ACCOUNT[-6:]}",
            "InvoiceIssuerName": "Amazon Web Services, Inc.",
            "ProviderName": "AWS",
            "PublisherName": "Amazon Web Services, Inc.",
            "SubAccountId": "587412369850",
            "SubAccountName": "ml-training",
        }
        rows = []
        if index == 0 and commitment:
            rows.append(
                {
                    **invoice,
                    "BilledCost": commitment,
                    "EffectiveCost": Decimal(0),
                    "ChargeCategory": "Purchase",
                    "ChargeDescription": "SageMaker Savings Plan, 3 months, all upfront",
                    "ChargeFrequency": "One-Time",
                    "ChargePeriodStart": _iso(bill.start),
                    "ChargePeriodEnd": _iso(bill.end),
                    "CommitmentDiscountCategory": "Spend",
                    "CommitmentDiscountId": plan_id,
                    "CommitmentDiscountType": "SageMaker Savings Plan",
                    "PricingCategory": "Committed",
                    "ServiceCategory": "AI and Machine Learning",
                    "ServiceName": "Savings Plans for AWS Compute usage",
                    "SkuId": "sp-sagemaker-3m-upfront",
                }
            )
        for day, hours in bill.aws_gpu_hours:
            day_start = datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
            usage = {
                **invoice,
                "ChargeCategory": "Usage",
                "ChargeDescription": "SageMaker training, ml.p4d.24xlarge (NVIDIA A100 40GB), per GPU-hour",
                "ChargeFrequency": "Usage-Based",
                "ChargePeriodStart": _iso(day_start),
                "ChargePeriodEnd": _iso(day_start + datetime.timedelta(days=1)),
                "ConsumedUnit": "GPU-Hours",
                "ListUnitPrice": AWS_GPU_HOUR,
                "PricingUnit": "GPU-Hours",
                "RegionId": "us-east-1",
                "ServiceCategory": "AI and Machine Learning",
                "ServiceName": "Amazon SageMaker",
                "SkuId": "USE1-ml.p4d.24xlarge-Training",
            }
            covered, covered_hours = quantize(hours * AWS_SAVINGS_PLAN_GPU_HOUR, MONEY_PLACES), hours
            if covered > balance:  # the plan runs out today: the rest of the day is on demand
                covered = balance
                covered_hours = min(quantize(balance / AWS_SAVINGS_PLAN_GPU_HOUR, Decimal("0.000001")), hours)
            if covered:
                balance -= covered
                rows.append(
                    {
                        **usage,
                        "BilledCost": Decimal(0),
                        "EffectiveCost": covered,
                        "ListCost": quantize(covered_hours * AWS_GPU_HOUR, MONEY_PLACES),
                        "CommitmentDiscountCategory": "Spend",
                        "CommitmentDiscountId": plan_id,
                        "CommitmentDiscountStatus": "Used",
                        "CommitmentDiscountType": "SageMaker Savings Plan",
                        "ConsumedQuantity": covered_hours,
                        "PricingCategory": "Committed",
                        "PricingQuantity": covered_hours,
                    }
                )
            rest = hours - covered_hours if covered else hours
            if rest > 0:
                cost = quantize(rest * AWS_GPU_HOUR, MONEY_PLACES)
                rows.append(
                    {
                        **usage,
                        "BilledCost": cost,
                        "EffectiveCost": cost,
                        "ListCost": cost,
                        "ConsumedQuantity": rest,
                        "PricingCategory": "Standard",
                        "PricingQuantity": rest,
                    }
                )
        files[bill.period] = csv_text(FOCUS_COLUMNS, rows, empty="NULL")
    return files


def _coreweave(bill: MonthBill, *, fee_scale: Decimal) -> _InvoiceFile:
    """The GPU cluster's invoice: reserved H100 hours used, and the cluster's storage."""
    invoice = {
        "invoice_id": f"CW-{bill.month:%Y%m}",
        "provider": "coreweave",
        "charge_period_start": _iso(bill.start),
        "charge_period_end": _iso(bill.end),
        "charge_category": "usage",
        "currency": "USD",
    }
    hours = quantize(bill.quantities.get(("coreweave", "gpu_second"), Decimal(0)) / 3600, Decimal("0.000001"))
    storage = quantize(COREWEAVE_STORAGE_GB * fee_scale, Decimal("0.001"))
    rows = []
    if hours:
        rows.append(
            {
                **invoice,
                "sku": "gpu-h100-80gb-sxm-reserved",
                "description": "NVIDIA H100 80GB SXM GPU-hours, reserved",
                "unit": "GPU-hour",
                "quantity": hours,
                "billed_cost": quantize(hours * COREWEAVE_GPU_HOUR, MONEY_PLACES),
            }
        )
    rows.append(
        {
            **invoice,
            "sku": "storage-object-hot",
            "description": "Hot object storage (checkpoints and datasets)",
            "unit": "GB-month",
            "quantity": storage,
            "billed_cost": quantize(storage * COREWEAVE_STORAGE_PRICE, MONEY_PLACES),
        }
    )
    return _InvoiceFile(bill.period, "coreweave-invoice.csv", "csv", "coreweave", csv_text(INVOICE_CSV_COLUMNS, rows))


def _pinecone(bill: MonthBill, *, fee_scale: Decimal) -> _InvoiceFile:
    """The vector store's invoice: read and write units, storage, the plan's minimum, tax."""
    invoice = {
        "invoice_id": f"PC-{bill.month:%Y%m}",
        "provider": "pinecone",
        "charge_period_start": _iso(bill.start),
        "charge_period_end": _iso(bill.end),
        "charge_category": "usage",
        "currency": "USD",
    }
    documents = sum((count for driver, _, count in bill.activity if driver == "documents_indexed"), Decimal(0))
    reads = bill.quantities.get(("pinecone", "vector_query"), Decimal(0)) * PINECONE_READ_UNITS_PER_QUERY
    writes = documents * PINECONE_WRITE_UNITS_PER_DOCUMENT
    gigabytes = quantize(documents * PINECONE_GB_PER_DOCUMENT, Decimal("0.000001"))
    rows = [
        {
            **invoice,
            "sku": "serverless-read-units",
            "description": "Serverless read units (vector store queries)",
            "unit": "read unit",
            "quantity": reads,
            "billed_cost": quantize(reads * PINECONE_READ_UNIT_PRICE / 1_000_000, MONEY_PLACES),
        },
        {
            **invoice,
            "sku": "serverless-write-units",
            "description": "Serverless write units (vector store upserts)",
            "unit": "write unit",
            "quantity": writes,
            "billed_cost": quantize(writes * PINECONE_WRITE_UNIT_PRICE / 1_000_000, MONEY_PLACES),
        },
        {
            **invoice,
            "sku": "serverless-storage",
            "description": "Serverless vector store storage",
            "unit": "GB-month",
            "quantity": gigabytes,
            "billed_cost": quantize(gigabytes * PINECONE_STORAGE_PRICE, MONEY_PLACES),
        },
    ]
    subtotal = sum((row["billed_cost"] for row in rows), Decimal(0))
    minimum = quantize(PINECONE_MINIMUM * fee_scale, CENT)
    if subtotal < minimum:
        rows.append(
            {
                **invoice,
                "sku": "standard-plan-minimum",
                "description": "Standard plan minimum usage, balance",
                "billed_cost": minimum - subtotal,
            }
        )
        subtotal = minimum
    rows.append(
        {
            **invoice,
            "charge_category": "tax",
            "sku": "sales-tax-ny",
            "description": f"Sales tax, New York ({decimal_text(SALES_TAX * 100)}%)",
            "billed_cost": quantize(subtotal * SALES_TAX, CENT),
        }
    )
    return _InvoiceFile(bill.period, "pinecone-invoice.csv", "csv", "pinecone", csv_text(INVOICE_CSV_COLUMNS, rows))


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
