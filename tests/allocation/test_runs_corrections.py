"""Late data for a closed period becomes a correction in the next open one, never a rewrite.

The hand-computed October (runs_world) is allocated and closed; then usage, a restated
provider bucket or a provider credit reaches October. November's run books the
difference as a correction: its lines are what October's allocation now is, less the
closed run and the corrections booked before. Each test proves that against the engine
itself: October reopened and run afresh lands, key by key, on the closed run plus its
corrections.
"""

import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from allocation.access import CostCenterScope
from allocation.choices import AllocationRunStatus
from allocation.models import AllocationLine, AllocationRun, CostCenter, RatingRun
from allocation.selectors.runs import (
    correction_lines,
    correction_runs_booked_in,
    correction_runs_of,
    correction_summary,
    period_is_closed,
    period_next_open,
)
from allocation.services.invoices.ingest import invoice_ingest_file
from allocation.services.ledger import usage_ingest_file
from allocation.services.runs.corrections import CORRECTION_KEY, allocation_corrections_book
from allocation.services.runs.focus_export import focus_export
from allocation.services.runs.run import PeriodClosed, allocation_run_close, allocation_run_execute
from pricing.errors import NotAllowed, ValidationFailed
from pricing.models import AiModel, Provider
from pricing.periods import Period
from pricing.services.price_books import price_book_load_file

from .runs_focus_rules import focus_violations, mandatory_columns, read_focus_csv
from .runs_world import MAPPING, MONTH, build_run, invoice_csv, load_usage, usage

pytestmark = pytest.mark.django_db

NOVEMBER = Period(2026, 11)
# A goodwill credit of 5.00 on October's Acme invoice, ingested after the close.
CREDIT = (
    "ACME-2026-10,acme-ai,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,"
    "credit,goodwill,Goodwill credit,,,-5.00,-5.00,,USD\n"
)
DECEMBER = Period(2026, 12)
WEB = {"team": "search", "feature": "web", "environment": "production"}
FOCUS_MANDATORY = mandatory_columns(
    Path(__file__).resolve().parent.parent / "fixtures" / "focus" / "focus_1.2_column_presence.txt"
)


@pytest.fixture
def closed(tmp_path, django_user_model):
    """October allocated and closed (a statement from its run was approved)."""
    run = build_run(tmp_path, django_user_model)
    return allocation_run_close(run=run)


def keyed(runs) -> dict[tuple, Decimal]:
    """Money per line key over runs, zero sums left out."""
    totals: dict[tuple, Decimal] = defaultdict(Decimal)
    for row in AllocationLine.objects.filter(run__in=list(runs)).values(*CORRECTION_KEY, "amount"):
        totals[tuple(row[field] for field in CORRECTION_KEY)] += row["amount"]
    return {key: amount for key, amount in totals.items() if amount}


def snapshot(run: AllocationRun) -> tuple:
    run.refresh_from_db()
    lines = sorted(AllocationLine.objects.filter(run=run).values_list("pk", "amount", "quantity", "cost_center_id"))
    return run.fingerprint, run.status, run.invoice_total, run.allocated, run.unallocated, lines


def by_center(run: AllocationRun) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in AllocationLine.objects.filter(run=run).select_related("cost_center"):
        totals[line.cost_center.code if line.cost_center else f"unallocated:{line.reason}"] += line.amount
    return {key: amount for key, amount in totals.items() if amount}


def assert_ties(correction: AllocationRun) -> None:
    lines = AllocationLine.objects.filter(run=correction)
    assert correction.allocated + correction.unallocated == correction.invoice_total
    assert sum((x.amount for x in lines if x.cost_center_id), Decimal(0)) == correction.allocated
    assert sum((x.amount for x in lines if not x.cost_center_id), Decimal(0)) == correction.unallocated
    assert not lines.filter(amount=0, quantity=0, line_count=0).exists()


def assert_equals_a_fresh_run(closed_run: AllocationRun) -> None:
    """October reopened and allocated again lands on the closed run plus its corrections, key by key."""
    corrections = list(correction_runs_of(run=closed_run))
    booked = keyed([closed_run, *corrections])
    totals = [
        sum((getattr(r, field) for r in [closed_run, *corrections]), Decimal(0))
        for field in ("invoice_total", "allocated", "unallocated")
    ]
    AllocationRun.objects.filter(pk=closed_run.pk).update(closed_at=None)
    fresh = allocation_run_execute(period=MONTH)
    assert keyed([fresh]) == booked
    assert [fresh.invoice_total, fresh.allocated, fresh.unallocated] == totals


