"""The allocation run on a hand-computed scenario: every expected cent written out."""

import json
from collections import defaultdict
from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from allocation.models import ActivityCount, AllocationLine, AllocationRun, RatingRun, RatingSum, UsageBatch
from allocation.services.runs.run import allocation_run_execute, allocation_usage_rate
from pricing.models import PriceBook
from pricing.periods import Period
from pricing.services.price_books import PriceRow, price_book_version_create

from .runs_world import (
    MAPPING,
    MONTH,
    PERIOD,
    SCENARIO_INVOICE,
    build_mapping,
    build_org,
    build_prices,
    load_invoice,
    load_usage,
    make_approver,
    scenario_events,
    usage,
)

pytestmark = pytest.mark.django_db


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
    return {"centers": centers, "approver": approver}


def by_center(run: AllocationRun) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in AllocationLine.objects.filter(run=run).select_related("cost_center"):
        totals[line.cost_center.code if line.cost_center else f"unallocated:{line.reason}"] += line.amount
    return dict(totals)


def amounts(run: AllocationRun, **filters) -> list[tuple]:
    """Amounts per (cost center or reason, category, method, treatment), units summed."""
    totals: dict[tuple, Decimal] = defaultdict(Decimal)
    for line in AllocationLine.objects.filter(run=run, **filters).select_related("cost_center"):
        where = line.cost_center.code if line.cost_center else line.reason
        totals[(where, line.category, line.method, line.treatment)] += line.amount
    return sorted((*key, amount) for key, amount in totals.items() if amount)


