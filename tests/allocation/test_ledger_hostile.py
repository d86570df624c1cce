"""Hostile values cost their row, never the load; a load that fails leaves nothing.

Each case names the value, the field its rejection must name and a piece of the
reason. The same tests run on SQLite and PostgreSQL (DATABASE_URL), where the
COPY writer would have refused what the portable writer lets through.
"""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from allocation.models import UsageBatch, UsageBucketVersion, UsageLine, UsageRejection
from allocation.selectors.ledger import tag_coverage, usage_batches
from allocation.selectors.rating import usage_summary
from allocation.services import ledger as ledger_service
from allocation.services.ledger import usage_ingest_events, usage_ingest_file, usage_upload_queue
from pricing.errors import NotFound
from pricing.money import decimal_text
from pricing.periods import Period

pytestmark = pytest.mark.django_db

HEADER = "event_id,occurred_at,provider,model,unit,quantity,context_tokens,team,feature,environment\n"
GOOD_CSV = "ok-{n},2026-10-01T10:00:00Z,openai,gpt-4o,input_token,100,,search,answers,production"
SOON = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rejections(batch) -> list[tuple[int, str, str]]:
    return list(batch.rejections.order_by("line", "id").values_list("line", "field", "reason"))


def assert_accounted(batch) -> None:
    """The batch's identity, and a ledger holding exactly what it says it inserted."""
    assert batch.rows_read == batch.inserted + batch.duplicate + batch.rejected
    lines = UsageLine.objects.filter(batch=batch)
    assert lines.count() == batch.lines_inserted
    assert lines.values("source_line").distinct().count() == batch.inserted
    assert batch.rejections.count() == batch.rejected


CSV_CASES = [
    # (the row's values after event_id, the field named, a piece of the reason)
    ("9999-12-31T23:00:00-05:00,openai,gpt-4o,input_token,5,,a,b,c", "occurred_at", "outside the calendar"),
    ("0001-01-01T00:30:00+01:00,openai,gpt-4o,input_token,5,,a,b,c", "occurred_at", "outside the calendar"),
    ("9999-12-31T00:00:00Z,openai,gpt-4o,input_token,5,,a,b,c", "occurred_at", "not a plausible usage time"),
    ("1970-01-01T00:00:00Z,openai,gpt-4o,input_token,5,,a,b,c", "occurred_at", "not a plausible usage time"),
    (f"{SOON},openai,gpt-4o,input_token,5,,a,b,c", "occurred_at", "not a plausible usage time"),
    ("２０２６-10-01T00:00:00,openai,gpt-4o,input_token,5,,a,b,c", "occurred_at", "not an ISO 8601 time"),
    ("2026-10-01T10:00:00Z,openai,gpt-4o,input_token,123456789012345678901234567890,,a,b,c", "quantity", "too large"),
    ("2026-10-01T10:00:00Z,openai,gpt-4o,input_token,1E+999999999,,a,b,c", "quantity", "too large"),
    ("2026-10-01T10:00:00Z,openai,gpt-4o,input_token,٩,,a,b,c", "quantity", "not a number"),
    ("2026-10-01T10:00:00Z,openai,gpt-4o,input_token,0.0000000001,,a,b,c", "quantity", "decimal places"),
    ("2026-10-01T10:00:00Z,openai,gpt-4o,input_token,5,99999999999999999999,a,b,c", "context_tokens", "whole"),
    ("2026-10-01T10:00:00Z,openai,gpt-4o,input_token,5,٣,a,b,c", "context_tokens", "not a whole number"),
    ("2026-10-01T10:00:00Z,openai,gpt-4o,input_token,5,,te\x00am,b,c", "team", "NUL"),
    ("2026-10-01T10:00:00Z,openai,gpt-4o,input_token,5,,a,b,c" + ",x" * 10_000, "(row)", "fields"),
]


@pytest.mark.parametrize(("row", "field", "reason"), CSV_CASES)
def test_csv_hostile_value_is_rejected_and_the_rest_kept(tmp_path, row, field, reason):
    text = HEADER + "\n".join([GOOD_CSV.format(n=1), f"bad,{row}", GOOD_CSV.format(n=2)]) + "\n"
    batch = usage_ingest_file(path=write(tmp_path, "usage.csv", text), source_format="csv")
    assert batch.status == "completed", batch.error
    assert (batch.rows_read, batch.inserted, batch.rejected) == (3, 2, 1)
    [(line, named, why)] = rejections(batch)
    assert line == 3 and named == field and reason in why, why
    assert_accounted(batch)


