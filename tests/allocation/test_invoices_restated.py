"""Invoices matched on meaning, not spelling; a restated charge ends at its latest figures.

The same data written differently is a duplicate; the same charge with other
figures is a restatement, kept append-only as a reversal and a replacement, so
every sum over an invoice's lines (the allocation run's, the reconciliation's,
the command's) reads the latest figures: never both, never only the first.
"""

import io
import json
from decimal import Decimal
from importlib import import_module
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import IntegrityError, transaction

from allocation.models import ActivityCount, InvoiceBatch, InvoiceLine, ProviderInvoice
from allocation.services.invoices.ingest import invoice_ingest_file
from allocation.services.runs.run import allocation_run_execute

from .runs_world import (
    MONTH,
    SCENARIO_INVOICE,
    build_mapping,
    build_org,
    build_prices,
    invoice_csv,
    load_invoice,
    load_usage,
    make_approver,
    scenario_events,
)
from .test_invoices import CSV_HEADER, FOCUS_SAMPLE, SIMPLE_CSV, billed_total, write

pytestmark = pytest.mark.django_db

FOCUS_HEADER = (
    "BilledCost,EffectiveCost,ListCost,ChargeCategory,ChargeDescription,SkuId,ConsumedQuantity,ConsumedUnit,"
    "ChargePeriodStart,ChargePeriodEnd,BillingPeriodStart,BillingPeriodEnd,BillingCurrency,InvoiceId,"
    "ProviderName,BillingAccountId,SubAccountId\n"
)


def effective_total(**filters) -> Decimal:
    return sum(InvoiceLine.objects.filter(**filters).values_list("effective_cost", flat=True), Decimal(0))


def counts(batch: InvoiceBatch) -> tuple[int, int, int, int, int]:
    return batch.rows_read, batch.inserted, batch.duplicate, batch.rejected, batch.restated


def openai_page(*results: dict, start: int = 1_730_419_200) -> dict:
    return {"object": "page", "data": [{"start_time": start, "end_time": start + 86_400, "results": list(results)}]}


def openai_result(value, *, line_item: str = "gpt-4o, input", project: str = "proj_1", **extra) -> dict:
    return {
        "object": "organization.costs.result",
        "amount": {"value": value, "currency": "usd"},
        "line_item": line_item,
        "project_id": project,
        **extra,
    }


def ingest_json(tmp_path: Path, name: str, document, source_format: str, provider: str) -> InvoiceBatch:
    text = document if isinstance(document, str) else json.dumps(document)
    return invoice_ingest_file(path=write(tmp_path, name, text), source_format=source_format, provider=provider)


def ingest_csv(tmp_path: Path, name: str, rows: str) -> InvoiceBatch:
    return invoice_ingest_file(path=write(tmp_path, name, CSV_HEADER + rows), source_format="csv", provider="p")


# -- the same data written differently ---------------------------------------------------------------------------


def test_our_csv_written_differently_is_a_duplicate(tmp_path):
    first = ingest_csv(tmp_path, "a.csv", "INV-1,,2026-10-01,2026-10-02,usage,sku-a,Tokens,tokens,1000,12.50,,,USD\n")
    respelled = [
        "INV-1,p,2026-10-01T00:00:00Z,2026-10-02 00:00:00+00:00,Usage, sku-a ,Tokens,tokens,1000.000,12.5,,,usd\n",
        "INV-1,,2026-10-01T02:00:00+02:00,2026-10-02,USAGE,sku-a,Tokens,tokens,1E+3,1.25E+1,12.500,,USD\n",
        "INV-1,,2026-10-01,2026-10-02,usage,sku-a,Tokens,tokens,1000,+12.50000000,,,USD\n",
    ]
    again = [ingest_csv(tmp_path, f"b{n}.csv", row) for n, row in enumerate(respelled)]
    assert counts(first) == (1, 1, 0, 0, 0)
    assert [counts(b) for b in again] == [(1, 0, 1, 0, 0)] * 3
    assert InvoiceLine.objects.count() == 1 and billed_total() == Decimal("12.5")


def test_openai_costs_written_differently_is_a_duplicate(tmp_path):
    first = ingest_json(tmp_path, "a.json", openai_page(openai_result(0.06)), "openai-costs", "openai")
    # The same bucket: keys in another order, the amount as 0.060 and as text,
    # the times as floats, the page as JSON lines.
    reordered = {
        "data": [
            {
                "results": [
                    {
                        "project_id": "proj_1",
                        "line_item": "gpt-4o, input",
                        "amount": {"currency": "USD", "value": "0.060"},
                        "object": "organization.costs.result",
                    }
                ],
                "end_time": 1_730_505_600.0,
                "start_time": 1_730_419_200.0,
            }
        ],
        "object": "page",
    }
    again = ingest_json(tmp_path, "b.jsonl", json.dumps(reordered) + "\n", "openai-costs", "openai")
    assert counts(first) == (1, 1, 0, 0, 0)
    assert counts(again) == (1, 0, 1, 0, 0)
    assert InvoiceLine.objects.count() == 1


