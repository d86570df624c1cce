"""`export_focus`: the hand-computed allocation world as a FOCUS 1.2 CSV, checked row by row against
the FOCUS 1.2 rules (`runs_focus_rules.py`), and tied to the run's invoice total to the cent."""

import io
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from allocation.models import AllocationLine, AllocationRun, UsageLine
from allocation.services.runs.focus_export import FOCUS_COLUMNS, FOCUS_UNITS, X_COLUMNS, focus_export
from allocation.services.runs.run import allocation_run_execute
from pricing.units import UNIT_CATALOG

from .runs_focus_rules import _unit_problem, focus_violations, mandatory_columns, read_focus_csv
from .runs_world import (
    MAPPING,
    MONTH,
    PERIOD,
    build_mapping,
    build_org,
    build_prices,
    build_run,
    load_usage,
    make_approver,
    scenario_events,
    usage,
)

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "focus"
MANDATORY = mandatory_columns(FIXTURES / "focus_1.2_column_presence.txt")

# The hand-computed scenario plus a fixed monthly fee: support pays the platform team 250.00 a month.
FEE_RULE = """\
  - match: {tenant: helpdesk}
    cost_center: CC-120
    charge_model: fixed_fee
    fixed_fee: "250.00"
    service_owner: CC-100
"""


def build_world(tmp_path, django_user_model, mapping: str = MAPPING) -> AllocationRun:
    return build_run(tmp_path, django_user_model, mapping)


def export(tmp_path) -> tuple[dict, list[str], list[dict]]:
    """Run the command; its JSON report, and the file's header and rows (an empty field read as null)."""
    out = io.StringIO()
    path = tmp_path / "focus.csv"
    call_command("export_focus", "--period", PERIOD, "--out", str(path), stdout=out)
    header, rows = read_focus_csv(path.read_text(encoding="utf-8"))
    return json.loads(out.getvalue()), header, rows


def total(rows: list[dict], column: str = "BilledCost") -> Decimal:
    return sum((Decimal(row[column]) for row in rows), Decimal(0))


def test_export_passes_the_focus_1_2_rules_and_ties_to_the_invoice(tmp_path, django_user_model):
    build_world(tmp_path, django_user_model)
    run = allocation_run_execute(period=MONTH)  # a rerun supersedes the first: only the current run is exported
    report, header, rows = export(tmp_path)

    assert report == {"run": run.pk, "period": PERIOD, "rows": len(rows), "path": str(tmp_path / "focus.csv")}
    assert focus_violations(header, rows, mandatory=MANDATORY) == []
    assert len(MANDATORY) == 21 and set(MANDATORY) <= set(header)
    assert header == list(FOCUS_COLUMNS + X_COLUMNS)
    # One row per allocation line of the current run with an amount or a quantity, and a second row
    # for each share of a purchase: its use this period (EffectiveCost-C-005-C).
    lines = AllocationLine.objects.filter(run=run).exclude(amount=0, quantity=0)
    purchases = lines.filter(category="purchase").exclude(amount=0).count()
    assert len(rows) == lines.count() + purchases == 37 + 3
    assert {row["x_AllocationRunId"] for row in rows} == {str(run.pk)}

    # Every invoice cent, once: the file sums to the run's invoice total, and per InvoiceId to the invoice;
    # EffectiveCost too, with a purchase's cost on its use rather than on the Purchase row.
    for column in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
        assert total(rows, column) == run.invoice_total == Decimal("174.56"), column
    bought = [row for row in rows if row["ChargeCategory"] == "Purchase"]
    used = [row for row in rows if row["ChargeDescription"].endswith(", used this period")]
    assert len(bought) == len(used) == 3
    assert {(row["EffectiveCost"], row["ChargeFrequency"]) for row in bought} == {("0.00", "One-Time")}
    assert {(row["BilledCost"], row["ChargeCategory"], row["ChargeFrequency"]) for row in used} == {
        ("0.00", "Usage", "Usage-Based")
    }
    assert sorted(row["EffectiveCost"] for row in used) == sorted(row["BilledCost"] for row in bought)
    others = [row for row in rows if row not in bought and row not in used]
    assert all(row["EffectiveCost"] == row["ListCost"] == row["ContractedCost"] == row["BilledCost"] for row in others)
    assert {row["InvoiceId"] for row in rows} == {"ACME-2026-10"}
    assert {(row["BillingCurrency"], row["ProviderName"], row["InvoiceIssuerName"]) for row in rows} == {
        ("USD", "Acme AI", "Acme AI")
    }
    assert {(row["BillingPeriodStart"], row["BillingPeriodEnd"]) for row in rows} == {
        ("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z")
    }

    # Unallocated: no cost center, a reason; it adds up to the run's unallocated bucket.
    unallocated = [row for row in rows if row["x_CostCenter"] is None]
    assert all(row["x_UnallocatedReason"] and row["x_AllocationMethod"] == "unallocated" for row in unallocated)
    assert all(row["x_UnallocatedReason"] is None for row in rows if row["x_CostCenter"] is not None)
    assert total(unallocated) == run.unallocated == Decimal("4.44")
    by_reason = defaultdict(Decimal)
    for row in unallocated:
        by_reason[row["x_UnallocatedReason"]] += Decimal(row["BilledCost"])
    assert dict(by_reason) == {"untagged": Decimal("3.33"), "failed_or_moderated": Decimal("1.11")}

    # Showback is reported with its cost and marked; what is charged back is the rest of the allocation.
    per_treatment = defaultdict(Decimal)
    for row in rows:
        per_treatment[row["x_Treatment"]] += Decimal(row["BilledCost"])
    showback = sum(AllocationLine.objects.filter(run=run, treatment="showback").values_list("amount", flat=True))
    assert per_treatment["showback"] == showback != 0
    assert per_treatment["chargeback"] + per_treatment["showback"] == run.allocated
    per_center = defaultdict(Decimal)
    for row in rows:
        per_center[row["x_CostCenter"]] += Decimal(row["BilledCost"])
    assert per_center["CC-110"] == sum(
        AllocationLine.objects.filter(run=run, cost_center__code="CC-110").values_list("amount", flat=True)
    )