def test_csv_canonical_spellings_are_accepted_as_their_value(tmp_path):
    rows = [
        "e1,2026-10-01T10:00:00Z,openai,gpt-4o,input_token,1E+3,,a,b,c",
        "e2,2026-10-01T10:00:00Z,openai,gpt-4o,input_token,-0,,a,b,c",
        "e3,2026-10-01T10:00:00Z,openai,gpt-4o,input_token,2.5000000000,,a,b,c",
    ]
    batch = usage_ingest_file(path=write(tmp_path, "usage.csv", HEADER + "\n".join(rows) + "\n"), source_format="csv")
    assert (batch.inserted, batch.rejected) == (3, 0), rejections(batch)
    stored = dict(UsageLine.objects.filter(batch=batch).values_list("event_id", "quantity"))
    assert {k: decimal_text(v) for k, v in stored.items()} == {"e1": "1000", "e2": "0", "e3": "2.5"}


JSONL_GOOD = {
    "event_id": "ok",
    "occurred_at": "2026-10-01T10:00:00Z",
    "provider": "openai",
    "model": "gpt-4o",
    "quantities": {"input_token": 10},
}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


JSONL_CASES = [
    ('{"event_id": "deep", "x": ' + nested(100_000) + "}", "(line)", "nested too deeply"),
    ('{"event_id": "deep", "provider": "openai", "x": ' + nested(40) + "}", "(line)", "nested deeper than 32"),
    ('{"provider": "openai", "quantities": {"input_token": ' + "9" * 5000 + "}}", "(line)", "not JSON"),
    (json.dumps({**JSONL_GOOD, "event_id": "s", "team": "\ud800"}), "team", "lone surrogate"),
    (json.dumps({**JSONL_GOOD, "event_id": "u", "quantities": {"\ud800": 1}}), "unit", "unknown unit"),
    (json.dumps({**JSONL_GOOD, "event_id": "t", "occurred_at": 1e20}), "occurred_at", "not a Unix time"),
    (json.dumps({**JSONL_GOOD, "event_id": "n", "occurred_at": -1e20}), "occurred_at", "not a Unix time"),
    (json.dumps({**JSONL_GOOD, "event_id": "z", "occurred_at": 0}), "occurred_at", "not a plausible usage time"),
    (
        json.dumps({**JSONL_GOOD, "event_id": "q", "quantities": {"input_token": 10**30}}),
        "quantities.input_token",
        "too large",
    ),
    (
        json.dumps({**JSONL_GOOD, "event_id": "f", "quantities": {"input_token": 1e300}}),
        "quantities.input_token",
        "too large",
    ),
    (
        json.dumps({**JSONL_GOOD, "event_id": "d", "image_inputs": [{"width": 9, "height": 9, "detail": [1]}]}),
        "image_inputs[0].detail",
        "low, high or auto",
    ),
    (json.dumps({**JSONL_GOOD, "event_id": "c", "context_tokens": "1" * 5000}), "context_tokens", "not a whole number"),
    ("[1, 2]", "(line)", "not a JSON object"),
]


@pytest.mark.parametrize(("line", "field", "reason"), JSONL_CASES)
def test_jsonl_hostile_line_is_rejected_and_the_rest_kept(tmp_path, line, field, reason):
    first = json.dumps({**JSONL_GOOD, "event_id": "ok-1"})
    last = json.dumps({**JSONL_GOOD, "event_id": "ok-2"})
    batch = usage_ingest_file(path=write(tmp_path, "u.jsonl", f"{first}\n{line}\n{last}\n"), source_format="jsonl")
    assert batch.status == "completed", batch.error
    assert (batch.rows_read, batch.inserted, batch.rejected) == (3, 2, 1)
    [(number, named, why)] = rejections(batch)
    assert number == 2 and named == field and reason in why, (named, why)
    assert_accounted(batch)


def test_a_file_unreadable_from_its_first_line_is_refused_whole(tmp_path):
    text = nested(100_000) + "\n" + json.dumps(JSONL_GOOD) + "\n"
    for source_format in ("jsonl", "openai-usage", "anthropic-usage", "otel"):
        batch = usage_ingest_file(path=write(tmp_path, "deep.json", text), source_format=source_format)
        assert batch.status == "refused" and "nested too deeply" in batch.error, (source_format, batch.error)
        assert not UsageLine.objects.filter(batch=batch).exists() and not batch.rejections.exists()


