"""An allocation run prices the sums its period's rating kept, rather than reading the
ledger again, while that rating still stands for the ledger and the prices in force."""

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from allocation.models import ActivityCount, AllocationLine, RatingRun, RatingSum, UsageBatch
from allocation.services.allocation import allocation_run_execute, allocation_usage_rate
from pricing.models import PriceBook
from pricing.services.price_books import PriceRow, price_book_version_create

from .allocation_world import (
    MAPPING,
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
from .test_allocation_run import by_center

pytestmark = pytest.mark.django_db

# The hand-computed scenario's cents (test_allocation_run.py), reached either way.
SCENARIO_CENTS = {
    "CC-100": Decimal("-8.47"),
    "CC-110": Decimal("68.00"),
    "CC-120": Decimal("63.86"),
    "CC-130": Decimal("46.73"),
    "unallocated:failed_or_moderated": Decimal("1.11"),
    "unallocated:untagged": Decimal("3.33"),
}


@pytest.fixture
def world(tmp_path, django_user_model):
    centers = build_org()
    build_prices()
    approver = make_approver(django_user_model)
    build_mapping(tmp_path, approver)
    load_usage(scenario_events())
    load_invoice(tmp_path, SCENARIO_INVOICE)
    ActivityCount.objects.create(period=PERIOD, driver="jobs_run", cost_center=centers["CC-110"], count=3)
    ActivityCount.objects.create(period=PERIOD, driver="jobs_run", cost_center=centers["CC-130"], count=1)
    return {"centers": centers, "approver": approver}


def test_a_rating_made_ahead_is_reused_and_lands_the_same_cents(world):
    ahead = allocation_usage_rate(period=PERIOD)
    assert {"team", "feature", "environment", "caller", "outcome", "is_untagged"} <= set(ahead.sum_fields)
    assert ahead.ledger_settled
    assert sum(RatingSum.objects.filter(run=ahead).values_list("line_count", flat=True)) == ahead.lines_rated

    run = allocation_run_execute(period=PERIOD)

    assert run.rating_run_id == ahead.pk
    assert RatingRun.objects.filter(period=PERIOD).count() == 1
    assert by_center(run) == SCENARIO_CENTS
    assert run.allocated + run.unallocated == run.invoice_total == Decimal("174.56")


def test_a_run_that_rates_and_one_that_reuses_give_the_same_fingerprint(world):
    rated = allocation_run_execute(period=PERIOD)
    reused = allocation_run_execute(period=PERIOD)
    assert reused.rating_run_id == rated.rating_run_id
    assert reused.fingerprint == rated.fingerprint
    assert by_center(reused) == by_center(rated) == SCENARIO_CENTS


def test_a_new_usage_batch_makes_the_rating_stale(world):
    first = allocation_run_execute(period=PERIOD)
    load_usage([usage("late-1", "input_token", 1_000_000, team="search", feature="web", environment="production")])

    second = allocation_run_execute(period=PERIOD)

    assert second.rating_run_id != first.rating_run_id
    assert second.rating_run.lines_rated == first.rating_run.lines_rated + 1
    assert second.rating_run.cost == first.rating_run.cost + Decimal("1.00")
    assert second.fingerprint != first.fingerprint
    # Only the newest rating keeps its sums; the older run keeps its record.
    assert not RatingSum.objects.filter(run=first.rating_run).exists()
    assert RatingRun.objects.filter(pk=first.rating_run_id).exists()


def test_a_batch_loading_while_the_ledger_was_read_makes_the_rating_stale(world):
    loading = UsageBatch.objects.create(source_format="csv", source_name="loading.csv", status="running")
    ahead = allocation_usage_rate(period=PERIOD)
    loading.status = "completed"
    loading.save()
    assert not ahead.ledger_settled

    run = allocation_run_execute(period=PERIOD)

    assert run.rating_run_id != ahead.pk
    assert run.rating_run.ledger_settled


def test_a_new_price_book_version_makes_the_rating_stale(world):
    first = allocation_run_execute(period=PERIOD)
    rows = [
        PriceRow("list", "acme-ai", "acme-1", "input_token", Decimal("2.00"), 1_000_000),
        PriceRow("list", "acme-ai", "acme-1", "cached_input_token", Decimal("0.50"), 1_000_000),
        PriceRow("list", "acme-ai", "acme-1", "output_token", Decimal("2.00"), 1_000_000),
    ]
    price_book_version_create(book=PriceBook.objects.get(code="LIST-ACME"), rows=rows, source="test")

    second = allocation_run_execute(period=PERIOD)

    assert second.rating_run_id != first.rating_run_id
    assert second.rating_run.cost > first.rating_run.cost
    assert second.allocated + second.unallocated == second.invoice_total


def test_a_mapping_reading_another_tag_rates_again(world, tmp_path):
    first = allocation_run_execute(period=PERIOD)
    assert "tenant" not in first.rating_run.sum_fields
    by_tenant = MAPPING.replace("  - match: {team: search}\n", "  - match: {team: search, tenant: '*'}\n")
    assert by_tenant != MAPPING
    build_mapping(tmp_path, world["approver"], by_tenant)

    second = allocation_run_execute(period=PERIOD)

    assert second.rating_run_id != first.rating_run_id
    assert "tenant" in second.rating_run.sum_fields


def test_requests_counted_ahead_split_a_requests_pool_as_a_fresh_count_does(world, tmp_path):
    requests_pool = MAPPING + (
        '  - code: support\n    name: Support plan\n    match: {sku: "support-plan"}\n'
        "    method: proportional\n    driver: requests\n    cost_centers: [CC-110, CC-120, CC-130]\n"
    )
    build_mapping(tmp_path, world["approver"], requests_pool)
    load_invoice(
        tmp_path,
        "SUP-2026-10,acme-ai,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,purchase,support-plan,Support,,,50.00,50.00,,USD\n",
        name="support.csv",
    )
    out = StringIO()
    call_command("rate_usage", "--period", PERIOD, stdout=out)
    printed = json.loads(out.getvalue())
    assert "caller" in printed["kept_for_allocation"]["requests_by"]

    run = allocation_run_execute(period=PERIOD)

    assert run.rating_run_id == printed["rating_run"]
    support = AllocationLine.objects.filter(run=run, pool__code="support").select_related("cost_center")
    assert sorted((line.cost_center.code, line.amount) for line in support) == [
        ("CC-110", Decimal("20.00")),
        ("CC-120", Decimal("10.00")),
        ("CC-130", Decimal("20.00")),
    ]


def test_rating_ahead_again_returns_the_rating_that_still_stands(world):
    first = allocation_usage_rate(period=PERIOD)
    assert allocation_usage_rate(period=PERIOD).pk == first.pk
    load_usage([usage("late-2", "output_token", 1_000_000, team="search", feature="web", environment="production")])
    again = allocation_usage_rate(period=PERIOD)
    assert again.pk != first.pk
    # The stale rating's sums are dropped; the newest's are kept for the run.
    assert not RatingSum.objects.filter(run=first).exists()
    assert RatingSum.objects.filter(run=again).exists()


def test_the_nightly_task_rates_last_month_and_this_one(world):
    from datetime import date

    from allocation.services.allocation import open_periods
    from allocation.tasks import usage_rate_open_periods_task

    assert open_periods(today=date(2026, 11, 3)) == ["2026-10", "2026-11"]
    assert open_periods(today=date(2027, 1, 31)) == ["2026-12", "2027-01"]
    rated = usage_rate_open_periods_task.delay().get()
    assert [entry["period"] for entry in rated] == open_periods()
    assert all(RatingRun.objects.filter(pk=entry["rating_run"], status="completed").exists() for entry in rated)
