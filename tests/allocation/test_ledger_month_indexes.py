"""The ledger's per-month drill-down indexes (allocation/services/ledger/month_indexes.py):
made when a month is allocated, used by a statement line's and a trace's drill-down, and
never kept for a month not allocated yet (what ingestion writes pays for no index)."""

import pytest
from django.db import connection

from allocation.models import UsageLine
from allocation.services.ledger.month_indexes import ledger_month_index_names, ledger_month_indexes_ensure
from allocation.services.runs.run import allocation_run_execute
from chargeback.choices import StatementLineKind
from chargeback.models import StatementLine
from chargeback.selectors.statements import _line_calls
from chargeback.services.statements import statements_build
from pricing.periods import Period
from tests.allocation.runs_world import MONTH, load_usage, usage
from tests.chargeback.close_world import close_world

NOVEMBER = Period(2026, 11)


def _indexes() -> dict[str, str]:
    """The ledger's indexes by name: their definitions, as PostgreSQL prints them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'allocation_usageline'")
        return dict(cursor.fetchall())


def _plan(queryset) -> str:
    """The plan PostgreSQL picks when a scan of the table is not an option: the few rows
    of a test make a sequential scan cheapest otherwise."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


@pytest.fixture
def world(db, tmp_path, django_user_model, settings):
    if connection.vendor != "postgresql":
        pytest.skip("partial indexes made per month are PostgreSQL's; SQLite scans a demo's months")
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    return close_world(tmp_path, django_user_model)


def test_an_allocated_month_gets_its_drill_down_indexes_and_a_drill_down_uses_them(world):
    drilldown, trace = ledger_month_index_names(MONTH)
    assert (drilldown, trace) == ("usage_line_drilldown_2026_10", "usage_line_trace_2026_10")
    # The run's on-commit task did not run inside the test's transaction: nothing yet.
    assert drilldown not in _indexes()

    assert ledger_month_indexes_ensure(period=MONTH) == [drilldown, trace]
    indexes = _indexes()
    assert "(feature, team, environment, model, provider, modality, occurred_at)" in indexes[drilldown]
    assert "(trace_id)" in indexes[trace]
    for name in (drilldown, trace):
        assert "occurred_at >= '2026-10-01 00:00:00+00'" in indexes[name]
        assert "occurred_at < '2026-11-01 00:00:00+00'" in indexes[name]
    # Made once: asked again, nothing is built.
    assert ledger_month_indexes_ensure(period=MONTH) == []

    statements_build(period=MONTH, actor=world["analyst"])
    line = StatementLine.objects.filter(kind=StatementLineKind.CHARGE, statement__period=str(MONTH)).exclude(
        feature=""
    )[0]
    calls = _line_calls(line)
    assert calls.exists()
    assert drilldown in _plan(calls.order_by("-occurred_at", "-event_key")[:50])
    assert trace in _plan(calls.filter(trace_id="t-1"))


def test_a_month_not_allocated_has_no_index_and_its_lines_cost_none(world):
    load_usage([usage("nov-1", "input_token", 1000, team="search", feature="web", environment="production")])
    load_usage([{**usage("nov-2", "input_token", 1000), "occurred_at": "2026-11-03T10:00:00Z"}])
    assert UsageLine.objects.filter(occurred_at__gte=NOVEMBER.start).exists()
    indexes = _indexes()
    assert not any(name in indexes for name in ledger_month_index_names(NOVEMBER))
    # The only index over every line is the key's and the time's (and the batch's range map).
    whole = [name for name, definition in indexes.items() if " WHERE " not in definition]
    assert len(whole) == 3, whole
    assert all(name.endswith("_pkey") or "occurred_at" in name or "brin" in name for name in whole), whole


def test_an_index_left_invalid_by_a_failed_build_is_built_again(world):
    drilldown, _trace = ledger_month_index_names(MONTH)
    ledger_month_indexes_ensure(period=MONTH)
    with connection.cursor() as cursor:  # what a CONCURRENTLY build that failed half-way leaves
        cursor.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", [drilldown])
    assert ledger_month_indexes_ensure(period=MONTH) == [drilldown]
    with connection.cursor() as cursor:
        cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", [drilldown])
        assert cursor.fetchone() == (True,)


def test_a_run_queues_the_months_indexes_on_commit(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        allocation_run_execute(period=MONTH, actor=world["approver"])
    assert callbacks  # Celery is eager here: the queued task ran on commit
    assert set(ledger_month_index_names(MONTH)) <= set(_indexes())
