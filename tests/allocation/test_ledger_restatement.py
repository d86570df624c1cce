"""Idempotency on meaning, not spelling; a restated provider bucket ends at its latest figures.

The same usage written differently (9 or 9.0, keys in another order, another
UTC offset) is a duplicate. A provider bucket exported again with other
figures is a restatement: reversal and replacement lines in the new batch, so
every reader (sums, line counts, tag coverage, rating, kept sums extended by a
later rating, request counts) reads the latest figures, never both, never the
first only; the same figures again stay a duplicate.
"""

import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.db.models import Sum

from allocation.models import RatingRequestCount, UsageBucketVersion, UsageLine
from allocation.selectors.ledger import tag_coverage
from allocation.selectors.rating import unpriced_usage, usage_summary
from allocation.services.ledger import usage_ingest_events, usage_ingest_file
from allocation.services.rating import usage_rate_period
from pricing.models import AiModel, Provider
from pricing.periods import Period
from pricing.services.price_books import price_book_load_file

pytestmark = pytest.mark.django_db

OCTOBER = Period(2026, 10)
DAY = 1790812800  # 2026-10-01T00:00:00Z


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def openai_file(tmp_path: Path, name: str, *buckets: tuple[int, dict]) -> Path:
    """Pages of completions: (start, {count: value}) per bucket, one project and model."""
    data = [
        {
            "object": "bucket",
            "start_time": start,
            "end_time": start + 86400,
            "results": [
                {
                    "object": "organization.usage.completions.result",
                    "model": "gpt-4o",
                    "project_id": "proj_1",
                    "num_model_requests": 3,
                    **counts,
                }
            ],
        }
        for start, counts in buckets
    ]
    return write(tmp_path, name, json.dumps({"object": "page", "data": data, "has_more": False}))


def ledger_totals() -> dict[str, Decimal]:
    rows = UsageLine.objects.values("unit").annotate(q=Sum("quantity")).order_by("unit")
    return {row["unit"]: row["q"] for row in rows if row["q"]}


def test_a_bucket_exported_again_with_new_figures_ends_at_the_latest(tmp_path):
    noon = openai_file(tmp_path, "noon.json", (DAY, {"input_tokens": 100, "output_tokens": 10}))
    morning = openai_file(tmp_path, "morning.json", (DAY, {"input_tokens": 300, "output_tokens": 30}))

    first = usage_ingest_file(path=noon, source_format="openai-usage")
    assert (first.inserted, first.restated, first.lines_inserted) == (1, 0, 2)
    later = usage_ingest_file(path=morning, source_format="openai-usage")
    # Two reversals of the noon figures, two replacement lines.
    assert (later.inserted, later.duplicate, later.restated, later.lines_inserted) == (1, 0, 1, 4)
    assert ledger_totals() == {"input_token": 300, "output_token": 30}  # not 400, not 100
    assert not UsageLine.objects.filter(quantity__lt=0).exclude(restatement=-1).exists()

    # The same figures again are duplicates; so is the older export read again.
    for path in (morning, noon):
        again = usage_ingest_file(path=path, source_format="openai-usage")
        assert (again.inserted, again.duplicate, again.lines_inserted) == (0, 1, 0)
    assert ledger_totals() == {"input_token": 300, "output_token": 30}
    assert list(UsageBucketVersion.objects.values_list("version", flat=True)) == [1, 2]

    # Readers count the one line per unit the bucket now is.
    summary = usage_summary(period=OCTOBER, group_by=["unit"])
    assert [(g["unit"], g["quantity"], g["line_count"]) for g in summary] == [
        ("input_token", 300, 1),
        ("output_token", 30, 1),
    ]
    [coverage] = tag_coverage(period=OCTOBER)
    assert (coverage["lines"], coverage["quantity"]) == (2, 330)
    assert unpriced_usage(period=OCTOBER)["ledger_lines"] == 2


def test_a_restatement_may_change_which_units_the_bucket_holds(tmp_path):
    usage_ingest_file(
        path=openai_file(tmp_path, "a.json", (DAY, {"input_tokens": 100, "output_tokens": 0})),
        source_format="openai-usage",
    )
    assert ledger_totals() == {"input_token": 100}
    usage_ingest_file(
        path=openai_file(tmp_path, "b.json", (DAY, {"input_tokens": 100, "output_tokens": 50})),
        source_format="openai-usage",
    )
    assert ledger_totals() == {"input_token": 100, "output_token": 50}
    usage_ingest_file(
        path=openai_file(tmp_path, "c.json", (DAY, {"input_tokens": 0, "output_tokens": 0})),
        source_format="openai-usage",
    )
    assert ledger_totals() == {}  # restated to nothing: every earlier line reversed
    assert UsageBucketVersion.objects.count() == 3


def test_a_bucket_restated_within_one_file_keeps_its_last_figures(tmp_path):
    path = openai_file(
        tmp_path,
        "both.json",
        (DAY, {"input_tokens": 100, "output_tokens": 10}),
        (DAY + 86400, {"input_tokens": 7, "output_tokens": 1}),
        (DAY, {"input_tokens": 200, "output_tokens": 20}),
    )
    batch = usage_ingest_file(path=path, source_format="openai-usage")
    assert (batch.rows_read, batch.inserted, batch.restated) == (3, 3, 1)
    assert ledger_totals() == {"input_token": 207, "output_token": 21}


