"""Hostile invoice files: every value a line cannot hold costs that line, never the load.

Each case names the input and what it gets: a rejection with line, field and
reason while the file's good lines are kept; a file refused whole only when
it cannot be read at all; a load that fails writes nothing. The property test
feeds generated hostile rows to every format.
"""

import csv
import io
import json
import tempfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocation.models import InvoiceBatch, InvoiceLine, InvoiceRejection, ProviderInvoice
from allocation.services.invoices import ingest
from allocation.services.invoices.ingest import invoice_ingest_file
from pricing.errors import ApplicationError

from .test_invoices import CSV_HEADER, write

pytestmark = pytest.mark.django_db

GOOD_CSV_ROW = "INV-1,,2026-10-01,2026-10-02,usage,good,,,,1.10,,,USD"
FOCUS_HEADER = (
    "BilledCost,EffectiveCost,ListCost,ChargeCategory,ChargeDescription,SkuId,ConsumedQuantity,ConsumedUnit,"
    "ChargePeriodStart,ChargePeriodEnd,BillingPeriodStart,BillingPeriodEnd,BillingCurrency,InvoiceId,"
    "ProviderName,BillingAccountId,SubAccountId"
)
FOCUS_GOOD = {
    "BilledCost": "2.5",
    "EffectiveCost": "2.5",
    "ListCost": "NULL",
    "ChargeCategory": "Usage",
    "ChargeDescription": "GPU hours",
    "SkuId": "good",
    "ConsumedQuantity": "1",
    "ConsumedUnit": "Hours",
    "ChargePeriodStart": "2026-10-01T00:00:00Z",
    "ChargePeriodEnd": "2026-10-02T00:00:00Z",
    "BillingPeriodStart": "2026-10-01T00:00:00Z",
    "BillingPeriodEnd": "2026-11-01T00:00:00Z",
    "BillingCurrency": "USD",
    "InvoiceId": "INV-9",
    "ProviderName": "Cloud",
    "BillingAccountId": "acct-1",
    "SubAccountId": "sub-1",
}


def outcome(batch: InvoiceBatch) -> list[tuple[int, str, str]]:
    return list(batch.rejections.order_by("line", "id").values_list("line", "field", "reason"))


def assert_kept_the_good_line(batch: InvoiceBatch, sku: str = "good") -> None:
    assert batch.status == "completed", batch.error
    assert batch.rows_read == batch.inserted + batch.duplicate + batch.rejected
    assert InvoiceLine.objects.filter(batch=batch, sku=sku).count() == 1


# -- our CSV ------------------------------------------------------------------------------------------------------

