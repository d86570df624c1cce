"""Journal entries through the API as the ERP pulls them: real API tokens, the URL rules,
the keyset pages, the one error shape, `Idempotency-Key`. October's statements are built,
sent for review and signed off (tests/chargeback/close_world.py), which writes their
journal entries."""

import csv
import io
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from allocation.access import ServiceAccount
from allocation.services.access import api_token_issue
from chargeback.choices import JournalEntryStatus, StatementStatus
from chargeback.models import AuditEvent, JournalEntry, JournalLine, Statement
from chargeback.services import journals as journals_service
from chargeback.services.journals import journal_entry_acknowledge
from chargeback.services.statements import statement_approve, statement_submit, statements_build
from tests.chargeback.close_world import MONTH, close_world
from tests.threads import in_thread

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"code", "message", "extra"}


@pytest.fixture
def world(db, tmp_path, django_user_model, settings):
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    world = close_world(tmp_path, django_user_model)
    statements_build(period=MONTH, actor=world["analyst"])
    for statement in Statement.objects.filter(period=str(MONTH)).order_by("id"):
        statement_approve(
            statement=statement_submit(statement=statement, actor=world["analyst"]), actor=world["approver"]
        )
    world["tokens"] = {
        name: api_token_issue(name=name, scope="user", username=world[name].username).secret
        for name in ("approver", "analyst", "member")
    }
    erp = api_token_issue(name="erp", scope="erp")
    world["tokens"]["erp"], world["erp_account"] = erp.secret, ServiceAccount(erp.token)
    assert JournalEntry.objects.count() >= 2
    return world


def client_of(world, who: str) -> APIClient:
    return APIClient(headers={"Authorization": f"Bearer {world['tokens'][who]}"})


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == ERROR_KEYS and body["code"] == code, body
    return body


def pull(client: APIClient, query: str = "", page_size: int = 2) -> tuple[list[dict], str | None, int]:
    """Every page of a list, following `next`; the entries, the last cursor and the pages."""
    url, entries, pages, cursor = f"/api/v1/journal-entries?page_size={page_size}&{query}", [], 0, None
    while url:
        body = client.get(url).json()
        entries += body["results"]
        cursor, url, pages = body["cursor"], body["next"], pages + 1
    return entries, cursor, pages


def test_an_entry_has_its_header_and_balanced_lines_in_cents_and_decimal_text(world):
    erp = client_of(world, "erp")
    entry = JournalEntry.objects.order_by("id").first()
    body = erp.get(f"/api/v1/journal-entries/{entry.pk}").json()
    assert body["external_id"] == entry.external_id and body["period"] == "2026-10"
    assert (body["company"], body["currency"], body["kind"], body["status"]) == (
        entry.company,
        entry.currency,
        entry.kind,
        "ready",
    )
    assert body["posting_date"] == entry.posting_date.isoformat() and body["reverses"] is None
    lines = body["lines"]
    assert [line["line_no"] for line in lines] == sorted(line.line_no for line in entry.lines.all())
    debits = sum(line["debit_cents"] for line in lines)
    assert debits == sum(line["credit_cents"] for line in lines) == body["total_cents"] > 0
    for line in lines:
        assert Decimal(line["debit"]) * 100 == line["debit_cents"]
        assert Decimal(line["credit"]) * 100 == line["credit_cents"]
    assert Decimal(body["total"]) * 100 == debits


def test_pages_walk_every_entry_once_in_updated_order_and_stay_put_while_entries_arrive(world):
    erp = client_of(world, "erp")
    entries, cursor, pages = pull(erp, "period=2026-10", page_size=1)
    assert sorted(e["id"] for e in entries) == sorted(JournalEntry.objects.values_list("id", flat=True))
    assert len(entries) == len({e["id"] for e in entries}) and pages >= 2
    assert [(e["updated_at"], e["id"]) for e in entries] == sorted((e["updated_at"], e["id"]) for e in entries)

    # Mid-pull, an entry changes (the ERP acknowledges one): the page after the first still
    # starts where the first ended, and the changed one comes last.
    first = erp.get("/api/v1/journal-entries?page_size=1").json()
    moved = JournalEntry.objects.exclude(pk=first["results"][0]["id"]).order_by("updated_at", "id").first()
    acknowledged = erp.post(
        f"/api/v1/journal-entries/{moved.pk}/acknowledge", {"document_number": "JE-7"}, format="json"
    )
    assert acknowledged.status_code == 200
    rest, _, _ = pull(erp, f"cursor={first['cursor']}", page_size=1)
    assert [e["id"] for e in rest][-1] == moved.pk
    assert {e["id"] for e in rest} | {first["results"][0]["id"]} == {e["id"] for e in entries}

    # The last cursor is a checkpoint: nothing after it, until something changes.
    assert erp.get(f"/api/v1/journal-entries?cursor={cursor}").json()["results"][0]["id"] == moved.pk