def openai_page(*results: dict, start: object = 1790812800, end: object = None) -> dict:
    bucket = {"object": "bucket", "start_time": start, "end_time": end or (start + 86400), "results": list(results)}
    return {"object": "page", "data": [bucket], "has_more": False}


def completion(**counts) -> dict:
    return {
        "object": "organization.usage.completions.result",
        "model": "gpt-4o",
        "input_tokens": 100,
        "output_tokens": 10,
        "project_id": "proj_1",
        **counts,
    }


OPENAI_CASES = [
    (openai_page(completion(output_tokens=10**30)), "output_tokens", "too large"),
    (openai_page(completion(input_tokens="٣")), "input_tokens", "not a whole number"),
    (openai_page(completion(input_tokens="²")), "input_tokens", "not a whole number"),
    (openai_page(completion(), start=10**15), "start_time", "not a Unix time"),
    (openai_page(completion(), start=0), "start_time", "not a plausible usage time"),
    (openai_page(completion(), start=1790812800, end=1790812800 - 1), "end_time", "not within"),
    (openai_page(completion(model=["gpt-4o"])), "model", "expected a text or number"),
    (openai_page(completion(service_tier=True)), "service_tier", "expected text, got bool"),
    (openai_page(completion(user_id={"id": 1})), "user_id", "expected a text or number"),
    (openai_page(completion(extra=json.loads(nested(40)))), "(result)", "nested deeper than 32"),
    (
        openai_page(
            {"object": "organization.usage.vector_stores.result", "usage_bytes": 10**20}, end=1790812800 + 31 * 86400
        ),
        "usage_bytes",
        "",
    ),
]


@pytest.mark.parametrize(("page", "field", "reason"), OPENAI_CASES)
def test_openai_usage_hostile_result_is_rejected_and_the_rest_kept(tmp_path, page, field, reason):
    good = openai_page(completion(project_id="proj_good"))
    text = "\n".join(json.dumps(p) for p in (good, page))
    batch = usage_ingest_file(path=write(tmp_path, "openai.jsonl", text), source_format="openai-usage")
    assert batch.status == "completed", batch.error
    if field == "usage_bytes":  # 10^20 bytes for a month is 3.1e12 GB-days: large, but a quantity the ledger holds
        assert (batch.inserted, batch.rejected) == (2, 0), rejections(batch)
        return
    assert (batch.rows_read, batch.inserted, batch.rejected) == (2, 1, 1)
    [(number, named, why)] = rejections(batch)
    assert number == 2 and named.endswith(field) and reason in why, (named, why)
    assert_accounted(batch)


def test_a_later_unreadable_page_line_costs_one_record(tmp_path):
    text = json.dumps(openai_page(completion())) + "\n{not json\n"
    batch = usage_ingest_file(path=write(tmp_path, "openai.jsonl", text), source_format="openai-usage")
    assert (batch.status, batch.inserted, batch.rejected) == ("completed", 1, 1)
    [(_, field, reason)] = rejections(batch)
    assert field == "(line 2)" and reason.startswith("not JSON")


def anthropic_page(start: str, end: str | None, **counts) -> dict:
    result = {"model": "claude-sonnet-4-5", "uncached_input_tokens": 100, "output_tokens": 10, **counts}
    return {"data": [{"starting_at": start, "ending_at": end, "results": [result]}], "has_more": False}


ANTHROPIC_CASES = [
    (anthropic_page("9999-12-31T23:59:59-05:00", None), "starting_at", "outside the calendar"),
    (
        anthropic_page("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z", output_tokens=10**30),
        "output_tokens",
        "too large",
    ),
    (anthropic_page("2026-10-02T00:00:00Z", "2026-10-01T00:00:00Z"), "ending_at", "not after starting_at"),
    (anthropic_page("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z", output_tokens=1.5), "output_tokens", "whole"),
]


@pytest.mark.parametrize(("page", "field", "reason"), ANTHROPIC_CASES)
def test_anthropic_usage_hostile_result_is_rejected_and_the_rest_kept(tmp_path, page, field, reason):
    good = anthropic_page("2026-10-05T00:00:00Z", "2026-10-06T00:00:00Z")
    text = "\n".join(json.dumps(p) for p in (good, page))
    batch = usage_ingest_file(path=write(tmp_path, "anthropic.jsonl", text), source_format="anthropic-usage")
    assert (batch.status, batch.rows_read, batch.inserted, batch.rejected) == ("completed", 2, 1, 1)
    [(_, named, why)] = rejections(batch)
    assert named.endswith(field) and reason in why, (named, why)
    assert_accounted(batch)