# (what, the row, the field rejected, words of the reason)
CSV_HOSTILE = [
    (
        "a 30-digit amount",
        "INV-1,,2026-10-01,2026-10-02,usage,s,,,,123456789012345678901234567890,,,USD",
        "billed_cost",
        "amount too large",
    ),
    (
        "an amount that rounds up past the column",
        "INV-1,,2026-10-01,2026-10-02,usage,s,,,,99999999999999999.9999999999999,,,USD",
        "billed_cost",
        "amount too large",
    ),
    (
        "an exponent beyond any column",
        "INV-1,,2026-10-01,2026-10-02,usage,s,,,,1e999999999,,,USD",
        "billed_cost",
        "amount too large",
    ),
    ("a 25-digit quantity", "INV-1,,2026-10-01,2026-10-02,usage,s,,,1e25,5,,,USD", "quantity", "quantity too large"),
    ("Arabic-Indic digits", "INV-1,,2026-10-01,2026-10-02,usage,s,,,,١٢.٥,,,USD", "billed_cost", "digits must be 0-9"),
    (
        "full-width digits",
        "INV-1,,2026-10-01,2026-10-02,usage,s,,,,5,１２,,USD",
        "effective_cost",
        "digits must be 0-9",
    ),
    ("a superscript digit", "INV-1,,2026-10-01,2026-10-02,usage,s,,,²,5,,,USD", "quantity", "not a number"),
    (
        "a time that is in the year 10000 in UTC",
        "INV-1,,9999-12-31T23:00:00-05:00,2026-10-02,usage,s,,,,5,,,USD",
        "charge_period_start",
        "out of range",
    ),
    (
        "a time before year 1 in UTC",
        "INV-1,,0001-01-01T00:00:00+01:00,2026-10-02,usage,s,,,,5,,,USD",
        "charge_period_start",
        "out of range",
    ),
    (
        "a charge in December 9999 (no month after it)",
        "INV-1,,9999-12-15,9999-12-16,usage,s,,,,5,,,USD",
        "charge_period_start",
        "out of range",
    ),
    ("a time before 1900", "INV-1,,1899-12-31,2026-10-02,usage,s,,,,5,,,USD", "charge_period_start", "out of range"),
    (
        "a date in Arabic-Indic digits",
        "INV-1,,٢٠٢٦-١٠-٠١,2026-10-02,usage,s,,,,5,,,USD",
        "charge_period_start",
        "not an ISO 8601",
    ),
    ("a NUL in a description", "INV-1,,2026-10-01,2026-10-02,usage,s,a\x00b,,,5,,,USD", "description", "NUL"),
    ("a NUL in an invoice id", "INV\x00-1,,2026-10-01,2026-10-02,usage,s,,,,5,,,USD", "invoice_id", "NUL"),
    ("one field too many", "INV-1,,2026-10-01,2026-10-02,usage,s,,,,5,,,USD,extra", "(row)", "more fields"),
    ("one field too few", "INV-1,,2026-10-01,2026-10-02,usage,s,,,,5,,", "(row)", "fewer fields"),
    (
        "an SKU over its column",
        "INV-1,,2026-10-01,2026-10-02,usage," + "s" * 300 + ",,,,5,,,USD",
        "sku",
        "longer than 255",
    ),
]


@pytest.mark.parametrize(("what", "row", "field", "reason"), CSV_HOSTILE, ids=[c[0] for c in CSV_HOSTILE])
def test_our_csv_hostile_value_costs_only_its_row(tmp_path, what, row, field, reason):
    text = CSV_HEADER + GOOD_CSV_ROW + "\n" + row + "\n" + GOOD_CSV_ROW.replace("good", "good-after") + "\n"
    batch = invoice_ingest_file(path=write(tmp_path, "h.csv", text), source_format="csv", provider="p")
    assert_kept_the_good_line(batch)
    assert_kept_the_good_line(batch, "good-after")
    [(line, rejected_field, rejected_reason)] = outcome(batch)
    assert (line, rejected_field) == (3, field)
    assert reason in rejected_reason
    assert (batch.rows_read, batch.inserted, batch.rejected) == (3, 2, 1)


@pytest.mark.parametrize(
    ("billed", "quantity", "figures"),
    [
        ("12345678901234567.5", "", "12345678901234567.5|12345678901234567.5||"),
        ("5", "12345678901234.5", "5|5||12345678901234.5"),
        ("-0.00", "", "0|0||"),
        ("1e-999999999", "", "0|0||"),
    ],
    ids=["17 digits before the point", "a 14-digit quantity", "negative zero", "an exponent far below a cent"],
)
def test_our_csv_long_but_holdable_figures_are_kept(tmp_path, billed, quantity, figures):
    """Amounts below 10^17 and quantities below 10^20 used to raise InvalidOperation when rounded."""
    row = f"INV-1,,2026-10-01,2026-10-02,usage,s,,,{quantity},{billed},,,USD\n"
    batch = invoice_ingest_file(path=write(tmp_path, "ok.csv", CSV_HEADER + row), source_format="csv", provider="p")
    assert (batch.status, batch.inserted, batch.rejected) == ("completed", 1, 0)
    line = InvoiceLine.objects.get()  # read back: SQLite's float read-back no longer overflows the column
    assert line.figures == figures
    exact = Decimal(figures.split("|")[0])
    assert abs(line.billed_cost - exact) <= abs(exact) * Decimal("1e-14")  # SQLite keeps 15 significant digits