def test_hand_computed_scenario_lands_every_cent(world):
    """Rated 69.00 at list; usage invoiced 69.69, so the true-up factor is 1.01 (inside 2%).

    Usage money (x 1.01): search direct 14.14; eval showback 5.05 on research;
    summarize passthrough 30.30 x 1.10 = 33.33 to support, margin -3.03 on platform;
    the failed call 1.01 unallocated; rerank card 9.00 to search, spread 6.06 - 9 = -2.94
    on platform (showback); embed card 12.00 to research, spread 8.08 - 12 = -3.92 on
    platform, cached input 2.02 passthrough to research; untagged 3.03.
    Platform fee 59.00 by tokens: search 12M + 5M, support 25M, research 5M + 12M:
    17.00 / 25.00 / 17.00. Vector store 30.00 by jobs run 3:1: 22.50 / 7.50.
    Tax 15.869 is 10% of all the rest (69.69 + 59 + 30): each bearer's share (the
    service owner bears the carded usage; the pools' cost centers their shares) is a
    tenth of its amount, rounded by largest remainder: the three cents left go to
    0.808 (0.81), 0.505 (0.51) and, of the two 0.404s, the smaller key (CC-100's
    rerank spread, 0.41).
    """
    run = allocation_run_execute(period=MONTH, actor=world["approver"])

    assert run.invoice_total == Decimal("174.56")
    assert run.allocated + run.unallocated == run.invoice_total
    assert run.unallocated == Decimal("4.44")
    assert not run.is_flagged
    assert by_center(run) == {
        "CC-100": Decimal("-8.47"),
        "CC-110": Decimal("68.00"),
        "CC-120": Decimal("63.86"),
        "CC-130": Decimal("46.73"),
        "unallocated:failed_or_moderated": Decimal("1.11"),
        "unallocated:untagged": Decimal("3.33"),
    }
    assert amounts(run, cost_center__code="CC-100") == sorted(
        [
            ("CC-100", "usage", "margin", "chargeback", Decimal("-3.03")),
            ("CC-100", "usage", "card_spread", "showback", Decimal("-2.94")),
            ("CC-100", "tax", "card_spread", "showback", Decimal("0.61")),
            ("CC-100", "usage", "card_spread", "chargeback", Decimal("-3.92")),
            ("CC-100", "tax", "card_spread", "chargeback", Decimal("0.81")),
        ]
    )
    assert amounts(run, cost_center__code="CC-110") == sorted(
        [
            ("CC-110", "usage", "direct", "chargeback", Decimal("14.14")),
            ("CC-110", "tax", "direct", "chargeback", Decimal("1.41")),
            ("CC-110", "usage", "rate_card", "showback", Decimal("9.00")),
            ("CC-110", "purchase", "pool_proportional", "chargeback", Decimal("17.00")),
            ("CC-110", "tax", "pool_proportional", "chargeback", Decimal("1.70")),
            ("CC-110", "usage", "pool_activity", "chargeback", Decimal("22.50")),
            ("CC-110", "tax", "pool_activity", "chargeback", Decimal("2.25")),
        ]
    )
    assert amounts(run, cost_center__code="CC-120") == sorted(
        [
            ("CC-120", "usage", "passthrough", "chargeback", Decimal("33.33")),
            ("CC-120", "tax", "passthrough", "chargeback", Decimal("3.03")),
            ("CC-120", "purchase", "pool_proportional", "chargeback", Decimal("25.00")),
            ("CC-120", "tax", "pool_proportional", "chargeback", Decimal("2.50")),
        ]
    )
    assert amounts(run, cost_center__code="CC-130") == sorted(
        [
            ("CC-130", "usage", "direct", "showback", Decimal("5.05")),
            ("CC-130", "tax", "direct", "showback", Decimal("0.51")),
            ("CC-130", "usage", "rate_card", "chargeback", Decimal("12.00")),
            ("CC-130", "usage", "passthrough", "chargeback", Decimal("2.02")),
            ("CC-130", "tax", "passthrough", "chargeback", Decimal("0.20")),
            ("CC-130", "purchase", "pool_proportional", "chargeback", Decimal("17.00")),
            ("CC-130", "tax", "pool_proportional", "chargeback", Decimal("1.70")),
            ("CC-130", "usage", "pool_activity", "chargeback", Decimal("7.50")),
            ("CC-130", "tax", "pool_activity", "chargeback", Decimal("0.75")),
        ]
    )
    assert amounts(run, cost_center__isnull=True) == sorted(
        [
            ("failed_or_moderated", "usage", "unallocated", "", Decimal("1.01")),
            ("failed_or_moderated", "tax", "unallocated", "", Decimal("0.10")),
            ("untagged", "usage", "unallocated", "", Decimal("3.03")),
            ("untagged", "tax", "unallocated", "", Decimal("0.30")),
        ]
    )
    # Drill-down: the lines keep the ledger line counts behind them.
    direct = AllocationLine.objects.get(
        run=run, cost_center__code="CC-110", method="direct", category="usage", unit="input_token"
    )
    assert (direct.team, direct.feature, direct.environment, direct.line_count) == ("search", "web", "production", 1)
    assert (direct.quantity, direct.rated_cost, direct.amount) == (Decimal(10_000_000), Decimal(10), Decimal("10.10"))
    reconciliation = run.reconciliation.get(model="")
    assert reconciliation.invoice_cost == Decimal("69.69")
    assert reconciliation.rated_cost == Decimal("69")
    assert reconciliation.within_tolerance


def test_usage_invoiced_beyond_the_tolerance_leaves_a_named_true_up_gap(world, tmp_path):
    """Invoice usage 80.00 against 69.00 rated: scaled by the 2% cap only (70.38), the
    remaining 9.62 is the true-up gap, not spread over the teams; the run is flagged."""
    from allocation.models import InvoiceLine

    InvoiceLine.objects.filter(sku="acme-1-tokens").update(
        billed_cost=Decimal("80.00"), effective_cost=Decimal("80.00")
    )
    run = allocation_run_execute(period=MONTH)
    assert run.is_flagged
    gap = AllocationLine.objects.filter(run=run, reason="true_up_gap", category="usage")
    assert sum(line.amount for line in gap) == Decimal("9.62")
    assert AllocationLine.objects.get(
        run=run, cost_center__code="CC-110", method="direct", category="usage", unit="input_token"
    ).amount == Decimal("10.20")
    assert run.invoice_total == Decimal("184.87")  # 80 + 15.869 + 59 + 30
    assert run.allocated + run.unallocated == run.invoice_total
    check = run.reconciliation.get(model="")
    assert (check.within_tolerance, check.variance_share) == (False, Decimal("-0.1375"))


