"""The allocation run on a hand-computed scenario: every expected cent written out."""

from collections import defaultdict
from decimal import Decimal

import pytest

from allocation.models import ActivityCount, AllocationLine, AllocationRun
from allocation.services.allocation import allocation_run_execute

from .allocation_world import (
    PERIOD,
    SCENARIO_INVOICE,
    build_mapping,
    build_org,
    build_prices,
    load_invoice,
    load_usage,
    make_approver,
    scenario_events,
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
    ActivityCount.objects.create(period=PERIOD, driver="jobs_run", cost_center=centers["CC-110"], count=3)
    ActivityCount.objects.create(period=PERIOD, driver="jobs_run", cost_center=centers["CC-130"], count=1)
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
    Tax 6.969 is 10% of usage: each bearer's share (the service owner bears the
    carded usage) is a tenth of its usage money, rounded by largest remainder: the
    three cents left go to 0.808 (0.81), 0.606 (0.61) and 0.505 (0.51).
    Platform fee 59.00 by tokens: search 12M + 5M, support 25M, research 5M + 12M:
    17.00 / 25.00 / 17.00. Vector store 30.00 by jobs run 3:1: 22.50 / 7.50.
    """
    run = allocation_run_execute(period=PERIOD, actor=world["approver"])

    assert run.invoice_total == Decimal("165.66")
    assert run.allocated + run.unallocated == run.invoice_total
    assert run.unallocated == Decimal("4.44")
    assert not run.is_flagged
    assert by_center(run) == {
        "CC-100": Decimal("-8.47"),
        "CC-110": Decimal("64.05"),
        "CC-120": Decimal("61.36"),
        "CC-130": Decimal("44.28"),
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
            ("CC-110", "usage", "pool_activity", "chargeback", Decimal("22.50")),
        ]
    )
    assert amounts(run, cost_center__code="CC-120") == sorted(
        [
            ("CC-120", "usage", "passthrough", "chargeback", Decimal("33.33")),
            ("CC-120", "tax", "passthrough", "chargeback", Decimal("3.03")),
            ("CC-120", "purchase", "pool_proportional", "chargeback", Decimal("25.00")),
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
            ("CC-130", "usage", "pool_activity", "chargeback", Decimal("7.50")),
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