def test_our_csv_field_beyond_the_csv_size_limit_costs_its_row(tmp_path):
    row = "INV-1,,2026-10-01,2026-10-02,usage,s," + "x" * 200_000 + ",,,5,,,USD"
    text = CSV_HEADER + GOOD_CSV_ROW + "\n" + row + "\n" + GOOD_CSV_ROW.replace("good", "good-after") + "\n"
    batch = invoice_ingest_file(path=write(tmp_path, "wide.csv", text), source_format="csv", provider="p")
    assert_kept_the_good_line(batch)
    assert_kept_the_good_line(batch, "good-after")
    [(line, field, reason)] = outcome(batch)
    assert (line, field) == (3, "(row)") and "field larger than field limit" in reason


# -- FOCUS --------------------------------------------------------------------------------------------------------


def focus_file(tmp_path: Path, *rows: dict | list) -> Path:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FOCUS_HEADER.split(","))
    for row in rows:
        writer.writerow(row if isinstance(row, list) else [row[c] for c in FOCUS_HEADER.split(",")])
    return write(tmp_path, "focus.csv", out.getvalue())


FOCUS_HOSTILE = [
    ("one field too many", [*FOCUS_GOOD.values(), "surplus"], "(row)", "more fields"),
    ("a 30-digit BilledCost", FOCUS_GOOD | {"BilledCost": "9" * 30}, "BilledCost", "amount too large"),
    ("a BilledCost in Devanagari digits", FOCUS_GOOD | {"BilledCost": "१२"}, "BilledCost", "digits must be 0-9"),
    (
        "a ChargePeriodEnd past the year 9999",
        FOCUS_GOOD | {"ChargePeriodEnd": "9999-12-31T23:30:00-01:00"},
        "ChargePeriodEnd",
        "out of range",
    ),
    (
        "a BillingPeriodStart in the year 1",
        FOCUS_GOOD | {"BillingPeriodStart": "0001-01-01T00:00:00Z"},
        "BillingPeriodStart",
        "out of range",
    ),
    ("a NUL in ProviderName", FOCUS_GOOD | {"ProviderName": "Cl\x00ud"}, "ProviderName", "NUL"),
    ("a NUL in ChargeDescription", FOCUS_GOOD | {"ChargeDescription": "\x00"}, "ChargeDescription", "NUL"),
    (
        "a 25-digit ConsumedQuantity",
        FOCUS_GOOD | {"ConsumedQuantity": "1" * 25},
        "ConsumedQuantity",
        "quantity too large",
    ),
]


@pytest.mark.parametrize(("what", "row", "field", "reason"), FOCUS_HOSTILE, ids=[c[0] for c in FOCUS_HOSTILE])
def test_focus_hostile_value_costs_only_its_row(tmp_path, what, row, field, reason):
    path = focus_file(tmp_path, FOCUS_GOOD, row, FOCUS_GOOD | {"SkuId": "good-after"})
    batch = invoice_ingest_file(path=path, source_format="focus", provider="cloud")
    assert_kept_the_good_line(batch)
    assert_kept_the_good_line(batch, "good-after")
    [(line, rejected_field, rejected_reason)] = outcome(batch)
    assert (line, rejected_field) == (3, field)
    assert reason in rejected_reason


# -- OpenAI and Anthropic cost pages ------------------------------------------------------------------------------

OPENAI_GOOD = {"object": "organization.costs.result", "amount": {"value": 0.5, "currency": "usd"}, "line_item": "good"}
DAY = 1_730_419_200  # 2024-11-01


def openai_file(tmp_path: Path, hostile: dict, *, bucket: dict | None = None, raw: str | None = None) -> Path:
    page = {
        "object": "page",
        "data": [
            {"start_time": DAY, "end_time": DAY + 86_400, "results": [OPENAI_GOOD]},
            (bucket or {"start_time": DAY, "end_time": DAY + 86_400}) | {"results": [hostile]},
            {"start_time": DAY, "end_time": DAY + 86_400, "results": [OPENAI_GOOD | {"line_item": "good-after"}]},
        ],
    }
    text = json.dumps(page)
    if raw is not None:
        text = text.replace('"__RAW__"', raw)
    return write(tmp_path, "costs.json", text)


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