def test_a_late_usage_batch_is_booked_in_the_next_period_as_exactly_the_difference(closed):
    before = snapshot(closed)
    # 2M more input tokens of search's web calls on October 20th, after the close: rated 2.00 more.
    load_usage([{**usage("late-web-1", "input_token", 2_000_000, **WEB), "occurred_at": "2026-10-20T08:00:00Z"}])

    november = allocation_run_execute(period=NOVEMBER)

    [correction] = correction_runs_booked_in(period=NOVEMBER)
    assert (correction.status, correction.period, correction.booked_in) == ("correction", "2026-10", "2026-11")
    assert correction.corrects_id == closed.pk and correction.mapping_version_id == closed.mapping_version_id
    assert november.status == AllocationRunStatus.COMPLETED and november.invoice_total == 0
    # The closed run is as it was: its lines, totals and fingerprint, still the period's current run.
    assert snapshot(closed) == before
    # The invoice did not change, so the correction moves money and adds none: the usage invoiced
    # (69.69) is now spread over 71.00 rated, so search's direct usage (and its tax) gains what the
    # others lose.
    assert correction.invoice_total == 0 and correction.allocated == -correction.unallocated != 0
    assert_ties(correction)
    centers = by_center(correction)
    assert centers["CC-110"] > 0 and all(amount < 0 for code, amount in centers.items() if code != "CC-110")
    web = AllocationLine.objects.get(run=correction, team="search", feature="web", unit="input_token", category="usage")
    assert (web.quantity, web.line_count) == (Decimal(2_000_000), 1)
    assert correction.fingerprint and len(correction.fingerprint) == 64
    assert correction.inputs["correction"] == {
        "period": "2026-10",
        "booked_in": "2026-11",
        "corrects": closed.fingerprint,
        "against": [],
    }
    assert_equals_a_fresh_run(closed)


def test_a_correction_run_page_says_what_it_corrects_not_superseded(closed, client, django_user_model):
    load_usage([{**usage("late-web-2", "input_token", 1_000_000, **WEB), "occurred_at": "2026-10-21T08:00:00Z"}])
    allocation_run_execute(period=NOVEMBER)
    [correction] = correction_runs_booked_in(period=NOVEMBER)
    finance = django_user_model.objects.create_user(username="fay", password="x")
    finance.groups.add(Group.objects.get_or_create(name="finance_approver")[0])
    client.force_login(finance)

    page = client.get(f"/allocation/runs/{correction.pk}/")

    assert page.status_code == 200
    status = page.content.decode().split('class="run-head__status"', 1)[1].split("</p>", 1)[0]
    assert "Correction of 2026-10" in status and "Superseded" not in status


def test_the_selectors_read_the_corrections_for_statements_and_pages(closed):
    load_usage([{**usage("late-web-1", "input_token", 2_000_000, **WEB), "occurred_at": "2026-10-20T08:00:00Z"}])
    allocation_run_execute(period=NOVEMBER)
    [correction] = correction_runs_booked_in(period=NOVEMBER)

    assert list(correction_runs_of(run=closed)) == [correction]
    lines = correction_lines(period=NOVEMBER)
    assert {line.run.period for line in lines} == {"2026-10"}
    assert sum((line.amount for line in lines), Decimal(0)) == 0
    search = CostCenter.objects.get(code="CC-110")
    scoped = correction_lines(period=NOVEMBER, scope=CostCenterScope(ids=frozenset({search.pk})))
    assert {line.cost_center_id for line in scoped} == {search.pk}
    assert sum((line.amount for line in scoped), Decimal(0)) == by_center(correction)["CC-110"]
    [summary] = correction_summary(period=NOVEMBER)
    assert (summary["run"], summary["period"], summary["corrects"], summary["invoice_total"]) == (
        correction.pk,
        "2026-10",
        closed.pk,
        "0.00",
    )
    assert {c["code"]: Decimal(c["total"]) for c in summary["cost_centers"]} == {
        code: amount for code, amount in by_center(correction).items() if not code.startswith("unallocated")
    }
    assert correction_lines(period=DECEMBER).count() == 0