def test_rated_usage_above_the_invoice_is_scaled_down_at_most_by_the_tolerance(world):
    from allocation.models import InvoiceLine

    InvoiceLine.objects.filter(sku="acme-1-tokens").update(
        billed_cost=Decimal("60.00"), effective_cost=Decimal("60.00")
    )
    run = allocation_run_execute(period=MONTH)
    gap = AllocationLine.objects.filter(run=run, reason="true_up_gap", category="usage")
    assert sum(line.amount for line in gap) == Decimal("-7.62")  # 60 - 69 x 0.98
    assert run.is_flagged
    assert run.allocated + run.unallocated == run.invoice_total


def test_unpriced_usage_keeps_the_invoice_gap_in_its_own_bucket(world):
    """Usage of a model no price book prices: the 69.69 - 69.00 gap is not scaled onto the
    priced usage but named `unpriced`, with the unpriced lines counted."""
    load_usage(
        [
            usage("new-1", "input_token", 7_000_000, team="search", feature="web", environment="production")
            | {"model": "mystery-2"}
        ]
    )
    run = allocation_run_execute(period=MONTH)
    direct = AllocationLine.objects.get(
        run=run, cost_center__code="CC-110", method="direct", category="usage", unit="input_token", model="acme-1"
    )
    assert direct.amount == Decimal("10.00")  # factor 1: nothing spread
    unpriced = AllocationLine.objects.filter(run=run, reason="unpriced")
    assert sum(line.amount for line in unpriced if line.category == "usage") == Decimal("0.69")
    assert sum(line.line_count for line in unpriced) == 1
    assert run.allocated + run.unallocated == run.invoice_total


def test_fixed_fee_is_a_transfer_that_nets_to_zero(world, tmp_path):
    fee = MAPPING.replace(
        "  - match: {team: search}\n",
        "  - match: {team: search, feature: web}\n"
        '    cost_center: CC-110\n    charge_model: fixed_fee\n    fixed_fee: "25.00"\n    service_owner: CC-100\n'
        "  - match: {team: search}\n",
    ).replace('effective_from: "2026-10-01"', 'effective_from: "2026-10-01"\n', 1)
    build_mapping(tmp_path, world["approver"], fee)
    run = allocation_run_execute(period=MONTH)
    assert run.mapping_version.number == 2
    fees = AllocationLine.objects.filter(run=run, method="fixed_fee").select_related("cost_center")
    assert sorted((line.cost_center.code, line.amount) for line in fees) == [
        ("CC-100", Decimal("-25.00")),
        ("CC-110", Decimal("25.00")),
    ]
    assert all(line.invoice_id is None for line in fees)
    # search's web usage (14.14 + its 1.41 tax) is absorbed by the service owner under the fee
    absorbed = AllocationLine.objects.filter(run=run, method="fee_absorbed", cost_center__code="CC-100")
    assert sum(line.amount for line in absorbed) == Decimal("15.55")
    assert by_center(run)["CC-110"] == Decimal("68.00") - Decimal("15.55") + Decimal("25.00")
    assert run.allocated + run.unallocated == run.invoice_total


def test_same_inputs_same_fingerprint_and_a_later_run_supersedes(world):
    first = allocation_run_execute(period=MONTH)
    second = allocation_run_execute(period=MONTH)
    first.refresh_from_db()
    assert second.fingerprint == first.fingerprint
    assert (first.status, first.superseded_by_id, second.status) == ("superseded", second.pk, "completed")
    assert first.lines.count() == second.lines.count()
    assert second.inputs["mapping_version"]["number"] == 1
    assert [i["invoice_id"] for i in second.inputs["invoices"]] == ["ACME-2026-10"]
    # A changed input changes the fingerprint.
    ActivityCount.objects.filter(cost_center__code="CC-130").update(count=2)
    third = allocation_run_execute(period=MONTH)
    assert third.fingerprint != second.fingerprint


def test_a_closed_period_refuses_a_new_run(world):
    from allocation.services.runs.run import PeriodClosed, allocation_run_close

    run = allocation_run_execute(period=MONTH)
    allocation_run_close(run=run)
    with pytest.raises(PeriodClosed, match="2026-10 is closed"):
        allocation_run_execute(period=MONTH)
    assert AllocationRun.objects.filter(period=PERIOD).count() == 1


