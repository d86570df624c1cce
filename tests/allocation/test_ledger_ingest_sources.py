"""Every source format, read from the real reference files: quantities are
disjoint, so each source's totals are kept exactly and nothing is counted twice."""

from decimal import Decimal
from pathlib import Path

import pytest
from django.db.models import Sum

from allocation.models import UsageLine
from allocation.services.ledger import usage_ingest_file

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
INPUT_SIDE = {
    "input_token",
    "cached_input_token",
    "cache_write_token",
    "cache_write_1h_token",
    "audio_input_token",
    "cached_audio_input_token",
    "image_input_token",
    "cached_image_input_token",
}
OUTPUT_SIDE = {"output_token", "reasoning_token", "audio_output_token", "image_output_token"}

pytestmark = pytest.mark.django_db


def quantities(batch) -> dict[str, Decimal]:
    rows = UsageLine.objects.filter(batch=batch).values("unit").annotate(q=Sum("quantity"))
    return {row["unit"]: row["q"] for row in rows}


def side(units: dict[str, Decimal], names: set[str]) -> Decimal:
    return sum((q for u, q in units.items() if u in names), Decimal(0))


def test_openai_completions_store_disjoint_leaves_that_add_up_to_the_totals():
    batch = usage_ingest_file(path=FIXTURES / "openai/example_usage_completions.json", source_format="openai-usage")
    assert (batch.status, batch.rows_read, batch.inserted, batch.rejected) == ("completed", 1, 1, 0)
    units = quantities(batch)
    # input_tokens 1000 includes 400 cached and 100 cache-write tokens; 500 uncached split text/audio/image.
    assert units == {
        "input_token": 400,
        "cached_input_token": 300,
        "cache_write_token": 100,
        "audio_input_token": 50,
        "cached_audio_input_token": 50,
        "image_input_token": 50,
        "cached_image_input_token": 50,
        "output_token": 400,
        "audio_output_token": 50,
        "image_output_token": 50,
    }
    assert side(units, INPUT_SIDE) == 1000  # the page's input_tokens, not 1400 or 1500
    assert side(units, OUTPUT_SIDE) == 500
    line = UsageLine.objects.filter(batch=batch).first()
    assert line.provider == "openai" and line.is_untagged
    assert line.occurred_at.isoformat() == "2024-11-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("name", "unit", "quantity"),
    [
        ("embeddings", "embedding_token", Decimal(16)),
        ("images", "image", Decimal(2)),
        ("audio_speeches", "character", Decimal(45)),
        ("audio_transcriptions", "transcription_second", Decimal(20)),
        # 1,024 bytes held for the bucket's one day: 1.024e-6 GB-days.
        ("vector_stores", "vector_gb_day", Decimal("0.000001024")),
        ("moderations", "input_token", Decimal(16)),
        ("web_search_calls", "tool_call", Decimal(2)),
        ("file_search_calls", "tool_call", Decimal(2)),
        ("code_interpreter_sessions", "container_session", Decimal(1)),
    ],
)
def test_openai_usage_endpoints(name, unit, quantity):
    batch = usage_ingest_file(path=FIXTURES / f"openai/example_usage_{name}.json", source_format="openai-usage")
    assert batch.status == "completed", batch.error
    assert quantities(batch) == {unit: quantity}


def test_anthropic_usage_keeps_cache_kinds_apart_and_does_not_subtract_them():
    batch = usage_ingest_file(
        path=FIXTURES / "anthropic/example_usage_report_messages.json", source_format="anthropic-usage"
    )
    assert (batch.status, batch.rows_read, batch.inserted) == ("completed", 1, 1)
    units = quantities(batch)
    # uncached_input_tokens already excludes cache reads and writes.
    assert units == {
        "input_token": 1500,
        "cached_input_token": 200,
        "cache_write_token": 500,
        "cache_write_1h_token": 1000,
        "output_token": 500,
        "tool_call": 10,
    }
    assert side(units, INPUT_SIDE) == 1500 + 200 + 500 + 1000
    line = UsageLine.objects.get(batch=batch, unit="input_token")
    assert (line.model, line.service_tier, line.context_band) == ("claude-opus-4-6", "standard", "0-200k")
    assert line.project == "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ"
    assert UsageLine.objects.get(batch=batch, unit="tool_call").tier == "web_search"


