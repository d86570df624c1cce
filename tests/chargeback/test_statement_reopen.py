"""Reopening a signed-off statement: never edited, it becomes superseded, its journal
entries are reversed by reversing entries, and a new draft revision is built from the
month's current run (DESIGN.md "an approved statement is never edited"). October's
statements of the hand-computed company (tests/chargeback/close_world.py) are built,
reviewed and signed off first."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.urls import reverse
from django.utils.html import escape
from rest_framework.test import APIClient

from allocation.access import EVERY_COST_CENTER, ServiceAccount
from allocation.services.access import api_token_issue
from allocation.services.runs.run import PeriodClosed
from chargeback.choices import JournalEntryKind, StatementLineKind, StatementStatus
from chargeback.models import AuditEvent, JournalEntry, JournalLine, Statement, StatementLine
from chargeback.models.statements import STATEMENT_LINE_CONTENT
from chargeback.selectors.periods import period_overview
from chargeback.selectors.statements import statements_count_by_status, statements_of_period
from chargeback.services.disputes import dispute_file, dispute_reject, dispute_review
from chargeback.services.journals import journal_entry_acknowledge, money_cents
from chargeback.services.periods import period_close, period_reopen
from chargeback.services.signing import pdf_sign, pdf_verify
from chargeback.services.statement_pdf import statement_pdf_render
from chargeback.services.statements import (
    statement_approve,
    statement_reopen,
    statement_submit,
    statements_approve_period,
    statements_build,
    statements_submit_period,
)
from pricing.errors import Conflict, NotAllowed, ValidationFailed
from tests.chargeback.close_world import MONTH, close_world

REASON = "The platform fee pool used September's driver; search was overcharged."


@pytest.fixture
def world(db, tmp_path, django_user_model, settings):
    """October's statements all signed off, their journal entries written."""
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    world = close_world(tmp_path, django_user_model)
    statements_build(period=MONTH, actor=world["analyst"])
    statements_submit_period(period=MONTH, actor=world["analyst"])
    statements_approve_period(period=MONTH, actor=world["approver"])
    return world


def live(code: str = "CC-110") -> Statement:
    return Statement.objects.exclude(status=StatementStatus.SUPERSEDED).get(period=str(MONTH), cost_center__code=code)


def content(statement: Statement) -> list[tuple]:
    return sorted(tuple(str(v) for v in row) for row in statement.lines.values_list(*STATEMENT_LINE_CONTENT))


def net_by_account(entries) -> dict[tuple, int]:
    """Debits less credits per (GL account, cost center) over entries, zero rows left out."""
    rows = (
        JournalLine.objects.filter(entry__in=entries)
        .values("gl_account", "cost_center_id")
        .annotate(debit=Sum("debit_cents"), credit=Sum("credit_cents"))
    )
    nets = {(r["gl_account"], r["cost_center_id"]): r["debit"] - r["credit"] for r in rows}
    return {key: net for key, net in nets.items() if net}


def charged(entries) -> int:
    """What entries charge cost centers: debits less credits on their own accounts."""
    legs = JournalLine.objects.filter(entry__in=entries, cost_center__isnull=False).aggregate(
        debit=Sum("debit_cents"), credit=Sum("credit_cents")
    )
    return (legs["debit"] or 0) - (legs["credit"] or 0)


def assert_period_ties_to_the_live_statements() -> None:
    """The month's entries balance, and on each cost center net to its live signed-off
    statement's chargeback: reversed revisions count for nothing."""
    entries = JournalEntry.objects.filter(period=str(MONTH))
    sums = JournalLine.objects.filter(entry__in=entries).aggregate(d=Sum("debit_cents"), c=Sum("credit_cents"))
    assert sums["d"] == sums["c"]
    signed = Statement.objects.filter(period=str(MONTH), status__in=["approved", "posted"])
    for statement in signed:
        assert charged(entries.filter(cost_center=statement.cost_center)) == money_cents(statement.chargeback)
    assert charged(entries) == money_cents(sum(signed.values_list("chargeback", flat=True), Decimal(0)))