def test_rows_say_units_quantities_and_tags_as_focus_does(tmp_path, django_user_model):
    build_world(tmp_path, django_user_model)
    _, _, rows = export(tmp_path)

    def one(**match) -> dict:
        found = [row for row in rows if all(row[key] == value for key, value in match.items())]
        assert len(found) == 1, (match, found)
        return found[0]

    # search's own input tokens: 10M tokens at $1 / 1M, trued up to 10.10.
    direct = one(x_CostCenter="CC-110", x_AllocationMethod="direct", ChargeCategory="Usage", SkuMeter="Input token")
    expected = {
        "BilledCost": "10.10",
        "ChargeClass": None,
        "ChargePeriodStart": "2026-10-01T00:00:00Z",
        "ChargePeriodEnd": "2026-11-01T00:00:00Z",
        "PricingQuantity": "10",
        "PricingUnit": "1000000 Tokens",
        "ConsumedQuantity": "10000000",
        "ConsumedUnit": "Tokens",
        "SkuId": "acme-ai/acme-1/input_token",
        "ServiceCategory": "AI and Machine Learning",
        "ServiceSubcategory": "Generative AI",
        "ServiceName": "Acme AI API",
        "BillingAccountId": "acme-ai",
        "BillingAccountName": None,
        "Tags": '{"environment": "production", "feature": "web", "team": "search"}',
        "x_Team": "search",
        "x_Feature": "web",
        "x_Environment": "production",
        "x_Modality": "text",
        "x_Model": "acme-1",
        "x_Treatment": "chargeback",
        "x_UnallocatedReason": None,
    }
    assert {key: direct[key] for key in expected} == expected
    assert direct["ChargeDescription"] == "Acme AI acme-1 Input token: direct attribution"

    # Its tax: no quantity, unit or SKU (FOCUS asks them null on Tax rows), the cost still there.
    tax = one(
        x_CostCenter="CC-110", x_AllocationMethod="direct", ChargeCategory="Tax", x_Feature="web", BilledCost="1.01"
    )
    assert [tax[c] for c in ("PricingQuantity", "PricingUnit", "ConsumedQuantity", "ConsumedUnit", "SkuId")] == [
        None
    ] * 5

    # The rate-card spread stays on the service owner in tokens, with no tokens of its own.
    spread = one(x_CostCenter="CC-100", x_AllocationMethod="card_spread", ChargeCategory="Usage", x_Feature="embed")
    assert (spread["BilledCost"], spread["PricingQuantity"], spread["ConsumedQuantity"]) == ("-3.92", "0", "0")

    # Untagged usage: unallocated, no tags at all.
    untagged = one(x_UnallocatedReason="untagged", ChargeCategory="Usage")
    assert (untagged["Tags"], untagged["x_Team"], untagged["ConsumedQuantity"]) == (None, None, "3000000")

    # Shared pools: each cost center's share of the pooled charge, shares adding up to the whole charge.
    platform = [row for row in rows if row["SkuId"] == "acme-ai/pool/platform" and row["ChargeCategory"] == "Purchase"]
    assert {(row["x_CostCenter"], row["BilledCost"]) for row in platform} == {
        ("CC-110", "17.00"),
        ("CC-120", "25.00"),
        ("CC-130", "17.00"),
    }
    assert {(row["ChargeCategory"], row["PricingUnit"], row["ConsumedQuantity"]) for row in platform} == {
        ("Purchase", "Units", None)
    }
    assert abs(total(platform, "PricingQuantity") - 1) < Decimal("1e-8")
    vector = [row for row in rows if row["SkuId"] == "acme-ai/pool/vector"]
    assert sorted((row["x_CostCenter"], row["PricingQuantity"], row["ConsumedQuantity"]) for row in vector) == [
        ("CC-110", "0.75", "0.75"),
        ("CC-130", "0.25", "0.25"),
    ]