OPENAI_HOSTILE = [
    (
        "a 5000-digit amount (Python will not read it as int)",
        OPENAI_GOOD | {"amount": {"value": "__RAW__", "currency": "usd"}},
        None,
        "9" * 5000,
        "data[1].results[0].amount.value",
        "amount too large",
    ),
    (
        "an amount of 1e400 (inf as a float)",
        OPENAI_GOOD | {"amount": {"value": "__RAW__", "currency": "usd"}},
        None,
        "1e400",
        "data[1].results[0].amount.value",
        "not a finite number",
    ),
    (
        "an amount that is true",
        OPENAI_GOOD | {"amount": {"value": True, "currency": "usd"}},
        None,
        None,
        "data[1].results[0].amount.value",
        "not a number",
    ),
    (
        "a result nested 40 levels deep",
        OPENAI_GOOD | {"line_item": nested(40)},
        None,
        None,
        "data[1].results[0]",
        "nested deeper than 32",
    ),
    (
        "a line item that is an object",
        OPENAI_GOOD | {"line_item": {"a": 1}},
        None,
        None,
        "data[1].results[0].line_item",
        "not text",
    ),
    (
        "a lone surrogate in a line item",
        OPENAI_GOOD | {"line_item": "\ud800"},
        None,
        None,
        "data[1].results[0].line_item",
        "lone surrogate",
    ),
    (
        "a NUL in a project id",
        OPENAI_GOOD | {"project_id": "p\x00"},
        None,
        None,
        "data[1].results[0].project_id",
        "NUL",
    ),
    (
        "a project id that is a 300-digit number",
        OPENAI_GOOD | {"project_id": "__RAW__"},
        None,
        "1" * 300,
        "data[1].results[0].project_id",
        "longer than 255",
    ),
    (
        "a start time in superscript digits",
        OPENAI_GOOD,
        {"start_time": "²"},
        None,
        "data[1].start_time",
        "not a whole number",
    ),
    (
        "a start time past the year 9999",
        OPENAI_GOOD,
        {"start_time": 10**15},
        None,
        "data[1].start_time",
        "out of range",
    ),
    ("a start time of 10^30", OPENAI_GOOD, {"start_time": 10**30}, None, "data[1].start_time", "out of range"),
    ("a start time that is null", OPENAI_GOOD, {"start_time": None}, None, "data[1].start_time", "missing"),
    (
        "a start time that is a list",
        OPENAI_GOOD,
        {"start_time": [DAY]},
        None,
        "data[1].start_time",
        "not a whole number",
    ),
    (
        "a 25-digit quantity",
        OPENAI_GOOD | {"quantity": 10**25},
        None,
        None,
        "data[1].results[0].quantity",
        "quantity too large",
    ),
]


@pytest.mark.parametrize(
    ("what", "result", "bucket", "raw", "field", "reason"), OPENAI_HOSTILE, ids=[c[0] for c in OPENAI_HOSTILE]
)
def test_openai_costs_hostile_value_costs_only_its_result(tmp_path, what, result, bucket, raw, field, reason):
    batch = invoice_ingest_file(
        path=openai_file(tmp_path, result, bucket=bucket, raw=raw), source_format="openai-costs", provider="openai"
    )
    assert_kept_the_good_line(batch)
    assert_kept_the_good_line(batch, "good-after")
    [(line, rejected_field, rejected_reason)] = outcome(batch)
    assert (line, rejected_field) == (2, field)
    assert reason in rejected_reason


ANTHROPIC_GOOD = {"currency": "USD", "amount": "50", "cost_type": "tokens", "token_type": "good"}


def anthropic_file(tmp_path: Path, hostile: dict, bucket: dict | None = None) -> Path:
    day = {"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z"}
    page = {
        "data": [
            day | {"results": [ANTHROPIC_GOOD]},
            (bucket or day) | {"results": [hostile]},
            day | {"results": [ANTHROPIC_GOOD | {"token_type": "good-after"}]},
        ]
    }
    return write(tmp_path, "cost_report.json", json.dumps(page))


