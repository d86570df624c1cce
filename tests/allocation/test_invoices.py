"""Provider invoices: each format, the cents/dollars trap, duplicates, bad rows, refusals, the command."""

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from django.db.models import F

from allocation.models import InvoiceBatch, InvoiceLine, ProviderInvoice
from allocation.services.invoices.ingest import invoice_ingest_file
from pricing.money import decimal_text

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
INVOICES = FIXTURES / "invoices"
FOCUS_SAMPLE = INVOICES / "focus_sample_1.0.csv"
OPENAI_COSTS = INVOICES / "example_costs.json"
ANTHROPIC_COSTS = INVOICES / "example_cost_report.json"
SIMPLE_CSV = INVOICES / "invoice_simple.csv"
CSV_HEADER = (
    "invoice_id,provider,charge_period_start,charge_period_end,charge_category,sku,description,unit,quantity,"
    "billed_cost,effective_cost,list_cost,currency\n"
)


def write(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def billed_total(**filters) -> Decimal:
    """Summed from each line's Decimal, so the test does not lean on the database's SUM."""
    return sum(InvoiceLine.objects.filter(**filters).values_list("billed_cost", flat=True), Decimal(0))


def assert_accounted(batch: InvoiceBatch) -> None:
    assert batch.rows_read == batch.inserted + batch.duplicate + batch.rejected


def test_focus_sample_keeps_every_line_and_its_billed_cost_to_the_last_digit():
    with open(FOCUS_SAMPLE, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = sum((Decimal(r["BilledCost"]) for r in rows), Decimal(0))
    expected_by_account = {}
    for r in rows:
        key = (r["BillingAccountId"], r["BillingPeriodStart"][:7])
        expected_by_account[key] = expected_by_account.get(key, Decimal(0)) + Decimal(r["BilledCost"])

    batch = invoice_ingest_file(path=FOCUS_SAMPLE, source_format="focus", provider="cloud")

    assert batch.status == "completed", batch.error
    assert (batch.rows_read, batch.inserted, batch.duplicate, batch.rejected) == (1000, 1000, 0, 0)
    assert billed_total() == expected == Decimal("20.52022672899")
    # No InvoiceId in FOCUS 1.0: one invoice per billing account and billing month.
    invoices = {i.invoice_id: i for i in ProviderInvoice.objects.all()}
    assert set(invoices) == {f"cloud:{account}:{month}" for account, month in expected_by_account}
    for (account, month), total in expected_by_account.items():
        assert billed_total(invoice__invoice_id=f"cloud:{account}:{month}") == total
    assert {i.currency for i in invoices.values()} == {"USD"}
    assert {i.issuer for i in invoices.values()} == {"AWS", "Microsoft", "Oracle"}

    categories = {
        c: InvoiceLine.objects.filter(charge_category=c).count()
        for c in ("usage", "credit", "adjustment", "tax", "purchase")
    }
    assert categories == {"usage": 997, "credit": 1, "adjustment": 2, "tax": 0, "purchase": 0}
    credit = InvoiceLine.objects.get(charge_category="credit")
    assert (credit.billed_cost, credit.effective_cost, credit.list_cost) == (
        Decimal("-2.6137"),
        Decimal("-3"),
        Decimal("-2.6137"),
    )
    assert credit.quantity == Decimal(0)  # ConsumedQuantity NULL: PricingQuantity stands in
    first = InvoiceLine.objects.get(sku="G95FST5FTYV3JSRX", source_line=2)
    assert first.billed_cost == Decimal("0.0000008")
    assert (first.quantity, first.unit, first.project) == (Decimal(2), "Requests", "51738928782")
    assert first.charge_period_start.isoformat() == "2024-09-18T22:00:00+00:00"
    # Azure states refunds as negative quantities at negative cost: reversals, kept.
    assert InvoiceLine.objects.filter(quantity__lt=0, billed_cost__lt=0).count() == 12


def test_focus_1_2_with_invoice_ids_iso_times_and_null_literals(tmp_path):
    header = (
        "BilledCost,EffectiveCost,ListCost,ChargeCategory,ChargeDescription,SkuId,ConsumedQuantity,ConsumedUnit,"
        "PricingQuantity,PricingUnit,ChargePeriodStart,ChargePeriodEnd,BillingPeriodStart,BillingPeriodEnd,"
        "BillingCurrency,InvoiceId,ProviderName,BillingAccountId,SubAccountId\n"
    )
    rows = [
        "12.5,12.5,NULL,Usage,GPT input,sku-in,5000000,Tokens,5,1000000 Tokens,"
        "2026-10-01T00:00:00Z,2026-10-02T00:00:00Z,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,usd,INV-77,OpenAI,org-1,proj-a",
        "1.25,1.25,NULL,Tax,Sales tax,NULL,NULL,NULL,NULL,NULL,"
        "2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,USD,INV-77,OpenAI,org-1,NULL",
    ]
    batch = invoice_ingest_file(
        path=write(tmp_path, "focus12.csv", header + "\n".join(rows) + "\n"), source_format="focus", provider="openai"
    )
    assert (batch.inserted, batch.rejected) == (2, 0)
    invoice = ProviderInvoice.objects.get()
    assert (invoice.provider, invoice.invoice_id, invoice.currency, invoice.issuer) == (
        "openai",
        "INV-77",
        "USD",
        "OpenAI",
    )
    usage = invoice.lines.get(charge_category="usage")
    assert (usage.quantity, usage.unit, usage.list_cost, usage.project) == (Decimal(5000000), "Tokens", None, "proj-a")
    tax = invoice.lines.get(charge_category="tax")
    assert (tax.quantity, tax.unit, tax.sku, tax.project) == (None, "", "", "")


def test_the_cents_and_dollars_trap():
    """Anthropic states cents as strings, OpenAI dollars as numbers: a mix-up is a silent 100x error."""
    anthropic = invoice_ingest_file(path=ANTHROPIC_COSTS, source_format="anthropic-costs", provider="anthropic")
    openai = invoice_ingest_file(path=OPENAI_COSTS, source_format="openai-costs", provider="openai")

    claude = InvoiceLine.objects.get(invoice__provider="anthropic")
    assert claude.billed_cost == Decimal("1.2378912")
    assert decimal_text(claude.billed_cost) == "1.2378912"
    assert claude.effective_cost == Decimal("1.2378912") and claude.list_cost is None
    gpt = InvoiceLine.objects.get(invoice__provider="openai")
    assert gpt.billed_cost == Decimal("0.06")
    assert decimal_text(gpt.billed_cost) == "0.06"
    assert (anthropic.inserted, openai.inserted) == (1, 1)


def test_anthropic_cost_report_lines_keep_model_tier_workspace_and_month_invoice():
    invoice_ingest_file(path=ANTHROPIC_COSTS, source_format="anthropic-costs", provider="anthropic")
    line = InvoiceLine.objects.select_related("invoice").get()
    assert (line.model, line.service_tier, line.project) == (
        "claude-opus-4-6",
        "standard",
        "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
    )
    assert line.sku == "tokens/uncached_input_tokens/0-200k"
    assert line.description == "Claude Sonnet 4 Usage - Input Tokens"
    assert (line.charge_category, line.charge_period_start.isoformat()) == ("usage", "2025-08-01T00:00:00+00:00")
    invoice = line.invoice
    assert (invoice.invoice_id, invoice.currency) == ("anthropic:2025-08", "USD")
    assert invoice.billing_period_start.isoformat() == "2025-08-01T00:00:00+00:00"
    assert invoice.billing_period_end.isoformat() == "2025-09-01T00:00:00+00:00"


def test_openai_costs_invoice_is_the_billing_month_in_upper_case_currency():
    invoice_ingest_file(path=OPENAI_COSTS, source_format="openai-costs", provider="openai")
    line = InvoiceLine.objects.select_related("invoice").get()
    assert (line.invoice.invoice_id, line.invoice.currency) == ("openai:2024-11", "USD")
    assert line.charge_period_start.isoformat() == "2024-11-01T00:00:00+00:00"
    assert line.charge_period_end.isoformat() == "2024-11-02T00:00:00+00:00"
    assert (line.quantity, line.sku, line.project) == (None, "", "")


def test_openai_costs_with_line_items_quantities_and_bad_results(tmp_path):
    def result(**kw):
        base = {"object": "organization.costs.result", "amount": {"value": 1.1, "currency": "usd"}}
        return base | kw

    page = {
        "object": "page",
        "data": [
            {
                "start_time": 1730419200,
                "end_time": 1730505600,
                "results": [
                    result(line_item="gpt-4o, input", project_id="proj_1", quantity=1000, quantity_unit="tokens"),
                    result(amount={"value": 0.1 + 0.2, "currency": "usd"}, line_item="float noise"),
                    result(amount={"value": "a lot", "currency": "usd"}),
                    result(amount={"value": 1, "currency": "dollars"}),
                    result(quantity=-5),
                    result(amount=None),
                ],
            }
        ],
    }
    batch = invoice_ingest_file(
        path=write(tmp_path, "costs.json", json.dumps(page)), source_format="openai-costs", provider="openai"
    )
    assert (batch.rows_read, batch.inserted, batch.rejected) == (6, 2, 4)
    assert_accounted(batch)
    line = InvoiceLine.objects.get(sku="gpt-4o, input")
    assert (line.billed_cost, line.quantity, line.unit, line.project) == (
        Decimal("1.1"),
        Decimal(1000),
        "tokens",
        "proj_1",
    )
    # repr() of the float, never its binary expansion
    assert InvoiceLine.objects.get(sku="float noise").billed_cost == Decimal("0.30000000000000004").quantize(
        Decimal("1e-12")
    )
    rejections = list(batch.rejections.values_list("line", "field", "reason"))
    assert rejections[0][:2] == (3, "data[0].results[2].amount.value") and "not a number" in rejections[0][2]
    assert rejections[1][:2] == (4, "data[0].results[3].amount.currency") and "ISO 4217" in rejections[1][2]
    assert rejections[2][:2] == (5, "data[0].results[4].quantity") and "negative quantity" in rejections[2][2]
    assert rejections[3][:2] == (6, "data[0].results[5].amount") and rejections[3][2] == "missing"


def test_our_csv_is_read_with_every_charge_category():
    batch = invoice_ingest_file(path=SIMPLE_CSV, source_format="csv", provider="acme-ai")
    assert batch.status == "completed"
    assert (batch.rows_read, batch.inserted, batch.duplicate, batch.rejected) == (6, 6, 0, 0)
    invoice = ProviderInvoice.objects.get()
    assert (invoice.provider, invoice.invoice_id, invoice.currency) == ("acme-ai", "INV-2026-10", "USD")
    assert invoice.billing_period_start.isoformat() == "2026-10-01T00:00:00+00:00"
    assert invoice.billing_period_end.isoformat() == "2026-11-01T00:00:00+00:00"
    assert billed_total() == Decimal("410.999999999999")
    assert sorted(invoice.lines.values_list("charge_category", flat=True)) == [
        "adjustment",
        "credit",
        "purchase",
        "tax",
        "usage",
        "usage",
    ]
    prepay = invoice.lines.get(charge_category="purchase")
    assert (prepay.billed_cost, prepay.effective_cost, prepay.list_cost, prepay.quantity) == (
        Decimal(300),
        Decimal(0),
        None,
        None,
    )
    output = invoice.lines.get(sku="gpt-4o-output")
    assert (output.quantity, output.unit, output.list_cost) == (Decimal("2.125"), "1000000 Tokens", Decimal("21.25"))
    assert invoice.lines.get(charge_category="adjustment").description == "Correction, September overbilling"


def test_the_same_file_again_inserts_nothing_and_counts_duplicates():
    first = invoice_ingest_file(path=SIMPLE_CSV, source_format="csv", provider="acme-ai")
    second = invoice_ingest_file(path=SIMPLE_CSV, source_format="csv", provider="acme-ai")
    assert (first.inserted, first.duplicate) == (6, 0)
    assert (second.rows_read, second.inserted, second.duplicate, second.rejected) == (6, 0, 6, 0)
    assert_accounted(second)
    assert InvoiceLine.objects.count() == 6 and ProviderInvoice.objects.count() == 1
    focus = invoice_ingest_file(path=FOCUS_SAMPLE, source_format="focus", provider="cloud")
    again = invoice_ingest_file(path=FOCUS_SAMPLE, source_format="focus", provider="cloud")
    assert (focus.inserted, again.inserted, again.duplicate) == (1000, 0, 1000)
    assert list(again.invoices.order_by("pk")) == list(focus.invoices.order_by("pk"))


def test_identical_charges_on_one_invoice_stay_two_lines(tmp_path):
    row = "INV-1,,2026-10-01,2026-10-02,usage,sku,,,,5.00,,,USD\n"
    path = write(tmp_path, "twice.csv", CSV_HEADER + row + row)
    assert invoice_ingest_file(path=path, source_format="csv", provider="p").inserted == 2
    again = invoice_ingest_file(path=path, source_format="csv", provider="p")
    assert (again.inserted, again.duplicate) == (0, 2)
    # A later file holding one more copy adds only that copy.
    third = invoice_ingest_file(
        path=write(tmp_path, "thrice.csv", CSV_HEADER + row * 3), source_format="csv", provider="p"
    )
    assert (third.inserted, third.duplicate) == (1, 2)
    assert billed_total() == Decimal("15")


BAD_ROWS = [
    ("INV-1,,2026-10-01,2026-10-02,usage,s,,tokens,-3,5,,,USD", "quantity", "negative quantity"),
    ("INV-1,,2026-10-01,2026-10-02,usage,s,,,,5.0.0,,,USD", "billed_cost", "not a number"),
    ("INV-1,,2026-10-01,2026-10-02,usage,s,,,,NaN,,,USD", "billed_cost", "finite"),
    ("INV-1,,2026-10-01,2026-10-02,usage,s,,,,5,abc,,USD", "effective_cost", "not a number"),
    ("INV-1,,yesterday,2026-10-02,usage,s,,,,5,,,USD", "charge_period_start", "not an ISO 8601"),
    ("INV-1,,2026-10-03,2026-10-02,usage,s,,,,5,,,USD", "charge_period_end", "not after the start"),
    (",,2026-10-01,2026-10-02,usage,s,,,,5,,,USD", "invoice_id", "missing"),
    ("INV-1,,2026-10-01,2026-10-02,usage,s,,,,,,,USD", "billed_cost", "missing"),
    ("INV-1,,2026-10-01,2026-10-02,refund,s,,,,5,,,USD", "charge_category", "unknown charge category 'refund'"),
    ("INV-1,,2026-10-01,2026-10-02,usage,s,,,,5,,,US$", "currency", "ISO 4217"),
    ("INV-1,,2026-10-01,2026-10-02,usage,s,,,,5,,,EUR", "currency", "invoice INV-1 is in USD"),
    ("INV-1,,2026-11-01,2026-11-02,usage,s,,,,5,,,USD", "billing_period", "invoice INV-1 is for 2026-10-01"),
    ("INV-1,other,2026-10-01,2026-10-02,usage,s,,,,5,,,USD", "provider", "ingested for 'p'"),
    ("INV-1,,2026-10-01,2026-10-02,usage", "(row)", "fewer fields"),
]


def test_bad_rows_are_rejected_with_line_field_and_reason_and_good_rows_kept(tmp_path):
    good = [
        "INV-1,,2026-10-01,2026-10-02,usage,a,,,,1.10,,,USD",
        "INV-1,p,2026-10-05,2026-10-06,tax,b,,,,2.20,,,usd",
    ]
    lines = [good[0], *(row for row, _, _ in BAD_ROWS), good[1]]
    batch = invoice_ingest_file(
        path=write(tmp_path, "bad.csv", CSV_HEADER + "\n".join(lines) + "\n"), source_format="csv", provider="p"
    )

    assert batch.status == "completed"
    assert (batch.rows_read, batch.inserted, batch.duplicate, batch.rejected) == (16, 2, 0, 14)
    assert_accounted(batch)
    rejections = list(batch.rejections.order_by("line").values_list("line", "field", "reason"))
    for n, ((line, field, reason), (_, expected_field, expected_reason)) in enumerate(
        zip(rejections, BAD_ROWS, strict=True)
    ):
        assert line == n + 3  # the header is line 1, the good row line 2
        assert field == expected_field
        assert expected_reason in reason, (field, reason)
    assert billed_total() == Decimal("3.30")


def test_the_rows_read_identity_is_held_by_the_database():
    batch = invoice_ingest_file(path=SIMPLE_CSV, source_format="csv", provider="acme-ai")
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceBatch.objects.filter(pk=batch.pk).update(rows_read=F("rows_read") + 1)


@pytest.mark.parametrize(
    ("fixture", "source_format", "message"),
    [
        (OPENAI_COSTS, "anthropic-costs", "use --format openai-costs"),
        (ANTHROPIC_COSTS, "openai-costs", "use --format anthropic-costs"),
        (FIXTURES / "openai" / "example_usage_completions.json", "openai-costs", "--format openai-usage"),
        (FIXTURES / "anthropic" / "example_usage_report_messages.json", "anthropic-costs", "--format anthropic-usage"),
        (FOCUS_SAMPLE, "csv", "missing required column(s) invoice_id"),
        (SIMPLE_CSV, "focus", "missing required column(s) BilledCost, EffectiveCost"),
        (FOCUS_SAMPLE, "openai-costs", "not JSON"),
    ],
)
def test_a_file_in_another_format_is_refused_whole_and_nothing_written(fixture, source_format, message):
    batch = invoice_ingest_file(path=fixture, source_format=source_format, provider="p")
    assert batch.status == "refused"
    assert message in batch.error
    assert batch.error.startswith(f"{fixture.name}: ")
    assert (batch.rows_read, batch.inserted, batch.rejected) == (0, 0, 0)
    assert not InvoiceLine.objects.exists() and not ProviderInvoice.objects.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        (CSV_HEADER.strip() + ",colour\n", "unknown column(s) colour"),
    ],
)
def test_a_file_that_is_not_our_csv_is_refused(tmp_path, text, message):
    batch = invoice_ingest_file(path=write(tmp_path, "odd.csv", text), source_format="csv", provider="p")
    assert batch.status == "refused" and message in batch.error


