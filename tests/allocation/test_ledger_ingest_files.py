"""Our CSV and JSON lines: bad rows, duplicates, refused files, the rows-read identity."""

import csv
import io
import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum

from allocation.models import UsageBatch, UsageLine
from allocation.services.ledger import usage_ingest_file
from allocation.services.ledger.image_tiles import image_input_tokens, image_tile_count

pytestmark = pytest.mark.django_db

HEADER = "event_id,occurred_at,provider,model,unit,quantity,team,feature,environment,tenant,user\n"
GOOD = [
    "req-1,2026-10-01T10:00:00Z,openai,gpt-4o,input_token,1200,search,answers,production,acme,u1",
    "req-1,2026-10-01T10:00:00Z,openai,gpt-4o,cached_input_token,800,search,answers,production,acme,u1",
    "req-1,2026-10-01T10:00:00Z,openai,gpt-4o,output_token,300,search,answers,production,acme,u1",
    "req-2,2026-10-02 08:30:00,anthropic,claude-sonnet-4-5,cache_write_1h_token,5000,search,answers,eval,,",
    "req-3,2026-10-03T00:00:00+02:00,openai,gpt-4o-mini,input_token,77,,,,,",
]
BAD = [
    ("req-4,2026-10-01T10:00:00Z,openai,gpt-4o,input_tokens,12,search,answers,production,,", "unit", "unknown unit"),
    ("req-5,2026-10-01T10:00:00Z,openai,gpt-4o,input_token,-3,search,answers,production,,", "quantity", "negative"),
    (
        "req-6,2026-10-01T10:00:00Z,openai,gpt-4o,input_token,lots,search,answers,production,,",
        "quantity",
        "not a number",
    ),
    ("req-7,last tuesday,openai,gpt-4o,input_token,5,search,answers,production,,", "occurred_at", "not an ISO 8601"),
    ("req-8,,openai,gpt-4o,input_token,5,search,answers,production,,", "occurred_at", "missing"),
    ("req-9,2026-10-01T10:00:00Z,,gpt-4o,input_token,5,search,answers,production,,", "provider", "missing"),
    ("req-10,2026-10-01T10:00:00Z,openai,gpt-4o,input_token,NaN,search,answers,production,,", "quantity", "finite"),
    ("req-11,2026-10-01T10:00:00Z,openai,gpt-4o,input_token", "(row)", "fields"),
]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bad_rows_are_rejected_with_line_field_and_reason_and_good_rows_kept(tmp_path):
    lines = [GOOD[0], BAD[0][0], GOOD[1], *(b[0] for b in BAD[1:]), *GOOD[2:]]
    path = write(tmp_path, "usage.csv", HEADER + "\n".join(lines) + "\n")
    batch = usage_ingest_file(path=path, source_format="csv")

    assert batch.status == "completed"
    assert (batch.rows_read, batch.inserted, batch.duplicate, batch.rejected) == (13, 5, 0, 8)
    assert batch.rows_read == batch.inserted + batch.duplicate + batch.rejected
    rejections = list(batch.rejections.order_by("line").values_list("line", "field", "reason"))
    # Line numbers count the header as line 1, as an editor shows them.
    assert rejections[0][:2] == (3, "unit") and "unknown unit 'input_tokens'" in rejections[0][2]
    for (_, field, reason), (_, expected_field, expected_reason) in zip(rejections[1:], BAD[1:], strict=True):
        assert field == expected_field
        assert expected_reason in reason
    assert UsageLine.objects.count() == 5
    assert UsageLine.objects.aggregate(q=Sum("quantity"))["q"] == Decimal(1200 + 800 + 300 + 5000 + 77)


def test_times_are_stored_in_utc_and_untagged_lines_are_kept_and_marked(tmp_path):
    path = write(tmp_path, "usage.csv", HEADER + "\n".join(GOOD) + "\n")
    usage_ingest_file(path=path, source_format="csv")
    offset = UsageLine.objects.get(event_id="req-3")
    assert offset.occurred_at.isoformat() == "2026-10-02T22:00:00+00:00"
    assert offset.is_untagged and offset.modality == "text"
    naive = UsageLine.objects.get(event_id="req-2")
    assert naive.occurred_at.isoformat() == "2026-10-02T08:30:00+00:00"
    assert naive.environment == "eval" and not naive.is_untagged
    assert UsageLine.objects.filter(is_untagged=True).count() == 1