def test_no_signed_mapping_in_force_is_refused_and_leaves_nothing(world):
    from allocation.models import RatingRun
    from pricing.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="no signed mapping version is in force for 2026-09"):
        allocation_run_execute(period=Period(2026, 9))
    assert not AllocationRun.objects.exists()
    assert not RatingRun.objects.filter(period="2026-09").exists()


def test_run_allocation_prints_one_json_object_that_ties_out(world):
    import io
    import json

    from django.core.management import call_command

    out = io.StringIO()
    call_command("run_allocation", "--period", PERIOD, stdout=out)
    result = json.loads(out.getvalue())
    (acme,) = result["providers"]
    assert (result["invoice_total"], result["allocated"], result["unallocated"]["total"]) == (
        "174.56",
        "170.12",
        "4.44",
    )
    assert acme["unallocated"]["by_reason"] == {"untagged": "3.33", "failed_or_moderated": "1.11"}
    assert (acme["invoice_total"], acme["rated_usage"], acme["invoiced_usage"], acme["variance"]) == (
        "174.56",
        "69.00",
        "69.69",
        "-0.69",
    )
    assert Decimal(acme["allocated"]) + Decimal(acme["unallocated"]["total"]) == Decimal(acme["invoice_total"])
    assert result["run"] == AllocationRun.objects.get().pk and len(result["fingerprint"]) == 64
    assert "cost_centers" not in result


def test_summary_api_answers_per_provider_and_per_cost_center(world, api_client):
    run = allocation_run_execute(period=MONTH)
    response = api_client.get(f"/api/v1/allocation-runs/{run.pk}/summary")
    assert response.status_code == 200
    body = response.json()
    assert body["providers"][0]["allocated"] == "170.12"
    assert {c["code"]: c["total"] for c in body["cost_centers"]} == {
        "CC-100": "-8.47",
        "CC-110": "68.00",
        "CC-120": "63.86",
        "CC-130": "46.73",
    }
    assert {c["code"]: c["showback"] for c in body["cost_centers"]}["CC-110"] == "9.00"
    listed = api_client.get("/api/v1/allocation-runs", {"period": PERIOD}).json()
    assert [r["id"] for r in listed["results"]] == [run.pk]