def test_periods_next_open_and_closed(closed):
    assert period_is_closed(period=MONTH) and not period_is_closed(period=NOVEMBER)
    assert period_next_open(after=MONTH) == NOVEMBER
    allocation_run_close(run=allocation_run_execute(period=NOVEMBER))
    assert period_next_open(after=MONTH) == DECEMBER  # no run yet: still the next open one
    assert period_next_open(after=Period(2026, 9)) == DECEMBER  # October and November closed
    assert period_next_open(after=Period(2026, 8)) == Period(2026, 9)  # September has no run: open


# -- a restated provider bucket ----------------------------------------------------------------------------------

DAY = 1790812800  # 2026-10-01T00:00:00Z
PROJECT_RULE = """\
  - match: {project: proj_1}
    cost_center: CC-120
    charge_model: direct
pools:"""


def openai_usage(tmp_path: Path, name: str, proj_1_tokens: int) -> Path:
    """One day of gpt-4o completions for two projects: proj_1 (mapped to support) and proj_2 (untagged)."""
    results = [
        {
            "object": "organization.usage.completions.result",
            "model": "gpt-4o",
            "project_id": project,
            "num_model_requests": 3,
            "input_tokens": tokens,
            "output_tokens": 0,
        }
        for project, tokens in (("proj_1", proj_1_tokens), ("proj_2", 1_000_000))
    ]
    page = {
        "object": "page",
        "data": [{"object": "bucket", "start_time": DAY, "end_time": DAY + 86400, "results": results}],
    }
    path = tmp_path / name
    path.write_text(json.dumps(page), encoding="utf-8")
    return path


@pytest.fixture
def closed_with_openai(tmp_path, django_user_model):
    """October with OpenAI usage (exported at noon: 1M input tokens of each project, 2.50 each) and its
    invoice (5.00), allocated and closed."""
    provider = Provider.objects.create(code="openai", name="OpenAI")
    AiModel.objects.create(provider=provider, code="gpt-4o", match_rule={"starts_with": "gpt-4o"})
    book = tmp_path / "openai.yaml"
    book.write_text(
        "book: openai-list\nkind: list\nprices:\n"
        '  - {provider: openai, model: gpt-4o, unit: input_token, amount: "2.50", per: 1000000}\n',
        encoding="utf-8",
    )
    price_book_load_file(path=book)
    assert (
        usage_ingest_file(path=openai_usage(tmp_path, "noon.json", 1_000_000), source_format="openai-usage").inserted
        == 2
    )
    invoice = invoice_csv(
        tmp_path,
        "OAI-2026-10,openai,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,usage,gpt-4o,gpt-4o input,,,5.00,5.00,,USD\n",
        "openai-invoice.csv",
    )
    assert invoice_ingest_file(path=invoice, source_format="csv", provider="openai").rejected == 0
    run = build_run(tmp_path, django_user_model, mapping=MAPPING.replace("pools:", PROJECT_RULE, 1))
    openai = AllocationLine.objects.filter(run=run, provider="openai").select_related("cost_center")
    assert {(line.cost_center.code if line.cost_center else line.reason): line.amount for line in openai} == {
        "CC-120": Decimal("2.50"),
        "untagged": Decimal("2.50"),
    }
    return allocation_run_close(run=run)


def test_a_restated_openai_bucket_after_the_close_is_a_correction(closed_with_openai, tmp_path):
    closed = closed_with_openai
    before = snapshot(closed)
    # The next morning's export of the same day: proj_1 1.02M tokens (2.55), a restatement.
    batch = usage_ingest_file(path=openai_usage(tmp_path, "morning.json", 1_020_000), source_format="openai-usage")
    assert (batch.inserted, batch.restated) == (1, 1)

    [correction] = allocation_corrections_book(period=NOVEMBER)

    assert snapshot(closed) == before
    assert_ties(correction)
    # OpenAI's invoice stands at 5.00, now over 5.05 rated (within the 2% tolerance): proj_1's share
    # is 5.00 x 2.55 / 5.05 = 2.52 (was 2.50), the untagged proj_2 2.48 (was 2.50).
    openai = {
        (line.cost_center.code if line.cost_center else line.reason): line.amount
        for line in AllocationLine.objects.filter(run=correction, provider="openai").select_related("cost_center")
    }
    assert openai == {"CC-120": Decimal("0.02"), "untagged": Decimal("-0.02")}
    proj_1 = AllocationLine.objects.get(run=correction, provider="openai", cost_center__code="CC-120")
    assert (proj_1.quantity, proj_1.line_count) == (Decimal(20_000), 0)  # a reversal and a replacement: net 0 lines
    assert correction.invoice_total == 0
    assert_equals_a_fresh_run(closed)