ANTHROPIC_HOSTILE = [
    ("cents of 10^30", ANTHROPIC_GOOD | {"amount": "1e30"}, None, "data[1].results[0].amount", "amount too large"),
    (
        "cents in Arabic-Indic digits",
        ANTHROPIC_GOOD | {"amount": "١٢٣"},
        None,
        "data[1].results[0].amount",
        "digits must be 0-9",
    ),
    ("cents as NaN", ANTHROPIC_GOOD | {"amount": "NaN"}, None, "data[1].results[0].amount", "not a finite number"),
    ("a NUL in a description", ANTHROPIC_GOOD | {"description": "\x00"}, None, "data[1].results[0].description", "NUL"),
    ("a model that is a list", ANTHROPIC_GOOD | {"model": ["claude"]}, None, "data[1].results[0].model", "not text"),
    (
        "a bucket ending past the year 9999",
        ANTHROPIC_GOOD,
        {"starting_at": "2025-08-01T00:00:00Z", "ending_at": "9999-12-31T23:59:59-01:00"},
        "data[1].ending_at",
        "out of range",
    ),
    (
        "a bucket starting in year 1",
        ANTHROPIC_GOOD,
        {"starting_at": "0001-01-01T00:00:00+01:00", "ending_at": "2025-08-02T00:00:00Z"},
        "data[1].starting_at",
        "out of range",
    ),
]


@pytest.mark.parametrize(
    ("what", "result", "bucket", "field", "reason"), ANTHROPIC_HOSTILE, ids=[c[0] for c in ANTHROPIC_HOSTILE]
)
def test_anthropic_costs_hostile_value_costs_only_its_result(tmp_path, what, result, bucket, field, reason):
    batch = invoice_ingest_file(
        path=anthropic_file(tmp_path, result, bucket), source_format="anthropic-costs", provider="anthropic"
    )
    assert_kept_the_good_line(batch, "tokens/good")
    assert_kept_the_good_line(batch, "tokens/good-after")
    [(line, rejected_field, rejected_reason)] = outcome(batch)
    assert (line, rejected_field) == (2, field)
    assert reason in rejected_reason


# -- whole files --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source_format", ["openai-costs", "anthropic-costs"])
@pytest.mark.parametrize("layout", ["one document", "JSON lines"])
def test_json_nested_too_deeply_to_read_is_refused_whole(tmp_path, source_format, layout):
    deep = "[" * 100_000 + "]" * 100_000
    text = deep if layout == "one document" else json.dumps({"data": []}) + "\n" + deep + "\n"
    batch = invoice_ingest_file(path=write(tmp_path, "deep.json", text), source_format=source_format, provider="p")
    assert batch.status == "refused" and "nested too deeply to read" in batch.error
    assert not InvoiceLine.objects.exists() and not ProviderInvoice.objects.exists()


@pytest.mark.parametrize("fail_at", ["lines", "rejections", "counts"])
def test_a_load_that_fails_part_way_leaves_nothing_behind(tmp_path, monkeypatch, fail_at):
    """The parse is whole before anything is written, and the writing is one transaction."""
    rows = GOOD_CSV_ROW + "\n" + CSV_HOSTILE[0][1] + "\n"
    path = write(tmp_path, "h.csv", CSV_HEADER + rows)
    invoice_ingest_file(path=path, source_format="csv", provider="p")  # an invoice already held, with its line
    restating = write(tmp_path, "restated.csv", CSV_HEADER + rows.replace("1.10", "2.20") + "INV-2" + rows[5:])

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    if fail_at == "counts":  # the last write: after the lines, rejections and the batch's invoices
        monkeypatch.setattr(ingest, "F", broken)
    else:
        manager = {"lines": InvoiceLine.objects, "rejections": InvoiceRejection.objects}[fail_at]
        monkeypatch.setattr(manager, "bulk_create", broken)
    held = list(InvoiceLine.objects.values_list("pk", "figures"))
    with pytest.raises(RuntimeError):
        invoice_ingest_file(path=restating, source_format="csv", provider="p")
    monkeypatch.undo()

    failed = InvoiceBatch.objects.order_by("pk").last()
    assert failed.status == "failed" and "the database went away" in failed.error
    assert (failed.rows_read, failed.inserted, failed.rejected) == (0, 0, 0)
    assert list(InvoiceLine.objects.values_list("pk", "figures")) == held
    assert not InvoiceLine.objects.filter(batch=failed).exists()
    assert not failed.rejections.exists() and not failed.invoices.exists()
    assert list(ProviderInvoice.objects.values_list("invoice_id", flat=True)) == ["INV-1"]