def test_start_api_runs_the_period_and_reports_progress(
    world, api_client, user, django_user_model, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import Group

    platform = django_user_model.objects.create_user(username="pat")
    platform.groups.add(Group.objects.get_or_create(name="platform_admin")[0])
    api_client.force_authenticate(user=platform)
    refused = api_client.post("/api/v1/allocation-runs", {"period": PERIOD}, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "not_allowed"
    assert (
        "pat may not POST /api/v1/allocation-runs: only finance (approvers and analysts) may"
        in (refused.json()["message"])
    )
    api_client.force_authenticate(user=user)  # a finance analyst
    assert api_client.post("/api/v1/allocation-runs", {"period": "2026-1"}, format="json").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post("/api/v1/allocation-runs", {"period": PERIOD}, format="json")
    assert response.status_code == 202
    run = AllocationRun.objects.get(period=PERIOD)
    progress = api_client.get("/api/v1/allocation-runs/progress", {"period": PERIOD}).json()["progress"]
    assert (progress["state"], progress["run_id"], progress["percent"]) == ("completed", run.pk, 100)


def test_preview_shows_what_a_draft_moves_between_cost_centers(world, tmp_path):
    from allocation.services.mapping.files import mapping_load_file
    from allocation.services.mapping.preview import mapping_preview

    path = tmp_path / "draft.yaml"
    path.write_text(
        MAPPING.replace(
            "  - match: {team: search}\n    cost_center: CC-110", "  - match: {team: search}\n    cost_center: CC-120"
        )
    )
    draft = mapping_load_file(path=path)
    preview = mapping_preview(version=draft, period=MONTH)
    changes = {row["code"]: row["change"] for row in preview["cost_centers"]}
    # search's direct usage 14.14 and its tax 1.41 move; the pools follow the tokens
    # (search's 12M of 59M move too: 17.00 -> 5.00 of the platform fee, and its tax 1.20).
    assert preview["moves"][0] == {"from": "CC-110", "to": "CC-120", "amount": Decimal("28.75")}
    assert changes["CC-110"] == Decimal("-28.75") and changes["CC-120"] == Decimal("28.75")
    assert not AllocationRun.objects.exists()  # nothing kept


# transaction=True: two connections see the same committed world; serialized_rollback
# brings back the migration-seeded unit catalog for the tests that follow.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_second_run_of_a_period_while_one_runs_is_refused_on_postgresql(world, monkeypatch):
    """Two real runs on two connections: the first holds the period's lock inside its
    transaction (paused after rating); the second is refused at once, naming who runs."""
    import threading

    from django.db import connection, connections

    from allocation.services.runs import engine
    from allocation.services.runs.progress import AllocationRunning

    if connection.vendor != "postgresql":
        pytest.skip("the cross-process lock is PostgreSQL's advisory lock; SQLite is covered by the test below")
    started, release = threading.Event(), threading.Event()
    real_rate = engine.usage_rate_kept

    def rate_then_wait(**kwargs):
        rating = real_rate(**kwargs)
        started.set()
        assert release.wait(30)
        return rating

    monkeypatch.setattr(engine, "usage_rate_kept", rate_then_wait)
    outcome = {}

    def first_run():
        try:
            outcome["run"] = allocation_run_execute(period=MONTH, actor=world["approver"])
        except Exception as exc:  # reported below
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert started.wait(30), outcome
        with pytest.raises(AllocationRunning, match="already running .* by fiona"):
            allocation_run_execute(period=MONTH)
    finally:
        release.set()
        thread.join(60)
    assert "error" not in outcome, outcome
    assert list(AllocationRun.objects.values_list("pk", "status")) == [(outcome["run"].pk, "completed")]


def test_a_run_marked_running_refuses_another_on_the_embedded_default(world):
    """SQLite runs in one process: the run's progress marker is the lock."""
    from django.db import connection

    from allocation.services.runs.progress import AllocationRunning, progress_set

    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL uses the advisory lock (test above)")
    progress_set(MONTH, state="running", user="fiona", started_at="2026-11-01T10:00:00+00:00")
    try:
        with pytest.raises(AllocationRunning, match="already running"):
            allocation_run_execute(period=MONTH)
        assert not AllocationRun.objects.exists()
    finally:
        progress_set(MONTH, state="completed")


def test_invoices_in_two_currencies_are_refused_rather_than_added_up(world, tmp_path):
    from pricing.errors import ValidationFailed

    from .runs_world import load_invoice

    load_invoice(
        tmp_path,
        "ACME-EU-2026-10,acme-ai,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,usage,acme-1-tokens,eu,,,10.00,10.00,,EUR\n",
        name="eur.csv",
    )
    with pytest.raises(ValidationFailed, match="invoices are in EUR, USD"):
        allocation_run_execute(period=MONTH)
    assert not AllocationRun.objects.exists()


def test_unpriced_gpu_seconds_still_drive_a_gpu_pool(world, tmp_path):
    """No book prices GPU time, but its quantity is measured: the cluster bill follows it."""
    gpu_pool = MAPPING + (
        '  - code: gpu\n    name: GPU cluster\n    match: {sku: "gpu-*"}\n'
        "    method: proportional\n    driver: gpu_seconds\n    cost_centers: [CC-110, CC-130]\n"
    )
    build_mapping(tmp_path, world["approver"], gpu_pool)
    load_usage(
        [
            usage("gpu-1", "gpu_second", 3600, team="research", feature="bench", environment="eval") | {"model": ""},
            usage("gpu-2", "gpu_second", 1200, team="search", feature="web", environment="production") | {"model": ""},
        ]
    )
    load_invoice(
        tmp_path,
        "GPU-2026-10,acme-ai,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,usage,gpu-h100,H100 hours,,,40.00,40.00,,USD\n",
        name="gpu.csv",
    )
    run = allocation_run_execute(period=MONTH)
    gpu = AllocationLine.objects.filter(run=run, pool__code="gpu").select_related("cost_center")
    assert sorted((line.cost_center.code, line.amount) for line in gpu) == [
        ("CC-110", Decimal("10.00")),
        ("CC-130", Decimal("30.00")),
    ]
    assert run.allocated + run.unallocated == run.invoice_total


def support_pool_by_requests(tmp_path, approver) -> None:
    """A mapping version with a support plan pool split by requests, and its invoice."""
    requests_pool = MAPPING + (
        '  - code: support\n    name: Support plan\n    match: {sku: "support-plan"}\n'
        "    method: proportional\n    driver: requests\n    cost_centers: [CC-110, CC-120, CC-130]\n"
    )
    build_mapping(tmp_path, approver, requests_pool)
    load_invoice(
        tmp_path,
        "SUP-2026-10,acme-ai,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,purchase,support-plan,Support,,,50.00,50.00,,USD\n",
        name="support.csv",
    )


@pytest.mark.parametrize("rated_ahead", [False, True], ids=["rated-in-the-run", "rated-ahead"])
def test_a_requests_pool_splits_by_distinct_calls_of_each_consumer(world, tmp_path, rated_ahead):
    """Calls, not lines: search made web-1 (two lines) and rerank rr-1 as caller; support
    made sum-1 (its failed sum-2 does not count); research eval-1 and embed em-1. Counted
    by the run's own rating, or kept by `rate_usage` ahead and reused: the same split."""
    support_pool_by_requests(tmp_path, world["approver"])
    ahead = None
    if rated_ahead:
        out = StringIO()
        call_command("rate_usage", "--period", PERIOD, stdout=out)
        ahead = json.loads(out.getvalue())
        assert "caller" in ahead["kept_for_allocation"]["requests_by"]
    run = allocation_run_execute(period=MONTH)
    if ahead:
        assert run.rating_run_id == ahead["rating_run"]
    support = AllocationLine.objects.filter(run=run, pool__code="support").select_related("cost_center")
    assert sorted((line.cost_center.code, line.amount) for line in support) == [
        ("CC-110", Decimal("20.00")),
        ("CC-120", Decimal("10.00")),
        ("CC-130", Decimal("20.00")),
    ]


# --- a run reuses the period's rating while it stands --------------------------------

# The hand-computed scenario's cents (the first test), whether the run rates or reuses.
SCENARIO_CENTS = {
    "CC-100": Decimal("-8.47"),
    "CC-110": Decimal("68.00"),
    "CC-120": Decimal("63.86"),
    "CC-130": Decimal("46.73"),
    "unallocated:failed_or_moderated": Decimal("1.11"),
    "unallocated:untagged": Decimal("3.33"),
}


def test_a_rating_made_ahead_is_reused_and_lands_the_same_cents(world):
    ahead = allocation_usage_rate(period=MONTH)
    assert {"team", "feature", "environment", "caller", "outcome", "is_untagged"} <= set(ahead.sum_fields)
    assert ahead.ledger_settled
    assert sum(RatingSum.objects.filter(run=ahead).values_list("line_count", flat=True)) == ahead.lines_rated

    run = allocation_run_execute(period=MONTH)

    assert run.rating_run_id == ahead.pk
    assert RatingRun.objects.filter(period=PERIOD).count() == 1
    assert by_center(run) == SCENARIO_CENTS
    assert run.allocated + run.unallocated == run.invoice_total == Decimal("174.56")


def test_a_run_that_rates_and_one_that_reuses_give_the_same_fingerprint(world):
    rated = allocation_run_execute(period=MONTH)
    reused = allocation_run_execute(period=MONTH)
    assert reused.rating_run_id == rated.rating_run_id
    assert reused.fingerprint == rated.fingerprint
    assert by_center(reused) == by_center(rated) == SCENARIO_CENTS


def test_a_new_usage_batch_makes_the_rating_stale(world):
    first = allocation_run_execute(period=MONTH)
    load_usage([usage("late-1", "input_token", 1_000_000, team="search", feature="web", environment="production")])

    second = allocation_run_execute(period=MONTH)

    assert second.rating_run_id != first.rating_run_id
    assert second.rating_run.lines_rated == first.rating_run.lines_rated + 1
    assert second.rating_run.cost == first.rating_run.cost + Decimal("1.00")
    assert second.fingerprint != first.fingerprint
    # Only the newest rating keeps its sums; the older run keeps its record.
    assert not RatingSum.objects.filter(run=first.rating_run).exists()
    assert RatingRun.objects.filter(pk=first.rating_run_id).exists()


def test_a_batch_loading_while_the_ledger_was_read_makes_the_rating_stale(world):
    loading = UsageBatch.objects.create(source_format="csv", source_name="loading.csv", status="running")
    ahead = allocation_usage_rate(period=MONTH)
    loading.status = "completed"
    loading.save()
    assert not ahead.ledger_settled

    run = allocation_run_execute(period=MONTH)

    assert run.rating_run_id != ahead.pk
    assert run.rating_run.ledger_settled


def test_new_prices_reprice_the_kept_sums_or_rate_anew_when_they_cut_finer(world):
    """A new price version that cuts no finer (no new band edge or change day) prices the
    kept sums again without reading the ledger's lines; one that starts mid-month needs
    finer segments, so the month is rated anew. Either way, a full rating's cents."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    first = allocation_run_execute(period=MONTH)
    book = PriceBook.objects.get(code="LIST-ACME")

    def new_prices(input_price: str, changes_on: date | None = None) -> None:
        """A new version of the list book: input at `input_price`, from `changes_on` (the
        old 1.00 before it) or for the whole month."""
        acme = ("list", "acme-ai", "acme-1")
        if changes_on is None:
            inputs = [PriceRow(*acme, "input_token", Decimal(input_price), 1_000_000)]
        else:
            inputs = [
                PriceRow(*acme, "input_token", Decimal("1.00"), 1_000_000, effective_to=changes_on),
                PriceRow(*acme, "input_token", Decimal(input_price), 1_000_000, effective_from=changes_on),
            ]
        rows = [
            *inputs,
            PriceRow(*acme, "cached_input_token", Decimal("0.50"), 1_000_000),
            PriceRow(*acme, "output_token", Decimal("2.00"), 1_000_000),
        ]
        price_book_version_create(book=book, rows=rows, source="test")

    new_prices("2.00")
    with CaptureQueriesContext(connection) as queries:
        repriced = allocation_run_execute(period=MONTH)
    assert any("l.batch_id >" in query["sql"] for query in queries.captured_queries)
    assert repriced.rating_run_id != first.rating_run_id
    assert repriced.rating_run.price_cuts == first.rating_run.price_cuts == []
    assert repriced.rating_run.cost > first.rating_run.cost
    assert repriced.allocated + repriced.unallocated == repriced.invoice_total
    repriced_centers = by_center(repriced)
    RatingRun.objects.filter(period=PERIOD).update(ledger_settled=False)  # no rating stands: read it all
    full = allocation_run_execute(period=MONTH)
    assert full.rating_run.cost == repriced.rating_run.cost
    assert by_center(full) == repriced_centers
    assert full.fingerprint == repriced.fingerprint

    # The scenario's calls are on 2026-10-14: a price from the 10th cuts the month.
    new_prices("3.00", changes_on=date(2026, 10, 10))
    with CaptureQueriesContext(connection) as queries:
        cut = allocation_run_execute(period=MONTH)
    assert not any("l.batch_id >" in query["sql"] for query in queries.captured_queries)
    assert cut.rating_run.price_cuts == ["2026-10-10T00:00:00+00:00"]
    assert cut.rating_run.cost > full.rating_run.cost


def test_a_mapping_reading_another_tag_rates_again(world, tmp_path):
    first = allocation_run_execute(period=MONTH)
    assert "tenant" not in first.rating_run.sum_fields
    by_tenant = MAPPING.replace("  - match: {team: search}\n", "  - match: {team: search, tenant: '*'}\n")
    assert by_tenant != MAPPING
    build_mapping(tmp_path, world["approver"], by_tenant)

    second = allocation_run_execute(period=MONTH)

    assert second.rating_run_id != first.rating_run_id
    assert "tenant" in second.rating_run.sum_fields


def test_rating_ahead_again_returns_the_rating_that_still_stands(world):
    first = allocation_usage_rate(period=MONTH)
    assert allocation_usage_rate(period=MONTH).pk == first.pk
    load_usage([usage("late-2", "output_token", 1_000_000, team="search", feature="web", environment="production")])
    again = allocation_usage_rate(period=MONTH)
    assert again.pk != first.pk
    # The stale rating's sums are dropped; the newest's are kept for the run.
    assert not RatingSum.objects.filter(run=first).exists()
    assert RatingSum.objects.filter(run=again).exists()


def test_the_nightly_task_rates_last_month_and_this_one(world):
    from datetime import date

    from allocation.services.runs.run import open_periods
    from allocation.tasks import usage_rate_open_periods_task

    assert open_periods(today=date(2026, 11, 3)) == [Period(2026, 10), Period(2026, 11)]
    assert open_periods(today=date(2027, 1, 31)) == [Period(2026, 12), Period(2027, 1)]
    rated = usage_rate_open_periods_task.delay().get()
    assert [entry["period"] for entry in rated] == [str(period) for period in open_periods()]
    assert all(RatingRun.objects.filter(pk=entry["rating_run"], status="completed").exists() for entry in rated)


def test_a_batch_since_the_rating_is_read_alone_and_added_to_the_kept_sums(world, tmp_path):
    """The run extends the month's rating with the later batch's lines: the same kept
    rows, requests and cents as a rating of the whole ledger."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from allocation.models import RatingRequestCount

    support_pool_by_requests(tmp_path, world["approver"])
    first = allocation_run_execute(period=MONTH)
    load_usage(
        [
            usage("late-3", "input_token", 2_000_000, team="search", feature="web", environment="production"),
            usage("late-3", "output_token", 500_000, team="search", feature="web", environment="production"),
        ]
    )

    with CaptureQueriesContext(connection) as queries:
        extended = allocation_run_execute(period=MONTH)
    assert any("l.batch_id >" in query["sql"] for query in queries.captured_queries)

    def kept(run) -> tuple[list, list]:
        sums = ("day", "unit", "team", "feature", "caller", "outcome", "batch_id", "quantity", "line_count")
        requests = ("team", "feature", "environment", "caller", "outcome", "requests")
        return (
            sorted(RatingSum.objects.filter(run=run.rating_run).values_list(*sums)),
            sorted(RatingRequestCount.objects.filter(run=run.rating_run).values_list(*requests)),
        )

    kept_extended = kept(extended)
    RatingRun.objects.filter(period=PERIOD).update(ledger_settled=False)  # no rating stands: read it all
    full = allocation_run_execute(period=MONTH)

    assert len({first.rating_run_id, extended.rating_run_id, full.rating_run_id}) == 3
    assert extended.rating_run.lines_rated == full.rating_run.lines_rated == first.rating_run.lines_rated + 2
    assert extended.rating_run.cost == full.rating_run.cost
    assert kept_extended == kept(full)
    assert by_center(extended) == by_center(full) != by_center(first)
    assert extended.fingerprint == full.fingerprint


def test_postgresql_finds_the_later_batches_lines_by_a_brin_index(world):
    """Lines are written batch after batch; the block-range index on the batch lets a
    rating that extends another read the later batches' lines, not the month."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("a BRIN index is PostgreSQL's; on SQLite the rating reads the period's lines")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'usage_line_batch_brin'")
        (definition,) = cursor.fetchone()
    assert "USING brin (batch_id)" in definition


def test_start_api_honours_an_idempotency_key(world, api_client, user, django_capture_on_commit_callbacks):
    """A retried start answers as the first did and queues no second run; the same key
    for another period is refused."""
    from allocation.models import IdempotencyKey

    api_client.force_authenticate(user=user)  # a finance analyst
    key = {"HTTP_IDEMPOTENCY_KEY": "start-run-1"}
    with django_capture_on_commit_callbacks(execute=True) as queued:
        first = api_client.post("/api/v1/allocation-runs", {"period": PERIOD}, format="json", **key)
    # Queued: the run, and (once it is done) its month's drill-down indexes.
    assert first.status_code == 202 and len(queued) == 2
    assert AllocationRun.objects.filter(period=PERIOD).count() == 1
    with django_capture_on_commit_callbacks(execute=True) as queued:
        again = api_client.post("/api/v1/allocation-runs", {"period": PERIOD}, format="json", **key)
    assert (again.status_code, again.json(), again["Idempotent-Replayed"]) == (202, first.json(), "true")
    assert queued == [] and AllocationRun.objects.filter(period=PERIOD).count() == 1
    other = api_client.post("/api/v1/allocation-runs", {"period": "2026-11"}, format="json", **key)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert IdempotencyKey.objects.filter(key="start-run-1").count() == 1
