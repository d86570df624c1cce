"""Every CSV the allocation side writes goes through the one writer (pricing.csv_export): a hostile
tag or record comes out as text a spreadsheet will not run, and amounts, negative ones too, stay numbers.

Tags reach the ledger stripped of surrounding whitespace, so the tab and carriage return cases are
written onto the lines (and rejections) directly: the writer must hold whatever a line carries.
"""

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from allocation.models import AllocationLine, UsageBatch
from allocation.services.ledger import usage_ingest_file
from allocation.services.runs.focus_export import focus_export

from .runs_focus_rules import focus_violations, mandatory_columns, read_focus_csv
from .runs_world import MONTH, build_run, usage
from .test_runs_focus_export import FIXTURES

pytestmark = pytest.mark.django_db

# OWASP's formula starters, as a tag, a model or a rejected record might carry them.
HOSTILE = ('=HYPERLINK("http://x")', "+1", "-1+1", "@SUM(A1)", "\tx", "\rx")
# The ones that survive ingestion (which strips whitespace around a tag).
INGESTED = HOSTILE[:4]


def neutralized(value: str) -> str:
    return "'" + value


@pytest.fixture
def run(tmp_path, django_user_model):
    """The scenario, plus one unmapped call per hostile team tag; the whitespace ones set on lines."""
    events = [usage(f"hostile-{n}", "input_token", 1_000_000, team=tag) for n, tag in enumerate(INGESTED)]
    run = build_run(tmp_path, django_user_model, extra_events=tuple(events))
    untagged = AllocationLine.objects.filter(run=run, reason="untagged").order_by("id")
    assert untagged.count() >= 2
    for line, tag in zip(untagged, HOSTILE[4:], strict=False):
        AllocationLine.objects.filter(pk=line.pk).update(team=tag)
    return run


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))


def test_lines_csv_neutralizes_hostile_tags_and_keeps_negative_amounts_numbers(client, user, run):
    user.groups.add(Group.objects.get_or_create(name="finance_analyst")[0])
    client.force_login(user)
    header, *rows = _csv(client.get(reverse("allocation-run-lines-csv", args=[run.pk])))

    teams = {row[header.index("team")] for row in rows}
    assert {neutralized(tag) for tag in HOSTILE} <= teams
    assert not teams & set(HOSTILE)
    assert all(not cell.startswith(("=", "+", "@", "\t", "\r")) for row in rows for cell in row)
    # Negative amounts (the rate card's spread, the platform's recovery) are numbers, not quoted text.
    amounts = [row[header.index("amount")] for row in rows]
    assert any(Decimal(amount) < 0 for amount in amounts)
    assert sum(Decimal(amount) for amount in amounts) == run.invoice_total


def test_focus_export_neutralizes_hostile_tags_and_stays_focus_clean(run):
    stream = io.StringIO(newline="")
    focus_export(period=MONTH, stream=stream)
    header, rows = read_focus_csv(stream.getvalue())

    assert focus_violations(header, rows, mandatory=mandatory_columns(FIXTURES / "focus_1.2_column_presence.txt")) == []
    teams = {row["x_Team"] for row in rows}
    assert {neutralized(tag) for tag in HOSTILE} <= teams
    assert not teams & set(HOSTILE)
    # Tags is a JSON object (it begins with '{'), so the exact tag value survives there.
    tags = {row["Tags"] for row in rows if row["Tags"]}
    assert '{"team": "=HYPERLINK(\\"http://x\\")"}' in tags
    assert all(not (cell or "").startswith(("=", "+", "@", "\t", "\r")) for row in rows for cell in row.values())
    # Negative costs (the rate card's spread, a credit) stay plain numbers.
    assert any(Decimal(row["BilledCost"]) < 0 for row in rows)
    assert sum(Decimal(row["BilledCost"]) for row in rows) == run.invoice_total


USAGE_CSV = """\
event_id,occurred_at,provider,model,unit,quantity,team
=HYPERLINK("http://x"),not-a-time,openai,gpt-4o,input_token,5,search
"""


@pytest.fixture
def batch(tmp_path) -> UsageBatch:
    path = tmp_path / "usage.csv"
    path.write_text(USAGE_CSV, encoding="utf-8")
    batch = usage_ingest_file(path=path, source_format="csv")
    assert batch.rejected == 1
    for number, value in enumerate(HOSTILE, start=10):
        batch.rejections.create(line=number, field=value, reason=value, raw=value)
    return batch


def _assert_rejections_neutralized(rows: list[list[str]], batch: UsageBatch) -> None:
    header, first, *hostile = rows
    assert header == ["batch", "source", "line", "field", "reason", "raw"]
    assert first[2] == "2" and first[5] == neutralized(
        '=HYPERLINK("http://x"),not-a-time,openai,gpt-4o,input_token,5,search'
    )
    assert [row[3:] for row in hostile] == [[neutralized(value)] * 3 for value in HOSTILE]
    assert [row[:3] for row in hostile] == [[str(batch.pk), batch.source_name, str(n)] for n in range(10, 16)]


def test_rejections_page_download_neutralizes_hostile_records(client_logged_in, batch):
    _assert_rejections_neutralized(_csv(client_logged_in.get(f"/usage/batches/{batch.pk}/rejections.csv")), batch)


def test_rejections_api_neutralizes_hostile_records(api_client, batch):
    _assert_rejections_neutralized(_csv(api_client.get(f"/api/v1/usage/batches/{batch.pk}/rejections")), batch)