def test_fixed_fee_transfer_nets_to_zero(tmp_path, django_user_model):
    run = build_world(tmp_path, django_user_model, MAPPING.replace("pools:", FEE_RULE + "pools:"))
    _, header, rows = export(tmp_path)

    assert focus_violations(header, rows, mandatory=MANDATORY) == []
    fee = [row for row in rows if row["x_AllocationMethod"] == "fixed_fee"]
    assert sorted((row["x_CostCenter"], row["BilledCost"], row["PricingQuantity"]) for row in fee) == [
        ("CC-100", "-250.00", "-1"),
        ("CC-120", "250.00", "1"),
    ]
    assert total(fee) == 0
    assert total(rows) == run.invoice_total == Decimal("174.56")
    # An internal transfer: the service owner provides it, on the period's internal invoice (no provider's).
    assert {
        (row["ProviderName"], row["InvoiceIssuerName"], row["InvoiceId"], row["BillingCurrency"], row["PricingUnit"])
        for row in fee
    } == {("Platform", "Platform", "internal:CC-100:2026-10", "USD", "Months")}
    assert {row["ChargeFrequency"] for row in fee} == {"Recurring"}
    assert {row["ChargeDescription"] for row in fee} == {
        "Fixed monthly fee of the Platform AI service (internal transfer)"
    }


def test_usage_no_invoice_stands_for_is_exported_with_its_quantity_and_no_cost(tmp_path, django_user_model):
    """No invoice yet: the run counts the usage with no money; the rows say so, dated by the period,
    on a provisional InvoiceId (InvoiceId-C-006-O: it may be generated before the invoice is issued)."""
    build_org()
    build_prices()
    build_mapping(tmp_path, make_approver(django_user_model))
    load_usage(scenario_events())
    run = allocation_run_execute(period=MONTH)
    _, header, rows = export(tmp_path)

    assert focus_violations(header, rows, mandatory=MANDATORY) == []
    assert rows and total(rows) == run.invoice_total == 0
    assert {(r["InvoiceId"], r["BillingCurrency"], r["BillingAccountId"], r["BillingPeriodStart"]) for r in rows} == {
        ("provisional:acme-ai:2026-10", "USD", "acme-ai", "2026-10-01T00:00:00Z")
    }
    # Every ledger token once, in ConsumedQuantity.
    assert sum(Decimal(row["ConsumedQuantity"]) for row in rows) == sum(
        UsageLine.objects.values_list("quantity", flat=True)
    )


def test_refused_without_a_current_run_and_nothing_written(tmp_path):
    path = tmp_path / "focus.csv"
    with pytest.raises(CommandError, match=r"no_current_run: period 2026-10 has no current allocation run"):
        call_command("export_focus", "--period", PERIOD, "--out", str(path), stdout=io.StringIO())
    with pytest.raises(CommandError, match="invalid_period"):
        call_command("export_focus", "--period", "2026-13", "--out", str(path), stdout=io.StringIO())
    assert list(tmp_path.iterdir()) == []


def test_every_catalog_unit_has_a_focus_unit_in_unit_format():
    assert {unit.code for unit in UNIT_CATALOG} <= set(FOCUS_UNITS)
    for unit in FOCUS_UNITS.values():
        assert _unit_problem(unit.name) is None, unit
        assert _unit_problem(unit.pricing) is None, unit