def span(span_id: str, start: object = "1790812800000000000", **attributes) -> dict:
    attrs = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10}
    attrs.update(attributes)
    values = [{"key": k, "value": _otel_value(v)} for k, v in attrs.items()]
    return {"traceId": "t1", "spanId": span_id, "startTimeUnixNano": start, "attributes": values}


def _otel_value(value: object) -> dict:
    if isinstance(value, dict):
        return value
    return {"stringValue": value} if isinstance(value, str) else {"intValue": value}


def otel_export(*spans: dict, resource: list | None = None) -> dict:
    return {"resourceSpans": [{"resource": {"attributes": resource or []}, "scopeSpans": [{"spans": list(spans)}]}]}


def deep_value(depth: int) -> dict:
    value: dict = {"stringValue": "x"}
    for _ in range(depth):
        value = {"arrayValue": {"values": [value]}}
    return value


OTEL_CASES = [
    (span("s", start="99999999999999999999"), "startTimeUnixNano", "out of range"),
    (span("s", start="9" * 40), "startTimeUnixNano", "too large"),
    (span("s", start=str(10**18 * 9)), "startTimeUnixNano", "not a plausible usage time"),
    (span("s", start="1"), "startTimeUnixNano", "not a plausible usage time"),
    (span("s", **{"gen_ai.usage.input_tokens": 10**30}), "gen_ai.usage.input_tokens", "too large"),
    (span("s", **{"gen_ai.usage.output_tokens": "١٢"}), "gen_ai.usage.output_tokens", "not a whole number"),
    (span("s", **{"x.deep": deep_value(30)}), "(span)", "nested deeper than 32"),
    (span("s", **{"chargeback.team": "\ud800"}), "team", "lone surrogate"),
]


@pytest.mark.parametrize(("bad", "field", "reason"), OTEL_CASES)
def test_otel_hostile_span_is_rejected_and_the_rest_kept(tmp_path, bad, field, reason):
    text = json.dumps(otel_export(span("good"), bad))
    batch = usage_ingest_file(path=write(tmp_path, "spans.json", text), source_format="otel")
    assert (batch.status, batch.rows_read, batch.inserted, batch.rejected) == ("completed", 2, 1, 1), batch.error
    [(_, named, why)] = rejections(batch)
    assert named.endswith(field) and reason in why, (named, why)
    assert_accounted(batch)


def test_otel_deep_resource_attributes_reject_its_spans_only(tmp_path):
    hostile = otel_export(span("a"), resource=[{"key": "deep", "value": deep_value(40)}])
    text = json.dumps(otel_export(span("good"))) + "\n" + json.dumps(hostile) + "\n"
    batch = usage_ingest_file(path=write(tmp_path, "spans.jsonl", text), source_format="otel")
    assert (batch.status, batch.inserted, batch.rejected) == ("completed", 1, 1)
    assert rejections(batch)[0][1].endswith("resource.attributes")


def test_api_events_hostile_events_are_rejected_each_with_its_reason():
    events = [
        {**JSONL_GOOD, "event_id": "api-ok"},
        json.loads('{"x": ' + nested(40) + "}"),
        {**JSONL_GOOD, "event_id": "api-time", "occurred_at": "9999-12-31T23:00:00-05:00"},
        {**JSONL_GOOD, "event_id": "api-nul", "team": "a\x00b"},
        {1: "keys that are not text", "provider": "openai"},
        "not an object",
    ]
    batch, results = usage_ingest_events(events=events, source_name="gw")
    assert [r.status for r in results] == ["accepted", "rejected", "rejected", "rejected", "rejected", "rejected"]
    assert [r.field for r in results[1:4]] == ["(event)", "occurred_at", "team"]
    assert (batch.status, batch.rows_read, batch.inserted, batch.rejected) == ("completed", 6, 1, 5)
    assert_accounted(batch)


class _FailingWriter:
    """A writer that writes its first chunk, then fails as a lost connection would."""

    def __init__(self, inner):
        self.inner, self.chunks = inner, 0

    def write(self, records):
        self.chunks += 1
        if self.chunks == 2:
            list(records)
            raise RuntimeError("connection lost")
        return self.inner.write(records)