def test_anthropic_costs_written_differently_is_a_duplicate(tmp_path):
    result = {
        "currency": "USD",
        "amount": "123.78912",
        "cost_type": "tokens",
        "token_type": "uncached_input_tokens",
        "model": "claude-opus-4-6",
        "workspace_id": "wrkspc_1",
    }
    page = {"data": [{"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z", "results": [result]}]}
    respelled = {
        "data": [
            {
                "starting_at": "2025-08-01T00:00:00+00:00",
                "ending_at": "2025-08-01T20:00:00-04:00",
                "results": [dict(reversed(list((result | {"amount": "123.789120"}).items())))],
            }
        ]
    }
    first = ingest_json(tmp_path, "a.json", page, "anthropic-costs", "anthropic")
    again = ingest_json(tmp_path, "b.json", respelled, "anthropic-costs", "anthropic")
    assert (first.inserted, again.inserted, again.duplicate) == (1, 0, 1)
    assert billed_total() == Decimal("1.2378912")


def test_focus_written_differently_is_a_duplicate(tmp_path):
    def focus(billed: str, start: str = "2026-10-01T00:00:00Z", extra: str = "") -> Path:
        row = (
            f"{billed},{billed},NULL,Usage,GPU hours,sku-gpu,10,Hours,{start},2026-10-02T00:00:00Z,"
            f"2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,USD,INV-9,Cloud,acct-1,sub-1\n"
        )
        return write(tmp_path, f"f{billed}{start[:4]}{len(extra)}.csv", FOCUS_HEADER + row)

    first = invoice_ingest_file(path=focus("40.50"), source_format="focus", provider="cloud")
    again = invoice_ingest_file(
        path=focus("40.5", start="2026-10-01 00:00:00"), source_format="focus", provider="cloud"
    )
    assert (first.inserted, again.inserted, again.duplicate) == (1, 0, 1)


def test_many_digits_compare_equal_on_both_databases(tmp_path):
    """SQLite keeps a decimal column to 15 significant digits; the comparison does not lean on it."""
    row = "INV-1,,2026-10-01,2026-10-02,usage,sku,,tokens,123456789.123456789012345,12345.123456789012,,,USD\n"
    first = ingest_csv(tmp_path, "a.csv", row)
    again = ingest_csv(tmp_path, "b.csv", row.replace("12345.123456789012", "12345.1234567890120"))
    assert counts(first) == (1, 1, 0, 0, 0)
    assert counts(again) == (1, 0, 1, 0, 0)
    assert InvoiceLine.objects.get().figures == "12345.123456789012|12345.123456789012||123456789.123456789012345"


# -- restatements -------------------------------------------------------------------------------------------------


def test_an_openai_bucket_exported_at_noon_and_next_morning_ends_at_the_morning_figures(tmp_path):
    noon = openai_page(openai_result(1.10, quantity=1000), openai_result(0.40, line_item="gpt-4o, output"))
    morning = openai_page(openai_result(1.50, quantity=1400), openai_result(0.40, line_item="gpt-4o, output"))

    first = ingest_json(tmp_path, "noon.json", noon, "openai-costs", "openai")
    second = ingest_json(tmp_path, "morning.json", morning, "openai-costs", "openai")
    third = ingest_json(tmp_path, "morning-again.json", morning, "openai-costs", "openai")

    assert counts(first) == (2, 2, 0, 0, 0)
    assert counts(second) == (2, 1, 1, 0, 1)  # the input bucket restated, the output one unchanged
    assert counts(third) == (2, 0, 2, 0, 0)
    assert billed_total() == Decimal("1.90") == effective_total()  # not 3.00, not 1.50
    lines = InvoiceLine.objects.filter(sku="gpt-4o, input").order_by("pk")
    assert [(line.entry, line.billed_cost, line.quantity) for line in lines] == [
        ("original", Decimal("1.1"), Decimal(1000)),
        ("reversal", Decimal("-1.1"), Decimal(-1000)),
        ("replacement", Decimal("1.5"), Decimal(1400)),
    ]
    original, reversal, replacement = lines
    assert reversal.restates == original and replacement.restates == original
    assert (reversal.batch, reversal.source_line) == (second, 1)
    assert reversal.figures == "-1.1|-1.1||-1000"
    assert ProviderInvoice.objects.get().invoice_id == "openai:2024-11"