def test_filters_period_status_cost_center_and_updated_after(world):
    finance = client_of(world, "analyst")
    every = JournalEntry.objects.count()
    assert len(pull(finance, "period=2026-10")[0]) == every
    assert pull(finance, "period=2026-09")[0] == []
    assert len(pull(finance, "status=ready")[0]) == every and pull(finance, "status=acknowledged")[0] == []
    one = JournalEntry.objects.order_by("id").first()
    mine = pull(finance, f"cost_center={one.cost_center.code}")[0]
    assert mine and {e["cost_center"] for e in mine} == {one.cost_center.code}
    newest = JournalEntry.objects.order_by("-updated_at").first().updated_at
    after = (newest - timedelta(microseconds=1)).isoformat().replace("+00:00", "Z")
    assert [e["id"] for e in pull(finance, f"updated_after={after.replace('+', '%2B')}")[0]] == [
        JournalEntry.objects.order_by("-updated_at").first().pk
    ]
    assert_error(finance.get("/api/v1/journal-entries?status=lost"), 400, "validation_failed")
    assert_error(finance.get("/api/v1/journal-entries?period=2026-13"), 400, "validation_failed")
    assert_error(finance.get("/api/v1/journal-entries?page_size=501"), 400, "invalid_pagination")
    assert_error(finance.get("/api/v1/journal-entries?cursor=bm90IGEgY3Vyc29y"), 400, "invalid_pagination")
    assert_error(finance.get("/api/v1/journal-entries?cursor=%E2%82%AC"), 400, "invalid_pagination")


def test_acknowledging_is_idempotent_conflicts_on_another_number_and_posts_the_statement(world):
    erp = client_of(world, "erp")
    statement = Statement.objects.filter(journal_entries__isnull=False).order_by("id").first()
    entries = list(statement.journal_entries.order_by("id"))
    first = erp.post(f"/api/v1/journal-entries/{entries[0].pk}/acknowledge", {"document_number": "JE-1"}, format="json")
    assert first.status_code == 200 and first.json()["status"] == "acknowledged"
    assert first.json()["erp_document_number"] == "JE-1"
    again = erp.post(f"/api/v1/journal-entries/{entries[0].pk}/acknowledge", {"document_number": "JE-1"}, format="json")
    assert again.status_code == 200 and again.json() == first.json()
    other = assert_error(
        erp.post(f"/api/v1/journal-entries/{entries[0].pk}/acknowledge", {"document_number": "JE-2"}, format="json"),
        409,
        "journal_entry_acknowledged",
    )
    assert other["extra"]["erp_document_number"] == "JE-1"
    assert AuditEvent.objects.filter(subject="journal_entry", action="acknowledge").count() == 1
    assert_error(
        erp.post(f"/api/v1/journal-entries/{entries[0].pk}/acknowledge", {"document_number": ""}, format="json"),
        400,
        "validation_failed",
    )
    assert_error(
        erp.post("/api/v1/journal-entries/999999/acknowledge", {"document_number": "JE-9"}, format="json"),
        404,
        "not_found",
    )

    # With an Idempotency-Key, a retry replays; the same key for another body is refused.
    for number, entry in enumerate(entries[1:], start=2):
        path = f"/api/v1/journal-entries/{entry.pk}/acknowledge"
        key = {"HTTP_IDEMPOTENCY_KEY": f"ack-{entry.pk}"}
        done = erp.post(path, {"document_number": f"JE-{number}"}, format="json", **key)
        replay = erp.post(path, {"document_number": f"JE-{number}"}, format="json", **key)
        assert done.status_code == replay.status_code == 200 and replay.json() == done.json()
        assert replay["Idempotent-Replayed"] == "true"
        assert_error(erp.post(path, {"document_number": "JE-X"}, format="json", **key), 409, "idempotency_key_reused")
    statement.refresh_from_db()
    assert statement.status == StatementStatus.POSTED