def test_an_anthropic_bucket_spelled_with_another_offset_is_the_same_bucket(tmp_path):
    def page(start: str, end: str, output: int) -> str:
        result = {"model": "claude-sonnet-4-5", "uncached_input_tokens": 100, "output_tokens": output}
        return json.dumps({"data": [{"starting_at": start, "ending_at": end, "results": [result]}]})

    usage_ingest_file(
        path=write(tmp_path, "a.json", page("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z", 10)),
        source_format="anthropic-usage",
    )
    same = usage_ingest_file(
        path=write(tmp_path, "b.json", page("2026-10-01T02:00:00+02:00", "2026-10-02T00:00:00.000Z", 10)),
        source_format="anthropic-usage",
    )
    assert (same.inserted, same.duplicate) == (0, 1)
    restated = usage_ingest_file(
        path=write(tmp_path, "c.json", page("2026-10-01T00:00:00+00:00", "2026-10-02T00:00:00Z", 25)),
        source_format="anthropic-usage",
    )
    assert (restated.inserted, restated.restated) == (1, 1)
    assert ledger_totals() == {"input_token": 100, "output_token": 25}


@pytest.fixture
def gpt4o_prices(tmp_path):
    provider = Provider.objects.create(code="openai", name="OpenAI")
    AiModel.objects.create(provider=provider, code="gpt-4o", match_rule={"starts_with": "gpt-4o"})
    book = (
        "book: openai-list\nkind: list\nprices:\n"
        '  - {provider: openai, model: gpt-4o, unit: input_token, amount: "2.50", per: 1000000}\n'
        '  - {provider: openai, model: gpt-4o, unit: output_token, amount: "10", per: 1000000}\n'
    )
    price_book_load_file(path=write(tmp_path, "list.yaml", book))


def test_rating_prices_the_latest_figures_also_when_it_extends_a_kept_rating(tmp_path, gpt4o_prices):
    usage_ingest_file(
        path=openai_file(tmp_path, "noon.json", (DAY, {"input_tokens": 1_000_000, "output_tokens": 100_000})),
        source_format="openai-usage",
    )
    first = usage_rate_period(period=OCTOBER, sum_fields=["project"], request_fields=["project"])
    assert Decimal(first.cost) == Decimal("3.5")  # 2.50 + 1.00
    usage_ingest_file(
        path=openai_file(tmp_path, "morning.json", (DAY, {"input_tokens": 2_000_000, "output_tokens": 100_000})),
        source_format="openai-usage",
    )
    for extends in (first, None):  # the kept sums plus the new batch's lines, and a rating from scratch
        run = usage_rate_period(period=OCTOBER, sum_fields=["project"], request_fields=["project"], extends=extends)
        assert Decimal(run.cost) == Decimal("6"), extends  # 5.00 + 1.00: the morning's figures only
        assert (run.lines_rated, run.lines_unpriced) == (2, 0)
        # The bucket is one request, however often it was restated.
        assert RatingRequestCount.objects.filter(run=run).aggregate(n=Sum("requests"))["n"] == 1
    [group] = usage_summary(period=OCTOBER, group_by=["provider"])
    assert (group["line_count"], group["cost"].quantize(Decimal("0.000001"))) == (2, Decimal(6))


EVENT = {
    "occurred_at": "2026-10-01T10:00:00Z",
    "provider": "openai",
    "model": "gpt-4o",
    "team": "search",
    "feature": "answers",
    "environment": "production",
}


def test_csv_rows_without_event_id_are_keyed_by_meaning_not_spelling(tmp_path):
    header = "occurred_at,provider,model,unit,quantity,team,feature,environment\n"
    first = header + "2026-10-01T10:00:00Z,openai,gpt-4o,input_token,9,search,answers,production\n"
    # 9.0 for 9, another offset for the same moment, padding, and the columns in another order.
    again = (
        "team,quantity,unit,model,provider,occurred_at,feature,environment\n"
        "search,9.0,input_token,gpt-4o,openai,2026-10-01T12:00:00+02:00,answers,production\n"
        ' search , 9.000 ,input_token,gpt-4o,openai,"2026-10-01T10:00:00",answers,production\n'
    )
    one = usage_ingest_file(path=write(tmp_path, "a.csv", first), source_format="csv")
    two = usage_ingest_file(path=write(tmp_path, "b.csv", again), source_format="csv")
    assert (one.inserted, two.inserted, two.duplicate) == (1, 0, 2)
    other = usage_ingest_file(path=write(tmp_path, "c.csv", first.replace(",9,", ",10,")), source_format="csv")
    assert other.inserted == 1  # other figures without an id are another call
    assert UsageLine.objects.count() == 2


def test_json_lines_without_event_id_are_keyed_by_meaning_not_spelling(tmp_path):
    event = {**EVENT, "quantities": {"input_token": 9, "output_token": 2}}
    respelled = {
        "quantities": {"output_token": "2", "input_token": 9.0},
        **{k: EVENT[k] for k in reversed(EVENT)},
        "occurred_at": "2026-10-01T05:00:00-05:00",
    }
    one = usage_ingest_file(path=write(tmp_path, "a.jsonl", json.dumps(event) + "\n"), source_format="jsonl")
    two = usage_ingest_file(path=write(tmp_path, "b.jsonl", json.dumps(respelled) + "\n"), source_format="jsonl")
    assert (one.inserted, two.inserted, two.duplicate) == (1, 0, 1)
    batch, results = usage_ingest_events(events=[respelled, event], source_name="gw")
    assert [r.status for r in results] == ["duplicate", "duplicate"]
    assert UsageLine.objects.count() == 2