# -- generated hostile rows, every format -------------------------------------------------------------------------

HOSTILE_TEXT = [
    "",
    " ",
    "NULL",
    "null",
    "NaN",
    "-NaN",
    "sNaN",
    "Infinity",
    "-inf",
    "1e999999999",
    "-1e999999999",
    "1e-999999999",
    "9" * 30,
    "-" + "9" * 30,
    "99999999999999999.9999999999999",
    "12345678901234567.5",
    "-0",
    "1_000",
    "١٢.٥",
    "１２",
    "²",
    "Ⅻ",
    "0x1F",
    "1,5",
    " 12.50 ",
    "+12.5",
    "\x00",
    "a\x00b",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-15",
    "1899-12-31",
    "2026-02-30",
    "2026-10-01T24:00:00",
    "٢٠٢٦-١٠-٠١",
    "2026-10-01T00:00:00+25:00",
    "x" * 300,
    "\u202e",
    "\ufeff",
    "😀",
    "\n",
    "\r",
    '"',
    ",",
    "usage",
    "USD",
    "eur",
]
OFFSETS = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60 - 59, 23 * 60 + 59))
hostile_text = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=12),
    st.text(alphabet=st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=6),
    st.integers(1, 60).map(lambda n: "9" * n),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS).map(
        datetime.isoformat
    ),
)


def maybe_hostile(good: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(good, good, hostile_text)


MONEY = st.decimals(min_value=-1000, max_value=1000, places=4, allow_nan=False).map(str)
CSV_ROW = st.fixed_dictionaries(
    {
        "invoice_id": maybe_hostile(st.sampled_from(["INV-1", "INV-2"])),
        "provider": maybe_hostile(st.sampled_from(["", "p", "P"])),
        "charge_period_start": maybe_hostile(st.sampled_from(["2026-10-01", "2026-10-02T00:00:00Z"])),
        "charge_period_end": maybe_hostile(st.sampled_from(["2026-10-05", "2026-10-31T23:59:59+00:00"])),
        "charge_category": maybe_hostile(st.sampled_from(["usage", "Tax", "credit"])),
        "sku": maybe_hostile(st.sampled_from(["a", "b"])),
        "description": maybe_hostile(st.just("")),
        "unit": maybe_hostile(st.just("tokens")),
        "quantity": maybe_hostile(st.sampled_from(["", "10", "0.5"])),
        "billed_cost": maybe_hostile(MONEY),
        "effective_cost": maybe_hostile(st.one_of(st.just(""), MONEY)),
        "list_cost": maybe_hostile(st.just("")),
        "currency": maybe_hostile(st.sampled_from(["USD", "usd"])),
    }
)
FOCUS_ROW = st.fixed_dictionaries(
    {name: maybe_hostile(st.just(value)) for name, value in (FOCUS_GOOD | {"SkuId": "h", "InvoiceId": "INV-H"}).items()}
    | {"BilledCost": maybe_hostile(MONEY), "EffectiveCost": maybe_hostile(MONEY)}
)
# How many fields a CSV row has against its header: mostly right, sometimes fewer or more.
FIELD_COUNT_CHANGE = st.sampled_from([0, 0, 0, 0, -1, -3, 1, 2])

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**25, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.sampled_from([*HOSTILE_TEXT, "\ud800", "a\udfffb", "__HUGE__"]),
)
json_value = st.one_of(
    st.recursive(
        json_scalar,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
        max_leaves=8,
    ),
    st.integers(30, 80).map(nested),
)