# --- the service -----------------------------------------------------------------------


def test_reopening_reverses_the_entries_and_a_new_revision_books_anew(world):
    old = live()
    originals = list(old.journal_entries.order_by("id"))
    assert originals and charged(originals) == money_cents(old.chargeback) > 0

    revision = statement_reopen(statement=old, actor=world["approver"], reason=f"  {REASON} ")

    old.refresh_from_db()
    assert (old.status, old.revision, old.reopened_by, old.reopen_reason) == (
        StatementStatus.SUPERSEDED,
        1,
        world["approver"],
        REASON,
    )
    assert old.reopened_at is not None and old.content_hash  # its sign-off stays as it was
    # Every entry reversed once; each pair cancels to the cent on every account.
    for entry in originals:
        reversal = JournalEntry.objects.get(reverses=entry)
        assert reversal.kind == JournalEntryKind.REVERSAL and reversal.statement == old
        assert (reversal.period, reversal.posting_date) == (entry.period, entry.posting_date)
        assert net_by_account([entry, reversal]) == {}
        assert net_by_account([reversal]) == {key: -net for key, net in net_by_account([entry]).items()}
        assert REASON in reversal.memo
    assert charged(old.journal_entries.all()) == 0
    # The new revision: a draft of the same content, from the same run.
    assert (revision.revision, revision.replaces, revision.status) == (2, old, StatementStatus.DRAFT)
    assert (revision.run_id, revision.total, revision.chargeback) == (old.run_id, old.total, old.chargeback)
    assert content(revision) == content(old) and revision.line_count == old.line_count
    assert revision.features.count() == old.features.count()
    assert not revision.journal_entries.exists() and not revision.content_hash
    audit = AuditEvent.objects.get(subject="statement", subject_id=str(old.pk), action="reopen")
    assert (audit.before["status"], audit.after["status"], audit.reason) == ("approved", "superseded", REASON)
    assert AuditEvent.objects.filter(subject="statement", subject_id=str(revision.pk), action="build").exists()

    # The month can't close while the revision is unsigned.
    with pytest.raises(Conflict) as refused:
        period_close(period=MONTH, actor=world["approver"])
    assert refused.value.code == "statements_not_signed_off" and refused.value.extra["cost_centers"] == ["CC-110"]

    # Signed off again: new chargeback entries, numbered on from the first revision's.
    revision = statement_submit(statement=revision, actor=world["analyst"])
    revision = statement_approve(statement=revision, actor=world["approver"])
    ids = list(revision.journal_entries.values_list("external_id", flat=True))
    assert ids == [f"CB-{MONTH}-CC-110-chargeback-2"]
    assert charged(revision.journal_entries.all()) == money_cents(revision.chargeback)
    assert_period_ties_to_the_live_statements()
    assert period_close(period=MONTH, actor=world["approver"]).status == "closed"


def test_a_posted_statement_reopens_and_its_acknowledged_entries_stay_as_posted(world):
    statement = live("CC-120")
    erp = api_token_issue(name="erp", scope="erp")
    for number, entry in enumerate(statement.journal_entries.all(), start=1):
        journal_entry_acknowledge(entry=entry, document_number=f"JE-{number}", actor=ServiceAccount(erp.token))
    statement.refresh_from_db()
    assert statement.status == StatementStatus.POSTED
    revision = statement_reopen(statement=statement, actor=world["approver"], reason=REASON)
    assert revision.revision == 2
    for entry in statement.journal_entries.filter(kind=JournalEntryKind.CHARGEBACK):
        assert (entry.status, entry.erp_document_number) == ("acknowledged", "JE-1")
        assert entry.reversed_by.status == "ready"  # the ERP pulls the reversal next
    # Reopened again, the second revision's signed-off content is reversed in turn.
    revision = statement_approve(
        statement=statement_submit(statement=revision, actor=world["analyst"]), actor=world["approver"]
    )
    third = statement_reopen(statement=revision, actor=world["approver"], reason="once more")
    assert (third.revision, third.replaces.revision, third.replaces.replaces) == (3, 2, statement)
    assert charged(JournalEntry.objects.filter(cost_center__code="CC-120")) == 0


