"""The reference ERP client (examples/erp_pull.py) end to end: run as a subprocess against
a live server with a real ERP token, it pulls October's journal entries, posts each to its
stand-in ERP (a JSON ledger) and acknowledges it; killed in the middle, at the worst
moment (posted, not yet acknowledged), it resumes without posting anything twice."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from allocation.services.access import api_token_issue
from chargeback.choices import JournalEntryStatus, StatementStatus
from chargeback.models import AuditEvent, JournalEntry, Statement
from chargeback.services.statements import statement_approve, statement_submit, statements_build
from tests.chargeback.close_world import MONTH, close_world

CLIENT = Path(__file__).resolve().parents[2] / "examples" / "erp_pull.py"
CRASH_EXIT = 3
# The live server answers from its own thread: transactions are real. The units and
# other rows the migrations seed are kept across the tests' flushes.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def world(db, tmp_path, django_user_model, settings):
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    world = close_world(tmp_path, django_user_model)
    statements_build(period=MONTH, actor=world["analyst"])
    for statement in Statement.objects.filter(period=str(MONTH)).order_by("id"):
        statement_approve(
            statement=statement_submit(statement=statement, actor=world["analyst"]), actor=world["approver"]
        )
    world["entries"] = JournalEntry.objects.count()
    assert world["entries"] >= 3
    world["token"] = api_token_issue(name="erp", scope="erp").secret
    return world


def run_client(live_server, world, tmp_path: Path, *, crash_after: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ERP_TOKEN": world["token"]}
    env.pop("ERP_PULL_CRASH_AFTER", None)
    if crash_after is not None:
        env["ERP_PULL_CRASH_AFTER"] = str(crash_after)
    command = [sys.executable, str(CLIENT), "--base-url", live_server.url, "--period", str(MONTH)]
    command += ["--ledger", str(tmp_path / "ledger.json"), "--state", str(tmp_path / "state.json")]
    command += ["--page-size", "2"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def assert_each_entry_posted_once(tmp_path: Path) -> dict:
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    entries = list(JournalEntry.objects.all())
    assert {entry.external_id: entry.erp_document_number for entry in entries} == ledger
    assert len(set(ledger.values())) == len(ledger) == len(entries)
    assert all(entry.status == JournalEntryStatus.ACKNOWLEDGED for entry in entries)
    acknowledged = Counter(
        AuditEvent.objects.filter(subject="journal_entry", action="acknowledge").values_list("subject_id", flat=True)
    )
    assert acknowledged == Counter({str(entry.pk): 1 for entry in entries})
    with_entries = Statement.objects.filter(journal_entries__isnull=False).distinct()
    assert with_entries and all(statement.status == StatementStatus.POSTED for statement in with_entries)
    return ledger


def test_a_full_pull_posts_and_acknowledges_every_entry_once(live_server, world, tmp_path):
    done = run_client(live_server, world, tmp_path)
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.splitlines()[-1])
    assert counts["posted"] == counts["acknowledged"] == world["entries"]
    ledger = assert_each_entry_posted_once(tmp_path)

    # Run again: its checkpoint finds nothing new to post.
    again = run_client(live_server, world, tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["posted"] == 0
    assert json.loads((tmp_path / "ledger.json").read_text()) == ledger


def test_a_crash_between_posting_and_acknowledging_resumes_without_posting_twice(live_server, world, tmp_path):
    crashed = run_client(live_server, world, tmp_path, crash_after=2)
    assert crashed.returncode == CRASH_EXIT, crashed.stderr
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    assert len(ledger) == 3  # two acknowledged, the third posted but not acknowledged
    assert JournalEntry.objects.filter(status=JournalEntryStatus.ACKNOWLEDGED).count() == 2
    [limbo] = JournalEntry.objects.exclude(status=JournalEntryStatus.ACKNOWLEDGED).filter(external_id__in=ledger)

    resumed = run_client(live_server, world, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    counts = json.loads(resumed.stdout.splitlines()[-1])
    assert counts["posted"] == world["entries"] - 3
    final = assert_each_entry_posted_once(tmp_path)
    assert final[limbo.external_id] == ledger[limbo.external_id]  # acknowledged with the number it was posted as