def test_a_bucket_restated_again_and_again_holds_the_latest_figures(tmp_path):
    for n, value in enumerate(("1.10", "1.50", "2.00", "1.75")):
        batch = ingest_json(tmp_path, f"{n}.json", openai_page(openai_result(value)), "openai-costs", "openai")
        assert batch.restated == (1 if n else 0)
    assert billed_total() == Decimal("1.75")
    standing = [
        line for line in InvoiceLine.objects.all() if line.entry != "reversal" and not line.restated_by.exists()
    ]
    assert [line.billed_cost for line in standing] == [Decimal("1.75")]
    # An older export ingested again restates the bucket back: the last file read wins.
    older = ingest_json(tmp_path, "older.json", openai_page(openai_result("1.50")), "openai-costs", "openai")
    assert counts(older) == (1, 1, 0, 0, 1)
    assert billed_total() == Decimal("1.50")


def test_an_anthropic_bucket_restated(tmp_path):
    def page(amount: str) -> dict:
        result = {"currency": "USD", "amount": amount, "cost_type": "tokens", "token_type": "output_tokens"}
        return {
            "data": [{"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z", "results": [result]}]
        }

    ingest_json(tmp_path, "a.json", page("123.78912"), "anthropic-costs", "anthropic")
    restated = ingest_json(tmp_path, "b.json", page("250"), "anthropic-costs", "anthropic")
    assert counts(restated) == (1, 1, 0, 0, 1)
    assert billed_total() == Decimal("2.5")


def test_a_focus_row_restated_with_another_billed_cost(tmp_path):
    def focus(billed: str, name: str) -> Path:
        rows = [
            f"{billed},{billed},NULL,Usage,GPU hours,sku-gpu,10,Hours,2026-10-01T00:00:00Z,2026-10-02T00:00:00Z,"
            "2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,USD,INV-9,Cloud,acct-1,sub-1",
            "5,5,NULL,Tax,Sales tax,NULL,NULL,NULL,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,"
            "2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,USD,INV-9,Cloud,acct-1,NULL",
        ]
        return write(tmp_path, name, FOCUS_HEADER + "\n".join(rows) + "\n")

    invoice_ingest_file(path=focus("40.00", "a.csv"), source_format="focus", provider="cloud")
    restated = invoice_ingest_file(path=focus("42.25", "b.csv"), source_format="focus", provider="cloud")
    assert counts(restated) == (2, 1, 1, 0, 1)
    assert billed_total() == Decimal("47.25")


def test_identical_charges_stay_two_and_one_restated_keeps_the_other(tmp_path):
    row = "INV-1,,2026-10-01,2026-10-02,usage,sku,,,,5.00,,,USD\n"
    ingest_csv(tmp_path, "two.csv", row + row)
    restated = ingest_csv(tmp_path, "one-restated.csv", row.replace("5.00", "7") + row)
    assert counts(restated) == (2, 1, 1, 0, 1)
    assert billed_total() == Decimal("12")
    # The same file in the other order is the same data.
    again = ingest_csv(tmp_path, "swapped.csv", row + row.replace("5.00", "7.0"))
    assert counts(again) == (2, 0, 2, 0, 0)


def test_a_charge_that_differs_in_more_than_its_figures_is_another_charge(tmp_path):
    ingest_csv(tmp_path, "a.csv", "INV-1,,2026-10-01,2026-10-02,usage,sku,,,,5,,,USD\n")
    other_day = ingest_csv(tmp_path, "b.csv", "INV-1,,2026-10-02,2026-10-03,usage,sku,,,,5,,,USD\n")
    other_project = invoice_ingest_file(
        path=write(
            tmp_path,
            "c.csv",
            "invoice_id,charge_period_start,charge_period_end,charge_category,sku,billed_cost,currency,project\n"
            "INV-1,2026-10-01,2026-10-02,usage,sku,5,USD,proj-2\n",
        ),
        source_format="csv",
        provider="p",
    )
    assert counts(other_day) == (1, 1, 0, 0, 0) and counts(other_project)[1:] == (1, 0, 0, 0)