def maybe_hostile_json(good: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(good, good, json_value)


OPENAI_RESULT = st.one_of(
    st.fixed_dictionaries(
        {
            "object": maybe_hostile_json(st.just("organization.costs.result")),
            "amount": maybe_hostile_json(
                st.fixed_dictionaries(
                    {
                        "value": maybe_hostile_json(st.floats(0, 1000) | MONEY),
                        "currency": maybe_hostile_json(st.sampled_from(["usd", "USD"])),
                    }
                )
            ),
            "line_item": maybe_hostile_json(st.sampled_from(["gpt-4o, input", "gpt-4o, output"])),
            "project_id": maybe_hostile_json(st.sampled_from(["proj_1", None])),
            "quantity": maybe_hostile_json(st.sampled_from([None, 1000, 2.5])),
        }
    ),
    json_value,
)
OPENAI_BUCKET = st.fixed_dictionaries(
    {
        "start_time": maybe_hostile_json(st.integers(DAY, DAY + 40 * 86_400)),
        "end_time": maybe_hostile_json(st.just(None) | st.integers(DAY, DAY + 41 * 86_400)),
        "results": st.lists(OPENAI_RESULT, max_size=4),
    }
)
ANTHROPIC_RESULT = st.one_of(
    st.fixed_dictionaries(
        {
            "currency": maybe_hostile_json(st.just("USD")),
            "amount": maybe_hostile_json(MONEY),
            "cost_type": maybe_hostile_json(st.just("tokens")),
            "token_type": maybe_hostile_json(st.sampled_from(["uncached_input_tokens", "output_tokens"])),
            "description": maybe_hostile_json(st.just("Claude usage")),
            "model": maybe_hostile_json(st.sampled_from(["claude-sonnet-4", None])),
            "workspace_id": maybe_hostile_json(st.sampled_from(["wrkspc_1", None])),
        }
    ),
    json_value,
)
ANTHROPIC_BUCKET = st.fixed_dictionaries(
    {
        "starting_at": maybe_hostile_json(st.sampled_from(["2025-08-01T00:00:00Z", "2025-08-02T00:00:00+00:00"])),
        "ending_at": maybe_hostile_json(st.sampled_from(["2025-08-02T00:00:00Z", "2025-08-03T00:00:00Z"])),
        "results": st.lists(ANTHROPIC_RESULT, max_size=4),
    }
)


def csv_text(header: list[str], good: list[dict], rows: list[tuple[dict, int]]) -> tuple[str, int]:
    out = io.StringIO()
    writer = csv.writer(out)  # \r\n ends a row, so a \r or \n in a value is quoted
    writer.writerow(header)
    for row in good:
        writer.writerow([row[c] for c in header])
    for row, change in rows:
        values = [row[c] for c in header]
        values = values[: len(values) + change] if change < 0 else values + ["surplus"] * change
        writer.writerow(values)
    return out.getvalue(), len(good) + len(rows)


def json_text(pages: list[dict]) -> str:
    # A JSON integer longer than Python will make an int of, which json.dumps cannot write.
    return json.dumps(pages).replace('"__HUGE__"', "9" * 5000)


@st.composite
def hostile_files(draw, source_format: str) -> tuple[str, int, list[str]]:
    """(file text, records in it, SKUs of the good records, which come first)."""
    goods = draw(st.integers(0, 2))
    if source_format == "csv":
        header = CSV_HEADER.strip().split(",")
        good = [
            dict(zip(header, GOOD_CSV_ROW.replace("INV-1", "INV-GOOD").split(","), strict=True)) | {"sku": f"good-{n}"}
            for n in range(goods)
        ]
        rows = draw(st.lists(st.tuples(CSV_ROW, FIELD_COUNT_CHANGE), max_size=8))
        text, count = csv_text(header, good, rows)
        return text, count, [f"good-{n}" for n in range(goods)]
    if source_format == "focus":
        header = FOCUS_HEADER.split(",")
        good = [FOCUS_GOOD | {"SkuId": f"good-{n}"} for n in range(goods)]
        rows = draw(st.lists(st.tuples(FOCUS_ROW, FIELD_COUNT_CHANGE), max_size=8))
        text, count = csv_text(header, good, rows)
        return text, count, [f"good-{n}" for n in range(goods)]
    if source_format == "openai-costs":
        good_bucket = {
            "start_time": DAY,
            "end_time": DAY + 86_400,
            "results": [OPENAI_GOOD | {"line_item": f"good-{n}"} for n in range(goods)],
        }
        buckets = [good_bucket, *draw(st.lists(OPENAI_BUCKET, max_size=3))]
        pages = {"object": "page", "data": buckets}
        return json_text(pages), sum(len(b["results"]) for b in buckets), [f"good-{n}" for n in range(goods)]
    good_bucket = {
        "starting_at": "2025-08-01T00:00:00Z",
        "ending_at": "2025-08-02T00:00:00Z",
        "results": [ANTHROPIC_GOOD | {"token_type": f"good-{n}"} for n in range(goods)],
    }
    buckets = [good_bucket, *draw(st.lists(ANTHROPIC_BUCKET, max_size=3))]
    skus = [f"tokens/good-{n}" for n in range(goods)]
    return json_text({"data": buckets}), sum(len(b["results"]) for b in buckets), skus


def ingest_text(text: str, source_format: str, provider: str) -> InvoiceBatch:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "hostile.txt"
        path.write_text(text, encoding="utf-8")
        try:
            return invoice_ingest_file(path=path, source_format=source_format, provider=provider)
        except ApplicationError:
            pytest.fail("a well-formed file of hostile rows is read, not refused with an error")


def check_batch(batch: InvoiceBatch, records: int) -> None:
    assert batch.status == "completed", batch.error
    assert batch.rows_read == records
    assert batch.rows_read == batch.inserted + batch.duplicate + batch.rejected
    written = InvoiceLine.objects.filter(batch=batch)
    assert written.exclude(entry="reversal").count() == batch.inserted
    assert written.filter(entry="reversal").count() == batch.restated
    assert batch.rejections.count() == batch.rejected
    for line, field, reason in batch.rejections.values_list("line", "field", "reason"):
        assert line >= 1 and field and reason


@pytest.mark.parametrize(
    ("source_format", "provider"),
    [("csv", "p"), ("focus", "cloud"), ("openai-costs", "openai"), ("anthropic-costs", "anthropic")],
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_hostile_rows_cost_only_themselves(source_format, provider, data):
    """Whatever the rows hold, only the project's own errors could escape (none does, for a
    file in its format), every row is accounted for, the invoices hold exactly the inserted
    lines, the good rows are kept, and the same file again is all duplicates."""
    text, records, good_skus = data.draw(hostile_files(source_format))
    with transaction.atomic():
        first = ingest_text(text, source_format, provider)
        check_batch(first, records)
        assert first.duplicate == 0 and first.restated == 0  # nothing held before
        for sku in good_skus:
            assert InvoiceLine.objects.filter(batch=first, sku=sku).count() == 1
        held = list(InvoiceLine.objects.order_by("pk").values_list("pk", "figures"))

        again = ingest_text(text, source_format, provider)
        check_batch(again, records)
        assert (again.inserted, again.duplicate, again.rejected) == (0, first.inserted, first.rejected)
        assert list(InvoiceLine.objects.order_by("pk").values_list("pk", "figures")) == held
        transaction.set_rollback(True)  # each example starts from an empty ledger


def test_a_rejected_row_is_kept_as_ascii_json_whatever_it_holds(tmp_path):
    """So a NUL (which PostgreSQL refuses in text) or any character in it is stored."""
    row = "INV-1,,9999-12-31T23:00:00-05:00,2026-10-02,usage,s\x00😀,,,,5,,,USD\n"
    batch = invoice_ingest_file(path=write(tmp_path, "r.csv", CSV_HEADER + row), source_format="csv", provider="p")
    rejection = batch.rejections.get()
    assert rejection.field == "sku"
    assert rejection.raw.isascii() and "\\u0000" in rejection.raw