def test_a_load_that_fails_part_way_leaves_nothing_and_no_reader_counts_it(tmp_path, settings, monkeypatch):
    settings.CHARGEBACK_INGEST_CHUNK_ROWS = 2
    real = ledger_service.ledger_writer
    monkeypatch.setattr(ledger_service, "ledger_writer", lambda **kw: _FailingWriter(real(**kw)))
    rows = [GOOD_CSV.format(n=n) for n in range(6)] + ["bad,2026-10-01T10:00:00Z,openai,gpt-4o,nope,1,,a,b,c"]
    path = write(tmp_path, "usage.csv", HEADER + "\n".join(rows) + "\n")
    with pytest.raises(RuntimeError, match="connection lost"):
        usage_ingest_file(path=path, source_format="csv")
    batch = UsageBatch.objects.get()
    assert batch.status == "failed" and "connection lost" in batch.error
    assert (batch.rows_read, batch.inserted, batch.rejected) == (0, 0, 0)
    assert not UsageLine.objects.exists() and not UsageRejection.objects.exists()
    period = Period.parse("2026-10")
    assert usage_summary(period=period, group_by=["provider"]) == []
    assert tag_coverage(period=period) == []

    monkeypatch.setattr(ledger_service, "ledger_writer", real)
    again = usage_ingest_file(path=path, source_format="csv")
    assert (again.status, again.inserted, again.duplicate, again.rejected) == ("completed", 6, 0, 1)


def test_a_bucket_load_that_fails_part_way_leaves_no_line_or_version(tmp_path, settings, monkeypatch):
    settings.CHARGEBACK_INGEST_CHUNK_ROWS = 1
    real = ledger_service.BucketLedgerWriter
    monkeypatch.setattr(ledger_service, "BucketLedgerWriter", lambda **kw: _FailingWriter(real(**kw)))
    pages = [openai_page(completion(project_id=f"p{n}")) for n in range(3)]
    path = write(tmp_path, "openai.jsonl", "\n".join(json.dumps(p) for p in pages))
    with pytest.raises(RuntimeError):
        usage_ingest_file(path=path, source_format="openai-usage")
    assert UsageBatch.objects.get().status == "failed"
    assert not UsageLine.objects.exists() and not UsageBucketVersion.objects.exists()


def test_progress_is_published_while_the_load_runs_and_shown_on_a_running_batch(tmp_path, settings):
    settings.CHARGEBACK_INGEST_CHUNK_ROWS = 2
    seen = []

    def watch(batch):
        # What a page reads meanwhile: the batch's row is unchanged, the cache has the counts.
        live = usage_batches().get(pk=batch.pk)
        seen.append((live.status, live.rows_read, live.inserted))

    path = write(tmp_path, "usage.csv", HEADER + "\n".join(GOOD_CSV.format(n=n) for n in range(5)) + "\n")
    batch = usage_ingest_file(path=path, source_format="csv", progress=watch)
    assert seen == [("running", 2, 2), ("running", 4, 4), ("running", 5, 5)]
    assert usage_batches().get(pk=batch.pk).rows_read == 5


def test_an_upload_with_a_600_character_name_is_kept_under_our_own_name(
    settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = str(tmp_path)
    name = "u" * 596 + ".csv"
    upload = SimpleUploadedFile(name, (HEADER + GOOD_CSV.format(n=1) + "\n").encode())
    with django_capture_on_commit_callbacks(execute=True):  # the task runs eagerly on commit
        batch = usage_upload_queue(uploaded_file=upload, source_format="csv", actor=None)
    batch.refresh_from_db()
    assert (batch.status, batch.inserted) == ("completed", 1), batch.error
    # Django keeps 255 characters of an upload's name: more than a file system takes with our prefix.
    assert batch.source_name == upload.name and len(upload.name) == 255
    assert [p.name for p in (tmp_path / "usage-uploads").iterdir()] == [f"batch-{batch.pk}.csv"]


def test_an_upload_that_cannot_be_kept_fails_its_batch_not_left_pending(settings, tmp_path):
    blocker = tmp_path / "media"
    blocker.write_text("a file where the media folder should be")
    settings.MEDIA_ROOT = str(blocker)
    upload = SimpleUploadedFile("usage.csv", HEADER.encode())
    with pytest.raises(OSError):
        usage_upload_queue(uploaded_file=upload, source_format="csv", actor=None)
    batch = UsageBatch.objects.get()
    assert batch.status == "failed" and "could not be kept" in batch.error


def test_a_batch_whose_file_is_gone_is_failed_not_left_running(tmp_path):
    from allocation.services.ledger import usage_batch_create, usage_batch_ingest_file

    batch = usage_batch_create(source_format="csv", source_name="gone.csv")
    with pytest.raises(NotFound):
        usage_batch_ingest_file(batch=batch, path=tmp_path / "gone.csv")
    batch.refresh_from_db()
    assert batch.status == "failed" and "cannot be read" in batch.error