def test_lists_counts_and_builds_treat_the_reopened_revision_as_history(world):
    before = statements_of_period(period=MONTH, scope=EVERY_COST_CENTER)
    old = live()
    revision = statement_reopen(statement=old, actor=world["approver"], reason=REASON)
    after = statements_of_period(period=MONTH, scope=EVERY_COST_CENTER)
    assert len(after) == len(before)
    assert revision.pk in {s.pk for s in after} and old.pk not in {s.pk for s in after}
    every = statements_of_period(period=MONTH, scope=EVERY_COST_CENTER, filters={"include_superseded": "true"})
    assert {s.pk for s in every} == {s.pk for s in after} | {old.pk}
    counts = statements_count_by_status(period=MONTH, scope=EVERY_COST_CENTER)
    assert "superseded" not in counts and counts["draft"] == 1 and sum(counts.values()) == len(before)
    overview = period_overview(scope=EVERY_COST_CENTER, period=MONTH)
    assert overview["statements"] == len(before)
    assert overview["total"] == sum((s.total for s in after), Decimal(0))
    # A rebuild touches the live revision alone (unchanged here) and never the old one.
    built = statements_build(period=MONTH, actor=world["analyst"])
    assert (built.built, built.unchanged, built.signed) == (0, 1, len(before) - 1)
    old.refresh_from_db()
    assert old.status == StatementStatus.SUPERSEDED


def test_reopening_is_refused_with_a_reason_for_each_case(world):
    statement = live()
    cases = [
        (world["member"], REASON, NotAllowed),
        (world["analyst"], REASON, NotAllowed),  # a finance approver's sign-off, as approving
        (world["approver"], "   ", ValidationFailed),
    ]
    for actor, reason, error in cases:
        with pytest.raises(error):
            statement_reopen(statement=statement, actor=actor, reason=reason)
    # A dispute still undecided holds it.
    line = statement.lines.filter(kind=StatementLineKind.CHARGE).order_by("-amount").first()
    dispute = dispute_file(line=line, actor=world["member"], amount=Decimal("1.00"), reason="not ours")
    with pytest.raises(Conflict) as refused:
        statement_reopen(statement=statement, actor=world["approver"], reason=REASON)
    assert refused.value.code == "statement_disputes_undecided" and "decide" in refused.value.message
    dispute_reject(
        dispute=dispute_review(dispute=dispute, actor=world["analyst"]), actor=world["approver"], reason="no"
    )
    revision = statement_reopen(statement=statement, actor=world["approver"], reason=REASON)
    # Neither the superseded revision nor the draft is reopened.
    for target in (statement, revision):
        with pytest.raises(Conflict) as refused:
            statement_reopen(statement=target, actor=world["approver"], reason=REASON)
        assert refused.value.code == "statement_status"
    # A closed month is never rewritten: the change is a correction in the next month.
    period_close_ready = statement_approve(
        statement=statement_submit(statement=revision, actor=world["analyst"]), actor=world["approver"]
    )
    period_close(period=MONTH, actor=world["approver"])
    with pytest.raises(PeriodClosed) as refused:
        statement_reopen(statement=period_close_ready, actor=world["approver"], reason=REASON)
    assert refused.value.code == "period_closed"
    assert "correction" in refused.value.message and str(MONTH.next) in refused.value.message
    # Reopening the month first lets it through.
    period_reopen(period=MONTH, actor=world["approver"], reason="search's fee")
    assert statement_reopen(statement=period_close_ready, actor=world["approver"], reason=REASON).revision == 3
    assert Statement.objects.filter(cost_center__code="CC-110").count() == 3


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the database's own guard is PostgreSQL's")
def test_postgresql_keeps_a_superseded_statement_and_its_lines_frozen(world):
    old = live()
    statement_reopen(statement=old, actor=world["approver"], reason=REASON)
    old.refresh_from_db()
    line = old.lines.first()
    attempts = [
        lambda: StatementLine.objects.filter(pk=line.pk).update(amount=line.amount + 1),
        lambda: StatementLine.objects.filter(pk=line.pk).delete(),
        lambda: StatementLine.objects.create(statement=old, kind="charge", source_period=str(MONTH), amount=1),
        lambda: Statement.objects.filter(pk=old.pk).update(total=old.total + 1),
        lambda: Statement.objects.filter(pk=old.pk).update(status=StatementStatus.APPROVED),
        lambda: Statement.objects.filter(pk=old.pk).update(reopen_reason="rewritten"),
        # Below Django's PROTECT: the database itself.
        lambda: connection.cursor().execute("DELETE FROM chargeback_statement WHERE id = %s", [old.pk]),
    ]
    for attempt in attempts:
        with pytest.raises(IntegrityError, match="signed off|superseded"), transaction.atomic():
            attempt()
    # A signed statement moves to superseded with its content as it was, never with a change.
    other = live("CC-120")
    with pytest.raises(IntegrityError, match="signed off"), transaction.atomic():
        Statement.objects.filter(pk=other.pk).update(status="superseded", total=other.total + 1)
    with pytest.raises(IntegrityError, match="signed off"), transaction.atomic():
        Statement.objects.filter(pk=other.pk).update(reopen_reason="without moving")