def test_who_reads_and_who_acknowledges(world):
    entry = JournalEntry.objects.order_by("id").first()
    for who in ("analyst", "approver", "erp"):
        assert client_of(world, who).get(f"/api/v1/journal-entries/{entry.pk}").status_code == 200
    # Team members see their statements, not the ledger (VIEW_JOURNAL_ENTRIES, as for the pages).
    member = client_of(world, "member")
    for path in ("/api/v1/journal-entries", f"/api/v1/journal-entries/{entry.pk}", "/api/v1/journal-entries.csv"):
        assert_error(member.get(path), 403, "not_allowed")
    # Finance reads but does not acknowledge: that is the ERP's word.
    refused = client_of(world, "approver").post(
        f"/api/v1/journal-entries/{entry.pk}/acknowledge", {"document_number": "JE-1"}, format="json"
    )
    assert_error(refused, 403, "not_allowed")
    assert JournalEntry.objects.get(pk=entry.pk).status == JournalEntryStatus.READY


def test_the_csv_holds_the_same_entries_a_row_per_line(world):
    response = client_of(world, "erp").get("/api/v1/journal-entries.csv?period=2026-10")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == JournalLine.objects.count()
    assert {row["external_id"] for row in rows} == set(JournalEntry.objects.values_list("external_id", flat=True))
    debits = sum(Decimal(row["debit"] or "0") for row in rows)
    assert debits == sum(Decimal(row["credit"] or "0") for row in rows) > 0
    empty = client_of(world, "erp").get("/api/v1/journal-entries.csv?period=2026-09")
    assert b"".join(empty.streaming_content).decode().count("\n") == 1


def test_the_schema_documents_the_journal_endpoints_with_examples(world):
    schema = client_of(world, "erp").get("/api/v1/schema/?format=json").json()
    paths = schema["paths"]
    for path, method in (
        ("/api/v1/journal-entries", "get"),
        ("/api/v1/journal-entries/{id}", "get"),
        ("/api/v1/journal-entries/{id}/acknowledge", "post"),
        ("/api/v1/journal-entries.csv", "get"),
    ):
        operation = paths[path][method]
        assert operation["summary"]
        if method == "post" or path.endswith("entries"):
            content = operation["responses"]["200"]["content"]["application/json"]
            assert content.get("examples"), path
    names = {p["name"] for p in paths["/api/v1/journal-entries"]["get"]["parameters"]}
    assert {"period", "status", "cost_center", "updated_after", "cursor", "page_size"} <= names


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two writers on two connections: PostgreSQL's")
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_incremental_pull_misses_no_entry_whose_transaction_commits_late(world, monkeypatch):
    """Writer A acknowledges an entry and holds its transaction open; writer B acknowledges
    another and would commit first; the ERP pulls from its checkpoint meanwhile, then again
    after both commit. A's entry must reach it: B stamps its change after A commits (the
    journal write lock), never before with a later instant that the ERP's cursor passes."""
    erp = client_of(world, "erp")
    _, checkpoint, _ = pull(erp, page_size=500)
    entry_a, entry_b = JournalEntry.objects.order_by("id")[:2]
    written, release, real_audit = threading.Event(), threading.Event(), journals_service.audit_record

    def audit_then_hold(**kwargs):
        row = real_audit(**kwargs)
        if kwargs["action"] == "acknowledge" and kwargs["subject_id"] == entry_a.pk:
            written.set()
            assert release.wait(30)
        return row

    monkeypatch.setattr(journals_service, "audit_record", audit_then_hold)
    ack = {
        name: (
            lambda entry=entry, number=number: journal_entry_acknowledge(
                entry=entry, document_number=number, actor=world["erp_account"]
            )
        )
        for name, entry, number in (("a", entry_a, "JE-A"), ("b", entry_b, "JE-B"))
    }
    outcome: dict = {}
    writer_a = in_thread(outcome, "a", ack["a"])
    assert written.wait(30)
    writer_b = in_thread(outcome, "b", ack["b"])
    writer_b.join(1.0)  # B commits now if nothing holds it back
    seen, checkpoint, _ = pull(erp, f"cursor={checkpoint}", page_size=500)
    release.set()
    writer_a.join(30)
    writer_b.join(30)
    assert isinstance(outcome["a"], JournalEntry) and isinstance(outcome["b"], JournalEntry), outcome
    later, _, _ = pull(erp, f"cursor={checkpoint}", page_size=500)
    seen += later
    acknowledged = {e["id"]: e["erp_document_number"] for e in seen if e["status"] == "acknowledged"}
    assert acknowledged == {entry_a.pk: "JE-A", entry_b.pk: "JE-B"}
    # B waited for A: its change is stamped after A's.
    entry_a.refresh_from_db()
    entry_b.refresh_from_db()
    assert entry_a.updated_at < entry_b.updated_at
