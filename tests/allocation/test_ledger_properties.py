"""Property: generated hostile rows, in every format, never break a load.

For each format, hypothesis writes files of rows mixing good values with
hostile ones (times past the calendar's end, 30- and 5,000-digit numbers,
non-ASCII digits, NaN, NUL, lone surrogates, deep nesting, odd field counts)
and ingests them. Whatever it writes:

* only the project's own errors (ApplicationError) escape;
* the batch's identity holds: read = inserted + duplicate + rejected;
* the ledger holds exactly the inserted rows: the batch's lines are its
  `lines_inserted`, from `inserted` distinct records; a batch that did not
  complete holds no line.
"""

import csv
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocation.models import UsageBatch, UsageLine
from allocation.services.ledger import usage_ingest_events, usage_ingest_file
from allocation.services.ledger.parsers.events import EVENT_FIELDS
from pricing.errors import ApplicationError

pytestmark = pytest.mark.django_db

EXAMPLES = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
DAY = 1790812800  # 2026-10-01T00:00:00Z
TRICKY = [
    "9999-12-31T23:00:00-05:00",
    "0001-01-01T00:00:00+01:00",
    "2026-10-01T10:00:00Z",
    "2026-10-01 10:00:00",
    "٩",
    "²",
    "１２",
    "1e999999999",
    "1E+3",
    "NaN",
    "-Infinity",
    "-0",
    "0.0000000001",
    "9" * 30,
    "9" * 5000,
    "\x00",
    "input_token",
    "output_token",
    "image_input_token",
    "gpt-4o",
    "openai",
    "production",
    " ",
    "",
    "x" * 300,
]
text_values = st.one_of(st.sampled_from(TRICKY), st.text(max_size=12))
# JSON values: text with lone surrogates too (a JSON escape makes them), any number, nesting.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([10**30, 10**20, 2**63, -1, 0, 1, 1e20, -1e20, 1.5, 1e-12]),
    st.floats(),
    text_values,
    st.text(st.characters(exclude_categories=()), max_size=6),
)
json_values = st.one_of(
    json_scalars,
    st.recursive(
        json_scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    ),
    st.integers(min_value=30, max_value=60).map(lambda depth: json.loads("[" * depth + "]" * depth)),
)
# Values aimed at counts and times: what overflows a column or the calendar, or reads as a digit.
_HOSTILE_NUMBERS = [10**30, 10**21, 2**63, "9" * 30, "٣", "²", "-1", -1, 1.5, 1e300, float("nan"), "1e5", True]
# Hostile twice as often as plain: one_of has no weights.
numbers = st.one_of(
    st.sampled_from(_HOSTILE_NUMBERS), st.sampled_from(_HOSTILE_NUMBERS), st.integers(min_value=0, max_value=10**6)
)


def aimed(fields: list[str]) -> st.SearchStrategy[dict]:
    """A field or two set to hostile numbers, in a record otherwise valid: the values are what is tested."""
    return st.dictionaries(st.sampled_from(fields), st.sampled_from(_HOSTILE_NUMBERS), min_size=1, max_size=2)


_HOSTILE_TIMES = [
    *("9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+01:00", "9999-12-31", "２０２６-10-01", "", None, [1]),
    *(10**15, 10**30, -(10**20), 0, 1, 1e300, str(10**30), "99999999999999999999", str(2**64), "٣"),
]
times = st.sampled_from(_HOSTILE_TIMES)