def test_one_live_statement_per_cost_center_and_month(world):
    old = live()
    with pytest.raises(IntegrityError), transaction.atomic():
        Statement.objects.create(
            period=old.period, cost_center=old.cost_center, run=old.run, revision=2, built_at=old.built_at
        )


# --- the signed PDF of a reopened revision -----------------------------------------------


def test_a_reopened_revisions_pdf_verifies_as_signed_and_names_the_revision_in_force(
    world, signing_certificate, tmp_path, capsys
):
    old = live()
    signed = pdf_sign(statement_pdf_render(old))
    revision = statement_reopen(statement=old, actor=world["approver"], reason=REASON)
    verification = pdf_verify(signed)
    # The signature and the content still hold: it is what was signed off, and no longer in force.
    assert verification.valid and verification.matches_statement and verification.statement == old
    assert verification.superseded_by == revision
    assert verification.verdict.startswith("VALID SIGNATURE, SUPERSEDED STATEMENT: ")
    assert f"superseded by revision 2 (statement #{revision.pk})" in verification.verdict
    assert not verification.verdict.startswith("VALID:")
    note = verification.findings[-1]
    assert note.ok is False and "reopened by fiona" in note.text and REASON in note.text
    file = tmp_path / "old.pdf"
    file.write_bytes(signed)
    call_command("verify_statement_pdf", str(file))
    assert "SUPERSEDED STATEMENT" in capsys.readouterr().out


# --- the pages -------------------------------------------------------------------------


def test_finance_reopens_from_the_statement_page_and_both_revisions_say_so(world, client):
    old = live()
    client.force_login(world["approver"])
    page = client.get(reverse("statement", args=[old.pk])).content.decode()
    assert reverse("statement-reopen", args=[old.pk]) in page and "Reopen…" in page
    form = client.get(reverse("statement-reopen", args=[old.pk]))
    assert form.status_code == 200
    body = form.content.decode()
    assert 'name="reason"' in body and "csrfmiddlewaretoken" in body and "revision 2" in body
    # No reason: refused, nothing reopened.
    refused = client.post(reverse("statement-reopen", args=[old.pk]), {"reason": ""}, follow=True)
    assert "needs a written reason" in refused.content.decode()
    assert live().pk == old.pk
    done = client.post(reverse("statement-reopen", args=[old.pk]), {"reason": REASON})
    revision = live()
    assert revision.revision == 2 and done["Location"] == reverse("statement", args=[revision.pk])
    page = client.get(done["Location"]).content.decode()
    assert "Revision 2 — replaces" in page and reverse("statement", args=[old.pk]) in page
    assert "approved by fiona on" in page and "reopened by fiona on" in page and escape(REASON) in page
    page = client.get(reverse("statement", args=[old.pk])).content.decode()
    assert "Superseded by" in page and "revision 2" in page and reverse("statement", args=[revision.pk]) in page
    assert "Reopen…" not in page
    csv = client.get(reverse("statement-csv", args=[revision.pk]))
    assert f"statement-CC-110-{MONTH}-r2.csv" in csv["Content-Disposition"]
    # The close page lists the live revision.
    close = client.get(reverse("statements"), {"period": str(MONTH)}).content.decode()
    assert reverse("statement", args=[revision.pk]) in close and reverse("statement", args=[old.pk]) not in close