def test_the_same_file_again_inserts_nothing_and_counts_duplicates(tmp_path):
    path = write(tmp_path, "usage.csv", HEADER + "\n".join(GOOD + [BAD[0][0]]) + "\n")
    first = usage_ingest_file(path=path, source_format="csv")
    second = usage_ingest_file(path=path, source_format="csv")
    assert (first.inserted, first.duplicate, first.rejected) == (5, 0, 1)
    assert (second.rows_read, second.inserted, second.duplicate, second.rejected) == (6, 0, 5, 1)
    assert UsageLine.objects.count() == 5


def test_overlapping_files_and_repeats_inside_a_file_count_once(tmp_path, settings):
    settings.CHARGEBACK_INGEST_CHUNK_ROWS = 3  # repeats fall in later chunks than their first copy
    rows = [f"r{i},2026-10-05T00:00:{i:02d}Z,openai,gpt-4o,input_token,{i + 1},t,f,production,," for i in range(10)]
    first = usage_ingest_file(path=write(tmp_path, "a.csv", HEADER + "\n".join(rows[:6]) + "\n"), source_format="csv")
    second_text = HEADER + "\n".join(rows[3:] + rows[8:]) + "\n"  # 3 known, 4 new, 2 repeated in the file
    second = usage_ingest_file(path=write(tmp_path, "b.csv", second_text), source_format="csv")
    assert (first.inserted, first.duplicate) == (6, 0)
    assert (second.rows_read, second.inserted, second.duplicate) == (9, 4, 5)
    assert UsageLine.objects.count() == 10
    assert UsageLine.objects.aggregate(q=Sum("quantity"))["q"] == sum(range(1, 11))


def test_rows_without_event_id_are_keyed_by_their_content(tmp_path):
    header = "occurred_at,provider,model,unit,quantity,team\n"
    text = (
        header
        + "2026-10-01T00:00:00Z,openai,gpt-4o,input_token,5,a\n2026-10-01T00:00:00Z,openai,gpt-4o,input_token,6,a\n"
    )
    path = write(tmp_path, "noid.csv", text)
    assert usage_ingest_file(path=path, source_format="csv").inserted == 2
    assert usage_ingest_file(path=path, source_format="csv").duplicate == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("when,who,what\n1,2,3\n", "missing required column(s) occurred_at, provider, unit, quantity"),
        (HEADER.strip() + ",colour\n", "unknown column(s) colour"),
    ],
)
def test_a_file_that_is_not_our_csv_is_refused_whole(tmp_path, text, message):
    batch = usage_ingest_file(path=write(tmp_path, "odd.csv", text), source_format="csv")
    assert batch.status == "refused"
    assert message in batch.error and "odd.csv" in batch.error
    assert not UsageLine.objects.exists()


def test_binary_garbage_is_refused_not_crashed(tmp_path):
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" * 50)
    batch = usage_ingest_file(path=path, source_format="csv")
    assert batch.status == "refused" and "UTF-8" in batch.error


def test_jsonl_events_with_several_quantities_and_derived_image_tiles(tmp_path):
    events = [
        {
            "event_id": "g-1",
            "occurred_at": "2026-10-07T12:00:00Z",
            "provider": "openai",
            "model": "gpt-4o",
            "team": "vision",
            "feature": "receipts",
            "environment": "production",
            "quantities": {"input_token": 900, "cached_input_token": 100, "output_token": 50},
            "image_inputs": [
                {"width": 1024, "height": 1024, "detail": "high"},
                {"width": 4000, "height": 3000, "detail": "low"},
            ],
        },
        {
            "event_id": "g-2",
            "occurred_at": "2026-10-07T12:01:00Z",
            "provider": "openai",
            "model": "gpt-4o",
            "quantities": {"input_token": "ten"},
        },
    ]
    text = "\n".join(json.dumps(e) for e in events) + "\nnot json at all\n"
    batch = usage_ingest_file(path=write(tmp_path, "gw.jsonl", text), source_format="jsonl")
    assert (batch.rows_read, batch.inserted, batch.rejected, batch.lines_inserted) == (3, 1, 2, 4)
    units = dict(UsageLine.objects.values_list("unit", "quantity"))
    # 1024x1024 high: 4 tiles -> 85 + 4 x 170 = 765; low detail: the flat 85.
    assert units == {"input_token": 900, "cached_input_token": 100, "output_token": 50, "image_input_token": 765 + 85}
    assert list(batch.rejections.values_list("line", "field")) == [(2, "quantities.input_token"), (3, "(line)")]