def mostly(*good: object) -> st.SearchStrategy:
    """A good value three times in four, else a hostile time: sampled_from draws evenly,
    where one_of would favour its first branches."""
    return st.sampled_from([*good] * (len(_HOSTILE_TIMES) * 3 // len(good)) + _HOSTILE_TIMES)


RAW_LINES = ["[" * 5000 + "]" * 5000, "{not json", "9" * 5000, "[1, 2]", '{"a": ' + "9" * 5000 + "}", ""]

EVENT = {
    "event_id": "e",
    "occurred_at": "2026-10-01T10:00:00Z",
    "provider": "openai",
    "model": "gpt-4o",
    "unit": "input_token",
    "quantity": 5,
    "team": "search",
    "feature": "answers",
    "environment": "production",
}
event_keys = st.sampled_from([*EVENT_FIELDS, "quantities", "image_inputs", "image_width", "x"])
events = st.builds(
    lambda overrides, aimed, n: {**EVENT, "event_id": f"e{n}", **overrides, **aimed},
    st.dictionaries(event_keys, json_values, max_size=4),
    st.fixed_dictionaries(
        {},
        optional={
            "quantity": numbers,
            "context_tokens": numbers,
            "occurred_at": times,
            "quantities": st.dictionaries(st.sampled_from(["input_token", "output_token", "x"]), numbers, max_size=2),
        },
    ),
    st.integers(min_value=0, max_value=20),
)


def check(batch: UsageBatch) -> None:
    batch.refresh_from_db()
    assert batch.rows_read == batch.inserted + batch.duplicate + batch.rejected
    lines = UsageLine.objects.filter(batch=batch)
    if batch.status != "completed":
        assert batch.status in {"refused", "failed"} and not lines.exists() and not batch.rejections.exists()
        return
    assert lines.count() == batch.lines_inserted
    assert lines.values("source_line").distinct().count() == batch.inserted
    assert batch.rejections.count() == batch.rejected


def ingest(text: str, source_format: str, *, encoding: str = "utf-8") -> None:
    """Ingest `text` as a file; only project errors may escape, and then nothing is kept."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "source"
        path.write_bytes(text.encode(encoding, "surrogatepass"))
        try:
            batch = usage_ingest_file(path=path, source_format=source_format)
        except ApplicationError:
            batch = UsageBatch.objects.order_by("-pk").first()
    check(batch)


def json_text(value: object) -> str:
    try:
        return json.dumps(value)
    except ValueError:  # a structure too deep for json.dumps itself
        return "[]"


@EXAMPLES
@given(rows=st.lists(st.one_of(events.map(json_text), st.sampled_from(RAW_LINES)), min_size=1, max_size=8))
def test_jsonl_never_breaks(rows):
    ingest("\n".join(rows) + "\n", "jsonl")


@EXAMPLES
@given(items=st.lists(events, min_size=1, max_size=8), extra=json_values)
def test_api_events_never_break(items, extra):
    items = [*items, extra]  # and one item that is anything at all
    try:
        batch, results = usage_ingest_events(events=items, source_name="gw")
    except ApplicationError:
        batch = UsageBatch.objects.order_by("-pk").first()
    else:
        assert len(results) == len(items) == batch.rows_read
    check(batch)


CSV_COLUMNS = [*EVENT_FIELDS, "image_width", "image_height", "image_detail"]
csv_rows = st.lists(
    st.one_of(
        st.builds(
            lambda overrides, n: [
                overrides.get(column, {**EVENT, "event_id": f"c{n}"}.get(column, "")) for column in CSV_COLUMNS
            ],
            st.dictionaries(st.sampled_from(CSV_COLUMNS), text_values, max_size=4),
            st.integers(min_value=0, max_value=20),
        ),
        st.lists(text_values, max_size=30),  # any number of fields
    ),
    min_size=1,
    max_size=8,
)


@EXAMPLES
@given(rows=csv_rows)
def test_csv_never_breaks(rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    writer.writerows([[str(v) for v in row] for row in rows])
    ingest(out.getvalue(), "csv")


COUNT_FIELDS = ["input_tokens", "output_tokens", "input_cached_tokens", "num_model_requests", "usage_bytes"]
OPENAI_KINDS = ["completions"] * 4 + ["embeddings", "images", "vector_stores", "moderations", "unknown"]
openai_results = st.builds(
    lambda kind, overrides, project: {
        "object": f"organization.usage.{kind}.result",
        "model": "gpt-4o",
        "project_id": project,
        "input_tokens": 100,
        "output_tokens": 10,
        "images": 1,
        "usage_bytes": 1024,
        **overrides,
    },
    st.sampled_from(OPENAI_KINDS),
    st.one_of(
        st.dictionaries(st.sampled_from([*COUNT_FIELDS, "model", "project_id", "batch"]), json_values, max_size=3),
        aimed(["input_tokens", "output_tokens", "input_cached_tokens", "usage_bytes", "images"]),
        aimed(["input_tokens", "output_tokens", "input_cached_tokens", "usage_bytes", "images"]),
        aimed(["input_tokens", "output_tokens", "input_cached_tokens", "usage_bytes", "images"]),
    ),
    st.sampled_from(["p1", "p2", "p3"]),
)
# One result a bucket: flat lists keep each example small, so hypothesis spends its
# budget on the values, not on nesting pages in buckets in results.
openai_buckets = st.builds(
    lambda start, end, result: {"start_time": start, "end_time": end, "results": [result]},
    mostly(DAY, DAY, DAY + 86400),
    mostly(None, None, DAY + 2 * 86400),
    openai_results,  # (a result that is no object is one of the raw lines' cases)
)


@EXAMPLES
@given(buckets=st.lists(openai_buckets, min_size=1, max_size=6), raw=st.sampled_from(RAW_LINES))
def test_openai_usage_never_breaks(buckets, raw):
    buckets = [*buckets, {"start_time": DAY, "results": ["no object"]}]
    lines = [json_text({"object": "page", "data": buckets[:3]}), json_text({"object": "page", "data": buckets[3:]})]
    ingest("\n".join([*lines, raw]), "openai-usage")


anthropic_results = st.builds(
    lambda overrides, key: {
        "model": "claude-sonnet-4-5",
        "api_key_id": key,
        "uncached_input_tokens": 100,
        "output_tokens": 10,
        **overrides,
    },
    st.one_of(
        st.dictionaries(
            st.sampled_from(["uncached_input_tokens", "output_tokens", "cache_creation", "model", "context_window"]),
            json_values,
            max_size=3,
        ),
        aimed(["uncached_input_tokens", "output_tokens", "cache_read_input_tokens"]),
        aimed(["uncached_input_tokens", "output_tokens", "cache_read_input_tokens"]),
        aimed(["uncached_input_tokens", "output_tokens", "cache_read_input_tokens"]),
    ),
    st.sampled_from(["k1", "k2"]),
)
anthropic_buckets = st.builds(
    lambda start, end, result: {"starting_at": start, "ending_at": end, "results": [result]},
    mostly("2026-10-01T00:00:00Z", "2026-10-01T02:00:00+02:00"),
    mostly("2026-10-03T00:00:00Z"),
    anthropic_results,
)


@EXAMPLES
@given(buckets=st.lists(anthropic_buckets, min_size=1, max_size=6), raw=st.sampled_from(RAW_LINES))
def test_anthropic_usage_never_breaks(buckets, raw):
    buckets = [*buckets, {"starting_at": "2026-10-01T00:00:00Z", "results": [["no object"]]}]
    ingest("\n".join([json_text({"data": buckets[:3]}), json_text({"data": buckets[3:]}), raw]), "anthropic-usage")


def otel_value(value: object) -> object:
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return value  # anything else as it is: a hostile AnyValue


ATTRIBUTES = {
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 100,
    "gen_ai.usage.output_tokens": 10,
    "chargeback.team": "search",
}
otel_spans = st.builds(
    lambda overrides, start, span_id: {
        "traceId": "t",
        "spanId": span_id,
        "startTimeUnixNano": start,
        "attributes": [{"key": k, "value": otel_value(v)} for k, v in {**ATTRIBUTES, **overrides}.items()],
    },
    st.one_of(
        st.dictionaries(
            st.sampled_from(
                [*ATTRIBUTES, "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.reasoning.output_tokens"]
            ),
            json_values,
            max_size=3,
        ),
        aimed(["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens"]),
        aimed(["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens"]),
        aimed(["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens"]),
    ),
    mostly(str(DAY * 10**9)),
    st.sampled_from(["s1", "s2", "s3", "s4", "s5", "s6", "", None, 7, ["s"]]),
)


@EXAMPLES
@given(
    spans=st.lists(otel_spans, min_size=1, max_size=6),
    resource=st.lists(st.builds(lambda v: {"key": "service.name", "value": otel_value(v)}, json_values), max_size=2),
    raw=st.sampled_from(RAW_LINES),
)
def test_otel_never_breaks(spans, resource, raw):
    spans = [*spans, "no object"]
    export = {"resourceSpans": [{"resource": {"attributes": resource}, "scopeSpans": [{"spans": spans}]}]}
    ingest(json_text(export) + "\n" + raw + "\n", "otel")