def test_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(CSV_HEADER.encode() + "INV-1,,2026-10-01,2026-10-02,usage,caf\xe9,,,,5,,,USD\n".encode("latin-1"))
    batch = invoice_ingest_file(path=path, source_format="csv", provider="p")
    assert batch.status == "refused" and "not UTF-8" in batch.error
    assert not InvoiceLine.objects.exists()


def test_command_prints_one_json_object_with_invoice_totals():
    out = io.StringIO()
    call_command("ingest_invoice", str(FOCUS_SAMPLE), "--format", "focus", "--provider", "cloud", stdout=out)
    report = json.loads(out.getvalue())
    assert report["status"] == "completed" and report["error"] is None
    assert (report["rows_read"], report["inserted"], report["duplicate"], report["rejected"]) == (1000, 1000, 0, 0)
    assert report["batch_id"] == InvoiceBatch.objects.get().pk
    assert report["provider"] == "cloud" and report["format"] == "focus"
    assert len(report["invoices"]) == 4
    assert sum(Decimal(i["billed_cost"]) for i in report["invoices"]) == Decimal("20.52022672899")
    assert all(isinstance(i["billed_cost"], str) for i in report["invoices"])

    out = io.StringIO()
    call_command(
        "ingest_invoice", str(ANTHROPIC_COSTS), "--format", "anthropic-costs", "--provider", "anthropic", stdout=out
    )
    report = json.loads(out.getvalue())
    assert report["invoices"] == [
        {
            "invoice_id": "anthropic:2025-08",
            "currency": "USD",
            "billing_period_start": "2025-08-01T00:00:00+00:00",
            "billing_period_end": "2025-09-01T00:00:00+00:00",
            "lines": 1,
            "billed_cost": "1.2378912",
            "effective_cost": "1.2378912",
        }
    ]


