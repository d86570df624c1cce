"""Requests and traces per feature, kept per usage batch (chargeback/services/feature_counts.py),
and the drill-down's keyset pages over calls that share their time."""

import pytest

from allocation.choices import UsageBatchStatus
from allocation.models import UsageBatch, UsageLine
from chargeback.choices import StatementLineKind
from chargeback.models import LedgerFeatureCount, LedgerFeatureCountMark, Statement
from chargeback.selectors.statements import statement_calls
from chargeback.services.feature_counts import feature_counts
from chargeback.services.statements import statements_build
from tests.allocation.runs_world import load_usage, usage
from tests.chargeback.close_world import MONTH, close_world

WEB = {"team": "search", "feature": "web", "environment": "production"}
KEY = ("search", "web", "production")


@pytest.fixture
def world(db, tmp_path, django_user_model, settings):
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    return close_world(tmp_path, django_user_model)


def calls(prefix: str, requests: list[tuple[str, str]]) -> list[dict]:
    """A call of two lines (input and output) per (request id, trace id)."""
    events = []
    for n, (request, trace) in enumerate(requests):
        for unit in ("input_token", "output_token"):
            events.append(usage(f"{prefix}-{n}", unit, 1000, **WEB, request_id=request, trace_id=trace))
    return events


def test_counts_are_kept_per_batch_and_each_new_batch_adds_its_own(world):
    assert feature_counts(period=MONTH)[KEY] == (0, 0)  # the scenario's calls carry no ids
    load_usage(calls("a", [("r-1", "t-1"), ("r-2", "t-1"), ("r-2", "t-1")]))
    assert feature_counts(period=MONTH)[KEY] == (2, 1)
    newest = UsageBatch.objects.latest("pk").pk
    assert LedgerFeatureCountMark.objects.get(period=str(MONTH)).batch_high == newest
    kept = LedgerFeatureCount.objects.filter(period=str(MONTH), batch_id=newest)
    assert list(kept.values_list("team", "feature", "environment", "requests", "traces")) == [(*KEY, 2, 1)]
    # Asked again, nothing is read or kept twice.
    rows = LedgerFeatureCount.objects.count()
    assert feature_counts(period=MONTH)[KEY] == (2, 1)
    assert LedgerFeatureCount.objects.count() == rows

    load_usage(calls("b", [("r-3", "t-2")]))
    assert feature_counts(period=MONTH)[KEY] == (3, 2)

    # The statements carry the counts.
    statements_build(period=MONTH, actor=world["analyst"])
    search = Statement.objects.get(period=str(MONTH), cost_center__code="CC-110")
    web = search.features.get(feature="web", environment="production")
    assert (web.requests, web.traces) == (3, 2)


def test_a_batch_still_loading_and_those_after_it_wait_for_a_later_count(world):
    loading = UsageBatch.objects.create(source_format="json", source_name="loading", status=UsageBatchStatus.RUNNING)
    load_usage(calls("c", [("r-9", "t-9")]))  # lands after the loading batch
    assert feature_counts(period=MONTH)[KEY] == (0, 0)
    assert LedgerFeatureCountMark.objects.get(period=str(MONTH)).batch_high == loading.pk - 1
    UsageBatch.objects.filter(pk=loading.pk).update(status=UsageBatchStatus.COMPLETED)
    assert feature_counts(period=MONTH)[KEY] == (1, 1)


def test_drill_down_pages_every_call_once_when_calls_share_their_time(world):
    # Seven more calls of search's web feature, all at the scenario's one moment.
    load_usage(calls("d", [(f"r-{n}", "t-1") for n in range(7)]))
    # The same trace goes on in another feature: not this line's calls.
    other = {**WEB, "feature": "assistant"}
    load_usage([usage("d-other", "input_token", 1000, **other, request_id="r-other", trace_id="t-1")])
    statements_build(period=MONTH, actor=world["analyst"])
    search = Statement.objects.get(period=str(MONTH), cost_center__code="CC-110")
    line = search.lines.filter(kind=StatementLineKind.CHARGE, feature="web", unit="input_token").first()
    expected = UsageLine.objects.filter(feature="web", team="search", model=line.model, modality=line.modality)
    assert expected.values("occurred_at").distinct().count() == 1  # ties all the way
    seen, cursor, pages = [], "", 0
    while True:
        page = statement_calls(line=line, cursor=cursor, limit=3)
        seen += [call.event_key for call in page.calls]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == expected.count() >= 8
    assert seen == sorted(seen, reverse=True)  # newest first, then by key
    assert pages == -(-len(seen) // 3)
    # One trace of it.
    traced = statement_calls(line=line, trace="t-1", limit=50)
    assert {(c.trace_id, c.feature) for c in traced.calls} == {("t-1", "web")}
    assert len(traced.calls) == expected.filter(trace_id="t-1").count() == 14
    # Paged, the trace's calls come once each, in the same order.
    paged, cursor = [], ""
    while True:
        page = statement_calls(line=line, trace="t-1", cursor=cursor, limit=4)
        paged += [call.event_key for call in page.calls]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert paged == [call.event_key for call in traced.calls]


def test_the_nightly_task_counts_this_month_and_the_last(db):
    from allocation.services.runs.run import open_periods
    from chargeback.tasks import feature_counts_open_periods_task

    done = feature_counts_open_periods_task()
    assert [row["period"] for row in done] == [str(p) for p in open_periods()]
    marks = LedgerFeatureCountMark.objects.filter(period__in=[row["period"] for row in done])
    assert marks.count() == 2