def test_a_team_member_reads_both_revisions_and_cannot_reopen(world, client):
    old = live()
    revision = statement_reopen(statement=old, actor=world["approver"], reason=REASON)
    client.force_login(world["member"])
    for statement in (old, revision):
        page = client.get(reverse("statement", args=[statement.pk]))
        assert page.status_code == 200 and "Reopen…" not in page.content.decode()
    page = client.get(reverse("statement", args=[old.pk])).content.decode()
    assert "Superseded by" in page and "Disputes go to revision 2" in page and "Disputes are taken until" not in page
    assert client.get(reverse("statement-reopen", args=[revision.pk])).status_code == 403
    assert client.post(reverse("statement-reopen", args=[old.pk]), {"reason": "x"}).status_code == 403
    # Another cost center's member sees neither.
    client.force_login(world["other_member"])
    assert client.get(reverse("statement", args=[old.pk])).status_code == 404


# --- the API ---------------------------------------------------------------------------


def test_the_api_reopens_once_per_idempotency_key_and_lists_the_live_revision(world):
    old = live()
    approver = APIClient(
        headers={"Authorization": f"Bearer {api_token_issue(name='a', scope='user', username='fiona').secret}"}
    )
    member = APIClient(
        headers={"Authorization": f"Bearer {api_token_issue(name='m', scope='user', username='sam').secret}"}
    )
    url = f"/api/v1/statements/{old.pk}/reopen"
    refused = member.post(url, {"reason": REASON}, format="json", headers={"Idempotency-Key": "m-1"})
    assert refused.status_code == 403 and refused.json()["code"]
    missing = approver.post(url, {}, format="json", headers={"Idempotency-Key": "k-0"})
    assert missing.status_code == 400 and set(missing.json()) == {"code", "message", "extra"}
    first = approver.post(url, {"reason": REASON}, format="json", headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201, first.content
    body = first.json()
    assert (body["revision"], body["replaces"], body["status"], body["cost_center"]) == (2, old.pk, "draft", "CC-110")
    again = approver.post(url, {"reason": REASON}, format="json", headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 201 and again.json() == body and again["Idempotent-Replayed"] == "true"
    assert Statement.objects.filter(cost_center__code="CC-110").count() == 2
    # Another key: the old revision is superseded now.
    later = approver.post(url, {"reason": REASON}, format="json", headers={"Idempotency-Key": "k-2"})
    assert later.status_code == 409 and later.json()["code"] == "statement_status"
    listed = approver.get("/api/v1/statements", {"period": str(MONTH), "cost_center": "CC-110"}).json()["results"]
    assert [row["id"] for row in listed] == [body["id"]]
    every = approver.get(
        "/api/v1/statements", {"period": str(MONTH), "cost_center": "CC-110", "include_superseded": "true"}
    ).json()["results"]
    assert {row["id"] for row in every} == {old.pk, body["id"]}
    former = member.get(f"/api/v1/statements/{old.pk}").json()
    assert (former["status"], former["replaced_by"], former["reopened_by"]) == ("superseded", body["id"], "fiona")
    assert former["reopen_reason"] == REASON
    schema = approver.get("/api/v1/schema/").content.decode()
    assert "/api/v1/statements/{id}/reopen" in schema