def test_command_reports_rejections_and_a_rerun_as_duplicates(tmp_path):
    path = write(
        tmp_path, "bad.csv", CSV_HEADER + "INV-1,,2026-10-01,2026-10-02,usage,a,,,,1.10,,,USD\n" + BAD_ROWS[0][0] + "\n"
    )
    call_command("ingest_invoice", str(path), "--format", "csv", "--provider", "p", stdout=io.StringIO())
    out = io.StringIO()
    call_command("ingest_invoice", str(path), "--format", "csv", "--provider", "p", stdout=out)
    report = json.loads(out.getvalue())
    assert (report["rows_read"], report["inserted"], report["duplicate"], report["rejected"]) == (2, 0, 1, 1)
    assert report["invoices"][0]["billed_cost"] == "1.1"
    assert report["rejections"]["first"] == [
        {"line": 3, "field": "quantity", "reason": report["rejections"]["first"][0]["reason"]}
    ]
    assert "negative quantity" in report["rejections"]["first"][0]["reason"]


def test_command_exits_non_zero_when_refused():
    out = io.StringIO()
    with pytest.raises(CommandError) as refused:
        call_command("ingest_invoice", str(OPENAI_COSTS), "--format", "focus", "--provider", "openai", stdout=out)
    assert refused.value.returncode == 2
    assert "refused" in str(refused.value)
    report = json.loads(out.getvalue())
    assert report["status"] == "refused" and "missing required column(s)" in report["error"]
    assert report["invoices"] == []
    with pytest.raises(CommandError, match="no such file"):
        call_command("ingest_invoice", "/nonexistent.csv", "--format", "csv", "--provider", "p", stdout=io.StringIO())