@pytest.mark.parametrize("name", ["genai_spans.json", "genai_spans.jsonl"])
def test_otel_spans_subtract_cache_and_reasoning_from_the_totals(name):
    batch = usage_ingest_file(path=FIXTURES / "otel" / name, source_format="otel")
    assert batch.status == "completed", batch.error
    # 7 GenAI spans (the HTTP span is not usage): 5 kept, 2 rejected.
    assert (batch.rows_read, batch.inserted, batch.rejected) == (7, 5, 2)
    chat = {line.unit: line.quantity for line in UsageLine.objects.filter(batch=batch, request_id="chatcmpl-AHCdEf1")}
    assert chat == {"input_token": 600, "cached_input_token": 300, "cache_write_token": 100, "output_token": 250}
    reasoning = {line.unit: line.quantity for line in UsageLine.objects.filter(batch=batch, model="o3-mini")}
    assert reasoning == {"input_token": 2048, "output_token": 260, "reasoning_token": 640}
    claude = {line.unit: line.quantity for line in UsageLine.objects.filter(batch=batch, model="claude-sonnet-4-5")}
    assert claude == {"input_token": 1000, "cached_input_token": 8000, "cache_write_token": 3000, "output_token": 700}
    assert sum(claude[u] for u in claude if u in INPUT_SIDE) == 12000  # gen_ai.usage.input_tokens
    embedding = UsageLine.objects.get(batch=batch, unit="embedding_token")
    assert embedding.quantity == 512
    legacy = {line.unit: line.quantity for line in UsageLine.objects.filter(batch=batch, model="claude-haiku-4-5")}
    assert legacy == {"input_token": 400, "output_token": 60}  # deprecated gen_ai.system / prompt_tokens names

    tagged = UsageLine.objects.filter(batch=batch, request_id="chatcmpl-AHCdEf1").first()
    assert (tagged.team, tagged.feature, tagged.environment, tagged.tenant, tagged.end_user) == (
        "support-ai",
        "ticket-triage",
        "production",
        "acme",
        "u-1842",
    )
    assert tagged.trace_id == "5b8efff798038103d269b633813fc60c" and not tagged.is_untagged
    assert tagged.context_tokens == 1000
    reasons = dict(batch.rejections.values_list("field", "reason"))
    assert any("gen_ai.usage.input_tokens" in f and "without usage" in r for f, r in reasons.items())
    assert any("less than its cache reads" in r for r in reasons.values())


def test_a_file_in_another_format_is_refused_whole_with_a_hint():
    batch = usage_ingest_file(
        path=FIXTURES / "anthropic/example_usage_report_messages.json", source_format="openai-usage"
    )
    assert batch.status == "refused"
    assert "starting_at" in batch.error and "anthropic-usage" in batch.error
    assert batch.rows_read == 0 and not UsageLine.objects.exists()

    batch = usage_ingest_file(path=FIXTURES / "openai/example_usage_images.json", source_format="otel")
    assert batch.status == "refused" and "resourceSpans" in batch.error


def test_reingesting_a_provider_page_inserts_nothing():
    path = FIXTURES / "openai/example_usage_completions.json"
    usage_ingest_file(path=path, source_format="openai-usage")
    again = usage_ingest_file(path=path, source_format="openai-usage")
    assert (again.rows_read, again.inserted, again.duplicate, again.lines_inserted) == (1, 0, 1, 0)
    assert UsageLine.objects.count() == 10


def test_otel_spans_carry_the_outcome_a_shared_service_does_not_charge(tmp_path):
    """A span whose status is an error is `failed`; one the content filter stopped is `moderated`."""
    import json

    def span(span_id: str, **extra) -> dict:
        attributes = [
            {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "100"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "0"}},
            *extra.pop("attributes", []),
        ]
        return {
            "traceId": "t1",
            "spanId": span_id,
            "startTimeUnixNano": "1791000000000000000",
            "attributes": attributes,
            **extra,
        }

    spans = [
        span("ok"),
        span("err", status={"code": 2, "message": "upstream timeout"}),
        span(
            "mod",
            attributes=[
                {
                    "key": "gen_ai.response.finish_reasons",
                    "value": {"arrayValue": {"values": [{"stringValue": "content_filter"}]}},
                }
            ],
        ),
    ]
    path = tmp_path / "spans.json"
    path.write_text(json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": spans}]}]}))
    batch = usage_ingest_file(path=path, source_format="otel")
    assert batch.inserted == 3, list(batch.rejections.values_list("field", "reason"))
    outcomes = dict(UsageLine.objects.filter(batch=batch).values_list("event_id", "outcome"))
    assert outcomes == {"otel:t1:ok": "", "otel:t1:err": "failed", "otel:t1:mod": "moderated"}