# -- a late provider credit --------------------------------------------------------------------------------------


def test_a_late_provider_credit_is_a_correction_with_a_negative_invoice_total(closed, tmp_path):
    before = snapshot(closed)
    assert (
        invoice_ingest_file(
            path=invoice_csv(tmp_path, CREDIT, "credit.csv"), source_format="csv", provider="acme-ai"
        ).inserted
        == 1
    )

    allocation_run_execute(period=NOVEMBER)

    [correction] = correction_runs_booked_in(period=NOVEMBER)
    assert snapshot(closed) == before
    assert correction.invoice_total == Decimal("-5.00")
    assert correction.allocated + correction.unallocated == Decimal("-5.00")
    assert_ties(correction)
    # The credit is spread over the cost centers; the tax, whose shares follow the rest, moves between
    # them (a cent may move with it in the invoice's largest-remainder rounding).
    assert {line.category for line in AllocationLine.objects.filter(run=correction)} == {"credit", "tax"}

    # A credit note of its own for October, later still: booked again in November, the correction
    # holds both credits.
    note = (
        "ACME-2026-10-CN1,acme-ai,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,credit,sla,SLA credit,,,-2.00,-2.00,,USD\n"
    )
    invoice_ingest_file(path=invoice_csv(tmp_path, note, "note.csv"), source_format="csv", provider="acme-ai")
    [again] = allocation_corrections_book(period=NOVEMBER)
    assert again.pk != correction.pk and not AllocationRun.objects.filter(pk=correction.pk).exists()
    assert again.invoice_total == Decimal("-7.00")
    assert_ties(again)
    assert_equals_a_fresh_run(closed)


# -- idempotent, and never in a closed period --------------------------------------------------------------------


def test_booking_again_with_nothing_new_keeps_the_correction_and_reads_little(closed):
    load_usage([{**usage("late-web-1", "input_token", 2_000_000, **WEB), "occurred_at": "2026-10-20T08:00:00Z"}])
    [first] = allocation_corrections_book(period=NOVEMBER)
    lines = sorted(AllocationLine.objects.filter(run=first).values_list(*CORRECTION_KEY, "amount"), key=str)
    ratings = RatingRun.objects.count()

    with CaptureQueriesContext(connection) as queries:
        [second] = allocation_corrections_book(period=NOVEMBER)
    assert (second.pk, second.fingerprint) == (first.pk, first.fingerprint)
    assert len(queries) < 20, [q["sql"] for q in queries]
    assert RatingRun.objects.count() == ratings  # October was not allocated again
    # November's own run books them too, and finds nothing new; a batch of November's usage is
    # nothing to October either.
    load_usage([{**usage("nov-1", "input_token", 1_000_000, **WEB), "occurred_at": "2026-11-03T08:00:00Z"}])
    allocation_run_execute(period=NOVEMBER)
    assert list(correction_runs_booked_in(period=NOVEMBER)) == [first]
    assert sorted(AllocationLine.objects.filter(run=first).values_list(*CORRECTION_KEY, "amount"), key=str) == lines

    # New late data replaces November's correction with one for all of it, against the closed run.
    load_usage([{**usage("late-web-2", "output_token", 1_000_000, **WEB), "occurred_at": "2026-10-21T08:00:00Z"}])
    allocation_run_execute(period=NOVEMBER)
    [replaced] = correction_runs_booked_in(period=NOVEMBER)
    assert replaced.pk != first.pk and replaced.fingerprint != first.fingerprint
    assert AllocationRun.objects.filter(corrects=closed).count() == 1
    assert_equals_a_fresh_run(closed)