def test_csv_image_row_given_as_dimensions(tmp_path):
    text = (
        "event_id,occurred_at,provider,model,unit,quantity,image_width,image_height,image_detail\n"
        "i-1,2026-10-01T00:00:00Z,openai,gpt-4o-mini,image_input_token,,2048,4096,high\n"
        "i-2,2026-10-01T00:00:00Z,openai,gpt-4o,image_input_token,,0,100,high\n"
    )
    batch = usage_ingest_file(path=write(tmp_path, "img.csv", text), source_format="csv")
    assert (batch.inserted, batch.rejected) == (1, 1)
    # 2048x4096 fits 1024x2048, shortest side to 768: 768x1536 = 2 x 3 tiles; gpt-4o-mini 2833 + 6 x 5667.
    assert UsageLine.objects.get().quantity == 2833 + 6 * 5667
    assert batch.rejections.get().field == "image_width"


@pytest.mark.parametrize(
    ("size", "detail", "tiles"),
    [
        ((1024, 1024), "high", 4),
        ((2048, 4096), "high", 6),
        ((512, 512), "high", 1),
        ((4000, 3000), "low", 0),
        ((768, 768), "auto", 4),
        ((100, 3000), "high", 4),
    ],
)
def test_image_tile_count(size, detail, tiles):
    assert image_tile_count(*size, detail) == tiles


def test_image_tokens_follow_the_model_family():
    assert image_input_tokens(1024, 1024, "high", "gpt-4o") == 85 + 4 * 170
    assert image_input_tokens(1024, 1024, "low", "gpt-4o-mini") == 2833


def test_command_prints_one_json_object_and_fails_on_a_refused_file(tmp_path):
    path = write(tmp_path, "usage.csv", HEADER + "\n".join(GOOD + [BAD[0][0]]) + "\n")
    out = io.StringIO()
    call_command("ingest_usage", str(path), "--format", "csv", stdout=out)
    report = json.loads(out.getvalue())
    assert {k: report[k] for k in ("status", "rows_read", "inserted", "duplicate", "rejected")} == {
        "status": "completed",
        "rows_read": 6,
        "inserted": 5,
        "duplicate": 0,
        "rejected": 1,
    }
    assert report["rejections"]["api"] == f"/api/v1/usage/batches/{report['batch_id']}/rejections"

    bad = write(tmp_path, "bad.csv", "a,b\n1,2\n")
    out = io.StringIO()
    with pytest.raises(CommandError, match="refused"):
        call_command("ingest_usage", str(bad), "--format", "csv", stdout=out)
    assert json.loads(out.getvalue())["status"] == "refused"
    assert UsageBatch.objects.get(pk=json.loads(out.getvalue())["batch_id"]).status == "refused"


def test_batch_progress_is_recorded(tmp_path, settings):
    settings.CHARGEBACK_INGEST_CHUNK_ROWS = 2
    seen: list[tuple[int, float]] = []
    path = write(tmp_path, "usage.csv", HEADER + "\n".join(GOOD) + "\n")
    batch = usage_ingest_file(path=path, source_format="csv", progress=lambda b: seen.append((b.rows_read, b.progress)))
    assert [rows for rows, _ in seen] == [2, 4, 5]
    assert batch.progress == 1.0 and batch.bytes_read == path.stat().st_size


def test_rejections_download_lists_every_rejected_row(tmp_path, api_client):
    path = write(tmp_path, "usage.csv", HEADER + "\n".join(GOOD + [b[0] for b in BAD]) + "\n")
    batch = usage_ingest_file(path=path, source_format="csv")
    response = api_client.get(f"/api/v1/usage/batches/{batch.pk}/rejections")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["batch", "source", "line", "field", "reason", "raw"]
    assert len(rows) == 1 + len(BAD)
    assert rows[1][2:4] == ["7", "unit"] and rows[1][5].startswith("req-4,")


def test_a_batch_is_run_once_and_a_crashed_one_starts_over(tmp_path):
    from allocation.services.ledger import usage_batch_create, usage_batch_ingest_file

    path = write(tmp_path, "usage.csv", HEADER + "\n".join(GOOD + [BAD[0][0]]) + "\n")
    batch = usage_batch_create(source_format="csv", source_name="usage.csv")
    usage_batch_ingest_file(batch=batch, path=path)
    again = usage_batch_ingest_file(batch=batch, path=path)  # a redelivered task
    assert (again.status, again.rows_read, again.inserted, again.rejected) == ("completed", 6, 5, 1)

    # A worker that died part-way left the batch running: a re-run starts its counts over.
    UsageBatch.objects.filter(pk=batch.pk).update(status="running")
    batch.refresh_from_db()
    rerun = usage_batch_ingest_file(batch=batch, path=path)
    assert (rerun.status, rerun.rows_read, rerun.inserted, rerun.duplicate, rerun.rejected) == ("completed", 6, 0, 5, 1)
    assert rerun.rejections.count() == 1 and UsageLine.objects.count() == 5