def test_the_invoice_sums_and_the_command_report_read_the_latest_figures(tmp_path):
    ingest_json(tmp_path, "noon.json", openai_page(openai_result(1.10)), "openai-costs", "openai")
    path = write(tmp_path, "morning.json", json.dumps(openai_page(openai_result(1.5))))
    out = io.StringIO()
    call_command("ingest_invoice", str(path), "--format", "openai-costs", "--provider", "openai", stdout=out)
    report = json.loads(out.getvalue())
    assert (report["inserted"], report["duplicate"], report["restated"]) == (1, 0, 1)
    assert report["invoices"][0]["billed_cost"] == "1.5"


def test_a_line_is_reversed_only_once_the_database_says_so(tmp_path):
    ingest_json(tmp_path, "a.json", openai_page(openai_result(1)), "openai-costs", "openai")
    ingest_json(tmp_path, "b.json", openai_page(openai_result(2)), "openai-costs", "openai")
    reversal = InvoiceLine.objects.get(entry="reversal")
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceLine.objects.create(
            **{f.attname: getattr(reversal, f.attname) for f in InvoiceLine._meta.concrete_fields if f.name != "id"}
            | {"line_key": "f" * 32}
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceLine.objects.filter(pk=reversal.pk).update(restates=None)  # a reversal names what it reverses


def test_lines_held_before_restatements_were_read_get_their_figures(tmp_path):
    """The migration gives lines written before it their canonical figures, so a file
    read again after the upgrade is a duplicate, not a second charge."""
    invoice_ingest_file(path=SIMPLE_CSV, source_format="csv", provider="acme-ai")
    InvoiceLine.objects.update(figures="")
    import_module("allocation.migrations.0013_invoices_trust").lines_figures(apps, None)
    assert InvoiceLine.objects.get(charge_category="purchase").figures == "300|0||"
    again = invoice_ingest_file(path=SIMPLE_CSV, source_format="csv", provider="acme-ai")
    assert counts(again) == (6, 0, 6, 0, 0)


def test_the_focus_sample_read_twice_is_all_duplicates():
    invoice_ingest_file(path=FOCUS_SAMPLE, source_format="focus", provider="cloud")
    again = invoice_ingest_file(path=FOCUS_SAMPLE, source_format="focus", provider="cloud")
    assert counts(again) == (1000, 0, 1000, 0, 0)


# -- the allocation run reads the latest figures -----------------------------------------------------------------


@pytest.fixture
def world(tmp_path, django_user_model):
    centers = build_org()
    build_prices()
    approver = make_approver(django_user_model)
    build_mapping(tmp_path, approver)
    load_usage(scenario_events())
    load_invoice(tmp_path, SCENARIO_INVOICE)
    ActivityCount.objects.create(period=MONTH, driver="jobs_run", cost_center=centers["CC-110"], count=3)
    ActivityCount.objects.create(period=MONTH, driver="jobs_run", cost_center=centers["CC-130"], count=1)
    return {"approver": approver}


def test_the_allocation_run_and_reconciliation_read_a_restated_invoice_at_its_latest_figures(world, tmp_path):
    """The scenario's usage line restated from 69.69 to 80.00: the run allocates 80.00, as
    test_runs' hand-computed case where the line says 80.00 from the start."""
    before = allocation_run_execute(period=MONTH, actor=world["approver"])
    restated = SCENARIO_INVOICE.replace("69.69,69.69", "80.00,80.00")
    batch = invoice_ingest_file(
        path=invoice_csv(tmp_path, restated, "restated.csv"), source_format="csv", provider="acme-ai"
    )
    assert counts(batch) == (4, 1, 3, 0, 1)

    run = allocation_run_execute(period=MONTH, actor=world["approver"])
    assert before.invoice_total == Decimal("174.56")
    assert run.invoice_total == Decimal("184.87")  # 80 + 15.869 + 59 + 30
    assert run.allocated + run.unallocated == run.invoice_total
    check = run.reconciliation.get(model="")
    assert (check.invoice_cost, check.within_tolerance, check.variance_share) == (
        Decimal("80"),
        False,
        Decimal("-0.1375"),
    )

    # Restated back to the first figures: the same cents as the first run.
    back = invoice_ingest_file(
        path=invoice_csv(tmp_path, SCENARIO_INVOICE, "back.csv"), source_format="csv", provider="acme-ai"
    )
    assert counts(back) == (4, 1, 3, 0, 1)
    again = allocation_run_execute(period=MONTH, actor=world["approver"])
    assert again.invoice_total == before.invoice_total

    def cents(r) -> list[tuple]:
        return sorted(
            (line.cost_center_id or 0, line.reason, line.category, line.method, line.team, line.unit, line.amount)
            for line in r.lines.all()
        )

    assert cents(again) == cents(before)