def test_a_correction_booked_in_a_closed_period_stands_and_the_next_one_books_only_what_is_new(closed):
    load_usage([{**usage("late-web-1", "input_token", 2_000_000, **WEB), "occurred_at": "2026-10-20T08:00:00Z"}])
    november = allocation_run_execute(period=NOVEMBER)
    [in_november] = correction_runs_booked_in(period=NOVEMBER)
    november = allocation_run_close(run=november)
    in_november.refresh_from_db()
    assert in_november.closed_at == november.closed_at  # closed with the period it is booked in
    before = snapshot(in_november)

    with pytest.raises(PeriodClosed, match="2026-11 is closed") as refused:
        allocation_corrections_book(period=NOVEMBER)
    assert refused.value.extra == {"period": "2026-11", "next_open": "2026-12"}
    with pytest.raises(PeriodClosed):
        allocation_corrections_book(period=MONTH)
    with pytest.raises(ValidationFailed, match="closes with 2026-11"):
        allocation_run_close(run=in_november)

    # More late usage for October: December carries only the difference from October and November's correction.
    load_usage([{**usage("late-web-2", "output_token", 1_000_000, **WEB), "occurred_at": "2026-10-21T08:00:00Z"}])
    [in_december] = allocation_corrections_book(period=period_next_open(after=MONTH))
    assert (in_december.period, in_december.booked_in, in_december.corrects_id) == ("2026-10", "2026-12", closed.pk)
    assert in_december.inputs["correction"]["against"] == [["2026-11", in_november.fingerprint]]
    assert snapshot(in_november) == before
    assert_ties(in_december)
    assert_equals_a_fresh_run(closed)


def test_booking_while_a_run_of_the_period_runs_elsewhere_is_refused_on_postgresql(closed):
    """The period's advisory lock, held by another session (a run under way), refuses the booking."""
    import psycopg

    from allocation.services.runs.progress import AllocationRunning, advisory_key

    if connection.vendor != "postgresql":
        pytest.skip("the cross-process lock is PostgreSQL's advisory lock; SQLite books in one process")
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", advisory_key(NOVEMBER))
        with pytest.raises(AllocationRunning, match="2026-11 is running"):
            allocation_corrections_book(period=NOVEMBER)
    assert allocation_corrections_book(period=NOVEMBER) == []


def test_booking_takes_the_finance_role(closed, django_user_model):
    member = django_user_model.objects.create_user(username="sofia", password="x")
    with pytest.raises(NotAllowed):
        allocation_corrections_book(period=NOVEMBER, actor=member)
    assert allocation_corrections_book(period=NOVEMBER, actor=closed.created_by) == []  # nothing late


# -- the FOCUS export of the period they are booked in -----------------------------------------------------------


def test_the_focus_export_of_the_next_period_carries_the_corrections_as_corrections(closed, tmp_path):
    load_usage([{**usage("late-web-1", "input_token", 2_000_000, **WEB), "occurred_at": "2026-10-20T08:00:00Z"}])
    invoice_ingest_file(path=invoice_csv(tmp_path, CREDIT, "credit.csv"), source_format="csv", provider="acme-ai")
    november = allocation_run_execute(period=NOVEMBER)
    [correction] = correction_runs_booked_in(period=NOVEMBER)

    path = tmp_path / "focus.csv"
    with path.open("w", encoding="utf-8", newline="") as stream:
        result = focus_export(period=NOVEMBER, stream=stream)
    header, rows = read_focus_csv(path.read_text(encoding="utf-8"))

    assert (result.run_id, result.correction_run_ids, result.rows) == (november.pk, (correction.pk,), len(rows))
    assert focus_violations(header, rows, mandatory=FOCUS_MANDATORY) == []
    corrections = [row for row in rows if row["ChargeClass"] == "Correction"]
    assert corrections and len(corrections) == len(rows)  # November has no usage or invoice of its own
    assert {row["x_AllocationRunId"] for row in corrections} == {str(correction.pk)}
    # Billed in November, incurred in October (FOCUS: a correction of a closed billing period).
    assert {(row["BillingPeriodStart"], row["BillingPeriodEnd"]) for row in corrections} == {
        ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    }
    assert {(row["ChargePeriodStart"], row["ChargePeriodEnd"]) for row in corrections} == {
        ("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z")
    }
    assert {row["InvoiceId"] for row in corrections} == {"ACME-2026-10"}
    assert all(row["ChargeDescription"].startswith("Correction of 2026-10: ") for row in corrections)
    billed = sum((Decimal(row["BilledCost"]) for row in corrections), Decimal(0))
    assert billed == correction.invoice_total == Decimal("-5.00")
    # Money moved off a cost center is a negative row.
    assert any(Decimal(row["BilledCost"]) < 0 and row["x_CostCenter"] for row in corrections)

    # October's own export is as it was: its run's rows, none a correction.
    with (tmp_path / "october.csv").open("w", encoding="utf-8", newline="") as stream:
        october = focus_export(period=MONTH, stream=stream)
    _, october_rows = read_focus_csv((tmp_path / "october.csv").read_text(encoding="utf-8"))
    assert october.run_id == closed.pk and october.correction_run_ids == ()
    assert {row["ChargeClass"] for row in october_rows} == {None}