def test_checker_catches_each_broken_rule(tmp_path, django_user_model):
    """The rules are not vacuous: one broken value per rule in an otherwise clean export."""
    build_world(tmp_path, django_user_model)
    stream = io.StringIO()
    focus_export(period=MONTH, stream=stream)
    header, rows = read_focus_csv(stream.getvalue())
    usage = next(row for row in rows if row["ChargeCategory"] == "Usage" and row["x_AllocationMethod"] == "direct")
    tax = next(row for row in rows if row["ChargeCategory"] == "Tax")
    purchase = next(row for row in rows if row["ChargeCategory"] == "Purchase")
    breaks = [
        (usage, "ChargeFrequency", None, "ChargeFrequency-C-002-M"),
        (usage, "ChargeFrequency", "Monthly", "ChargeFrequency-C-003-M"),
        (purchase, "ChargeFrequency", "Usage-Based", "ChargeFrequency-C-004-C"),
        (purchase, "EffectiveCost", purchase["BilledCost"], "EffectiveCost-C-005-C"),
        (tax, "InvoiceId", None, "InvoiceId-C-005-C"),
        (usage, "ChargeCategory", "usage", "ChargeCategory-C-003-M"),
        (usage, "ChargePeriodStart", "2026-10-01 00:00:00", "ChargePeriodStart-C-002-M, DateTimeFormat-A-003-M"),
        (usage, "BilledCost", "1.01E+1", "BilledCost-C-002-M/-C-004-M, NumericFormat-A-003-M..-011-M"),
        (usage, "BillingCurrency", "usd", "BillingCurrency-C-003-M, CurrencyFormat-A-001-C"),
        (usage, "ServiceSubcategory", "Containers", "ServiceSubcategory-C-004-M"),
        (usage, "PricingUnit", "1000000 tokens", "PricingUnit-C-003-O, UnitFormat-A-001-M..-004-C"),
        (usage, "ConsumedQuantity", None, "ConsumedQuantity-C-006-C"),
        (usage, "SkuId", None, "SkuId-C-005-C"),
        (usage, "Tags", '["team", "search"]', "Tags-C-001-M, KeyValueFormat-A-001-M..-004-M"),
        (usage, "ChargeClass", "Refund", "ChargeClass-C-005-C"),
        (usage, "InvoiceIssuerName", "Reseller Ltd", "BilledCost-C-005-C"),
        (tax, "PricingQuantity", "1", "PricingQuantity-C-004-C"),
        (tax, "ConsumedQuantity", "1", "ConsumedQuantity-C-004-C"),
        (tax, "BillingAccountId", None, "BillingAccountId-C-001-M"),
        (tax, "ServiceName", " ", "NullHandling-A-002-M"),
    ]
    for row, column, value, rule in breaks:
        broken = [dict(r, **{column: value}) if r is row else r for r in rows]
        found = {v.rule for v in focus_violations(header, broken, mandatory=MANDATORY)}
        assert rule in found, (column, value, found)
    header_without = [name for name in header if name != "PricingUnit"]
    rows_without = [{k: v for k, v in row.items() if k != "PricingUnit"} for row in rows]
    found = {(v.column, v.rule) for v in focus_violations(header_without, rows_without, mandatory=MANDATORY)}
    assert ("PricingUnit", "CostAndUsage-D-068-M") in found
    for column, rule in (("ChargeFrequency", "CostAndUsage-D-027-O"), ("InvoiceId", "CostAndUsage-D-033-O")):
        header_without = [name for name in header if name != column]
        rows_without = [{k: v for k, v in row.items() if k != column} for row in rows]
        found = {(v.column, v.rule) for v in focus_violations(header_without, rows_without, mandatory=MANDATORY)}
        assert (column, rule) in found
    renamed = [name if name != "x_Team" else "Team" for name in header]
    found = {(v.column, v.rule) for v in focus_violations(renamed, rows, mandatory=MANDATORY)}
    assert ("Team", "ColumnHandling-A-010-M") in found


def test_usage_no_price_book_prices_stands_on_its_providers_invoice(tmp_path, django_user_model):
    """An unpriced line carries no invoice of its own; its row names the provider's one invoice of the run."""
    gpu = usage("gpu-1", "gpu_second", 60, team="search", feature="web", environment="production")
    build_run(tmp_path, django_user_model, extra_events=(gpu,))
    _, header, rows = export(tmp_path)

    assert focus_violations(header, rows, mandatory=MANDATORY) == []
    gpu_rows = [row for row in rows if row["ConsumedUnit"] == "Seconds"]
    assert {
        (row["InvoiceId"], row["BilledCost"], row["ConsumedQuantity"], row["x_UnallocatedReason"]) for row in gpu_rows
    } == {("ACME-2026-10", "0.00", "60", "unpriced")}
    assert {row["InvoiceId"] for row in rows} == {"ACME-2026-10"}
