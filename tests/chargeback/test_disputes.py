"""Disputes, through the services: a member of CC-110 (search) contests a line of its
October statement; finance reviews it and accepts it (the amount moves as adjustments
onto November's statements, off CC-110 and onto the counterpart or the unallocated
owner) or rejects it with a reason. The filer and the owner are told by mail, sent on
commit through Django's SMTP backend to a real SMTP server on loopback.
"""

import inspect
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from allocation.access import cost_center_scope
from allocation.models import CostCenterMembership
from allocation.services.runs.run import allocation_run_execute
from chargeback.choices import DisputeStatus, StatementLineKind, StatementStatus
from chargeback.models import Adjustment, AuditEvent, Dispute, Statement, StatementLine
from chargeback.selectors.statements import disputes_counts, disputes_list, statements_count_by_status
from chargeback.services import disputes
from chargeback.services.disputes import (
    dispute_accept,
    dispute_file,
    dispute_recipients,
    dispute_reject,
    dispute_review,
    dispute_window_end,
)
from chargeback.services.statements import (
    statement_approve,
    statement_submit,
    statements_build,
)
from pricing.errors import Conflict, NotAllowed, ValidationFailed
from pricing.periods import Period
from tests.allocation.runs_world import load_invoice, load_usage, usage
from tests.chargeback.close_world import MONTH, close_world

pytestmark = pytest.mark.django_db

NOVEMBER = Period(2026, 11)
NOVEMBER_INVOICE = "ACME-2026-11,acme-ai,2026-11-01T00:00:00Z,2026-12-01T00:00:00Z,usage,acme-1-tokens,acme-1 tokens,,,6.00,6.00,,USD\n"  # noqa: E501 (a CSV row reads best whole)
EVIDENCE = b"trace_id,request_id,cost\ntr-77,req-901,2.50\n"


@pytest.fixture
def world(db, tmp_path, django_user_model, settings):
    """October allocated and its statements built (drafts); CC-100 owns the unallocated
    buckets; uploads go to a MEDIA_ROOT of the test's own."""
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    settings.MEDIA_ROOT = tmp_path / "media"
    world = close_world(tmp_path, django_user_model)
    statements_build(period=MONTH, actor=world["analyst"])
    world["tmp_path"] = tmp_path
    return world


def statement_of(code: str, period: Period = MONTH) -> Statement:
    return Statement.objects.get(period=str(period), cost_center__code=code)


def in_review(world, code: str = "CC-110") -> Statement:
    return statement_submit(statement=statement_of(code), actor=world["analyst"])


def web_line(code: str = "CC-110") -> StatementLine:
    """Search's own web calls, input tokens: 10.10 on October's statement."""
    return statement_of(code).lines.get(
        kind=StatementLineKind.CHARGE, feature="web", unit="input_token", category="usage"
    )


def file_one(world, amount: str = "2.50", **extra) -> Dispute:
    return dispute_file(
        line=web_line(),
        actor=world["member"],
        amount=Decimal(amount),
        reason="Half of these calls were support's, routed through search's key",
        **extra,
    )


def allocate_november(world) -> None:
    """November's usage and invoice, allocated: search's web calls and support's summaries."""
    web = {"team": "search", "feature": "web", "environment": "production"}
    summarize = {"team": "platform", "feature": "summarize", "environment": "production", "caller": "support"}
    load_usage(
        [
            {**usage("nov-web-1", "input_token", 4_000_000, **web), "occurred_at": "2026-11-05T09:00:00Z"},
            {**usage("nov-sum-1", "input_token", 2_000_000, **summarize), "occurred_at": "2026-11-06T09:00:00Z"},
        ]
    )
    load_invoice(world["tmp_path"], NOVEMBER_INVOICE, name="invoice-2026-11.csv")
    allocation_run_execute(period=NOVEMBER, actor=world["approver"])


def totals(period: Period) -> dict[str, tuple[Decimal, ...]]:
    return {
        s.cost_center.code: (s.total, s.chargeback, s.showback, s.unallocated, s.adjustments)
        for s in Statement.objects.filter(period=str(period)).select_related("cost_center")
    }


# --- filing -----------------------------------------------------------------------------


def test_a_member_files_with_evidence_and_the_filer_and_owner_are_told_on_filing_and_decision(
    world, smtp_server, django_capture_on_commit_callbacks
):
    in_review(world)
    evidence = SimpleUploadedFile("calls.csv", EVIDENCE, content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        dispute = file_one(world, evidence_ids="tr-77\nreq-901", evidence_file=evidence)
        assert smtp_server.received == []  # nothing leaves before the commit

    dispute.refresh_from_db()
    assert (dispute.status, dispute.amount, dispute.cost_center.code) == (DisputeStatus.OPEN, Decimal("2.50"), "CC-110")
    assert dispute.line == web_line() and dispute.filed_by == world["member"]
    assert dispute.evidence_ids == "tr-77\nreq-901"
    assert dispute.due_at == pytest.approx(dispute.filed_at + timedelta(days=5), abs=timedelta(seconds=5))
    # The file is kept under MEDIA_ROOT, as uploaded.
    stored = Path(dispute.evidence_file.path)
    assert stored.is_relative_to(Path(world["tmp_path"]) / "media" / "disputes")
    assert stored.name.startswith("calls") and stored.read_bytes() == EVIDENCE

    [filed] = smtp_server.received
    assert sorted(filed.rcpt_tos) == ["olivia@example.com", "sam@example.com"]  # the filer and the owner
    assert dispute_recipients(dispute) == ["olivia@example.com", "sam@example.com"]
    assert filed.mail_from == "chargeback@localhost"
    assert filed.subject == f"Dispute #{dispute.pk} filed: CC-110 2026-10"
    assert "Amount disputed: 2.50 USD" in filed.body
    assert "(10.10)" in filed.body and "search's key" in filed.body

    dispute_review(dispute=dispute, actor=world["analyst"])
    assert len(smtp_server.received) == 1  # taking it up tells no one
    with django_capture_on_commit_callbacks(execute=True):
        dispute_reject(dispute=dispute, actor=world["approver"], reason="The gateway log shows search's own key")
    [_, decided] = smtp_server.received
    assert sorted(decided.rcpt_tos) == ["olivia@example.com", "sam@example.com"]
    assert decided.subject == f"Dispute #{dispute.pk} rejected: CC-110 2026-10"
    assert "Amount disputed: 2.50 USD" in decided.body
    assert "Decision: Rejected: The gateway log shows search's own key" in decided.body


def test_the_accepted_mail_names_the_amount_the_reason_and_the_period_it_is_booked_in(
    world, smtp_server, django_capture_on_commit_callbacks
):
    in_review(world)
    dispute = file_one(world, amount="4.04", counterpart=world["centers"]["CC-120"])
    dispute_review(dispute=dispute, actor=world["analyst"])
    with django_capture_on_commit_callbacks(execute=True):
        dispute_accept(dispute=dispute, actor=world["approver"], reason="Support's calls, per the gateway log")
    [accepted] = smtp_server.received  # the filing was rolled back with nothing committed: its mail never left
    assert accepted.subject == f"Dispute #{dispute.pk} accepted: CC-110 2026-10"
    assert sorted(accepted.rcpt_tos) == ["olivia@example.com", "sam@example.com"]
    assert "Amount disputed: 4.04 USD" in accepted.body
    assert "Decision: Accepted: Support's calls, per the gateway log" in accepted.body
    assert "adjustment on the statements of 2026-11" in accepted.body


def test_only_members_of_the_cost_center_file_on_its_statement(world):
    in_review(world)
    with pytest.raises(NotAllowed) as refused:
        dispute_file(line=web_line(), actor=world["other_member"], amount=Decimal("1.00"), reason="not ours")
    assert refused.value.code == "not_your_cost_center" and "CC-110" in str(refused.value)
    for finance in (world["approver"], world["analyst"]):
        with pytest.raises(NotAllowed) as refused:
            dispute_file(line=web_line(), actor=finance, amount=Decimal("1.00"), reason="on their behalf")
        assert refused.value.code == "not_allowed"
    assert not Dispute.objects.exists()
    # The owner is a member too.
    assert file_one(world, amount="1.00").cost_center.code == "CC-110"


def test_a_draft_is_not_open_to_disputes(world):
    with pytest.raises(Conflict) as refused:
        file_one(world)
    assert refused.value.code == "dispute_window_closed" and "not out for review" in str(refused.value)
    assert not Dispute.objects.exists()


def test_a_signed_statement_takes_disputes_within_the_window_and_not_after(world, settings):
    statement = statement_approve(statement=in_review(world), actor=world["approver"])
    assert statement.status == StatementStatus.APPROVED
    assert dispute_window_end(statement) == statement.approved_at + timedelta(days=10)
    assert dispute_window_end(statement_of("CC-120")) is None  # not signed: no window yet

    dispute = file_one(world)
    assert dispute.status == DisputeStatus.OPEN
    # October's run is closed by the sign-off: an accepted dispute is booked in November.
    dispute_review(dispute=dispute, actor=world["analyst"])
    dispute_accept(dispute=dispute, actor=world["approver"], reason="agreed")
    assert set(Adjustment.objects.values_list("period", "source_period")) == {("2026-11", "2026-10")}

    # The window ends a set time after sign-off: with none left, filing is refused. (The
    # window is shortened rather than approved_at moved back, which PostgreSQL refuses on
    # a signed statement.)
    settings.CHARGEBACK_DISPUTE_WINDOW_DAYS = 0
    with pytest.raises(Conflict) as refused:
        file_one(world, amount="1.00")
    assert refused.value.code == "dispute_window_closed"
    assert f"signed off on {statement.approved_at:%Y-%m-%d}" in str(refused.value)
    assert Dispute.objects.count() == 1


@pytest.mark.parametrize("amount", ["0", "0.004", "-1.00"])
def test_the_amount_is_more_than_zero(world, amount):
    in_review(world)
    with pytest.raises(ValidationFailed) as refused:
        file_one(world, amount=amount)
    assert refused.value.code == "dispute_amount_invalid" and refused.value.extra["field"] == "amount"
    assert not Dispute.objects.exists()


@pytest.mark.parametrize("amount", ["10.11", "1000"])
def test_the_amount_is_at_most_the_lines(world, amount):
    in_review(world)
    with pytest.raises(ValidationFailed) as refused:
        file_one(world, amount=amount)
    assert refused.value.code == "dispute_amount_exceeds_line" and refused.value.extra["field"] == "amount"
    assert (refused.value.extra["left"], refused.value.extra["claimed"]) == ("10.10", "0.00")
    assert not Dispute.objects.exists()


def test_the_whole_line_may_be_disputed_but_a_reason_is_needed(world):
    in_review(world)
    with pytest.raises(ValidationFailed) as refused:
        dispute_file(line=web_line(), actor=world["member"], amount=Decimal("1.00"), reason="  ")
    assert refused.value.code == "reason_required"
    assert file_one(world, amount="10.10").amount == Decimal("10.10")


# --- deciding ---------------------------------------------------------------------------


def test_accepted_with_a_counterpart_moves_the_amount_on_next_months_statements(world):
    in_review(world)
    allocate_november(world)
    statements_build(period=NOVEMBER, actor=world["analyst"])
    before = totals(NOVEMBER)
    dispute = file_one(world, counterpart=world["centers"]["CC-120"])  # the filer names who should pay
    dispute_review(dispute=dispute, actor=world["analyst"])
    dispute_accept(dispute=dispute, actor=world["approver"], reason="Support's calls, per the gateway log")

    adjustments = {
        a.cost_center.code: (a.period, a.source_period, a.amount, a.treatment)
        for a in Adjustment.objects.select_related("cost_center")
    }
    assert adjustments == {
        "CC-110": ("2026-11", "2026-10", Decimal("-2.50"), "chargeback"),
        "CC-120": ("2026-11", "2026-10", Decimal("2.50"), "chargeback"),
    }
    assert Dispute.objects.get().counterpart.code == "CC-120"

    rebuilt = statements_build(period=NOVEMBER, actor=world["analyst"])
    assert rebuilt.built == 2  # the two cost centers concerned; the rest are as they were
    after = totals(NOVEMBER)
    amount = Decimal("2.50")
    total, chargeback, showback, unallocated, adjusted = before["CC-110"]
    assert after["CC-110"] == (total - amount, chargeback - amount, showback, unallocated, adjusted - amount)
    total, chargeback, showback, unallocated, adjusted = before["CC-120"]
    assert after["CC-120"] == (total + amount, chargeback + amount, showback, unallocated, adjusted + amount)
    assert {code: figures for code, figures in after.items() if code not in {"CC-110", "CC-120"}} == {
        code: figures for code, figures in before.items() if code not in {"CC-110", "CC-120"}
    }
    for code, sign in (("CC-110", -1), ("CC-120", 1)):
        [line] = statement_of(code, NOVEMBER).lines.filter(kind=StatementLineKind.ADJUSTMENT)
        assert (line.amount, line.source_period, line.adjustment.dispute_id) == (sign * amount, "2026-10", dispute.pk)
        assert (line.feature, line.unit) == ("web", "input_token")  # it names the line disputed
        assert f"Dispute #{dispute.pk} accepted (2026-10, CC-110)" in line.description
    # October's statements are as they were: the money moves in the next open period.
    assert statement_of("CC-110").total == Decimal("68.00")


def test_finance_names_the_counterpart_over_the_filers(world):
    in_review(world)
    dispute = dispute_review(dispute=file_one(world, counterpart=world["centers"]["CC-120"]), actor=world["analyst"])
    dispute_accept(
        dispute=dispute, actor=world["analyst"], reason="research ran them", counterpart=world["centers"]["CC-130"]
    )
    assert Dispute.objects.get().counterpart.code == "CC-130"
    assert set(Adjustment.objects.values_list("cost_center__code", "amount")) == {
        ("CC-110", Decimal("-2.50")),
        ("CC-130", Decimal("2.50")),
    }
    with pytest.raises(ValidationFailed) as refused:
        dispute_accept(
            dispute=dispute_review(dispute=file_one(world), actor=world["analyst"]),
            actor=world["analyst"],
            reason="x",
            counterpart=world["centers"]["CC-110"],
        )
    assert refused.value.code == "counterpart_invalid"


def test_accepted_without_a_counterpart_leaves_the_amount_with_the_unallocated_owner(world):
    in_review(world)
    allocate_november(world)
    statements_build(period=NOVEMBER, actor=world["analyst"])
    before = totals(NOVEMBER)
    dispute = dispute_review(dispute=file_one(world), actor=world["analyst"])
    dispute_accept(dispute=dispute, actor=world["approver"], reason="no one can say whose these calls were")

    assert set(Adjustment.objects.values_list("cost_center__code", "amount")) == {
        ("CC-110", Decimal("-2.50")),
        (None, Decimal("2.50")),
    }
    statements_build(period=NOVEMBER, actor=world["analyst"])
    after = totals(NOVEMBER)
    amount = Decimal("2.50")
    assert after["CC-110"][0] == before["CC-110"][0] - amount
    # On the statement of the cost center that owns the unallocated buckets, as unallocated money.
    total, chargeback, showback, unallocated, adjusted = before["CC-100"]
    assert after["CC-100"] == (total + amount, chargeback, showback, unallocated + amount, adjusted + amount)
    [line] = statement_of("CC-100", NOVEMBER).lines.filter(kind=StatementLineKind.ADJUSTMENT)
    assert line.amount == amount and line.description.endswith("left unallocated")
    assert sum(Statement.objects.filter(period=str(NOVEMBER)).values_list("adjustments", flat=True), Decimal(0)) == 0


def test_rejecting_needs_a_reason_and_a_decided_dispute_stays_decided(world):
    in_review(world)
    rejected = file_one(world)
    with pytest.raises(ValidationFailed) as refused:
        dispute_reject(dispute=rejected, actor=world["approver"], reason=" ")
    assert refused.value.code == "reason_required"
    assert Dispute.objects.get(pk=rejected.pk).status == DisputeStatus.OPEN
    with pytest.raises(NotAllowed):
        dispute_reject(dispute=rejected, actor=world["member"], reason="I changed my mind")
    dispute_reject(dispute=rejected, actor=world["approver"], reason="search's key, search's calls")
    accepted = dispute_review(dispute=file_one(world, amount="1.00"), actor=world["analyst"])
    dispute_accept(dispute=accepted, actor=world["approver"], reason="agreed")

    for dispute in (rejected, accepted):
        for decide in (dispute_accept, dispute_reject):
            with pytest.raises(Conflict) as refused:
                decide(dispute=dispute, actor=world["approver"], reason="again")
            assert refused.value.code == "dispute_decided"
        with pytest.raises(Conflict) as refused:
            dispute_review(dispute=dispute, actor=world["analyst"])
        assert refused.value.code == "dispute_not_open"
    rejected.refresh_from_db()
    assert (rejected.status, rejected.decision_reason, rejected.decided_by) == (
        DisputeStatus.REJECTED,
        "search's key, search's calls",
        world["approver"],
    )
    assert not Adjustment.objects.filter(dispute=rejected).exists()
    assert Adjustment.objects.filter(dispute=accepted).count() == 2


def test_every_transition_is_audited_with_its_actor_and_states(world):
    in_review(world)
    dispute = file_one(world, counterpart=world["centers"]["CC-120"])
    dispute_review(dispute=dispute, actor=world["analyst"])
    dispute_accept(dispute=dispute, actor=world["approver"], reason="Support's calls")
    other = file_one(world, amount="1.00")
    dispute_reject(dispute=other, actor=world["analyst"], reason="not so")

    def trail(d: Dispute) -> list[tuple]:
        rows = AuditEvent.objects.filter(subject="dispute", subject_id=str(d.pk)).order_by("id")
        return list(rows.values_list("action", "actor_name", "before__status", "after__status", "reason"))

    assert trail(dispute) == [
        ("file", "sam", None, "open", ""),
        ("review", "alex", "open", "under_review", ""),
        ("accept", "fiona", "under_review", "accepted", "Support's calls"),
    ]
    assert trail(other) == [("file", "sam", None, "open", ""), ("reject", "alex", "open", "rejected", "not so")]
    accept = AuditEvent.objects.get(subject="dispute", subject_id=str(dispute.pk), action="accept")
    assert accept.actor == world["approver"]
    assert accept.after == {"status": "accepted", "amount": "2.50", "booked_in": "2026-11", "counterpart": "CC-120"}


def test_a_mail_server_that_is_down_does_not_undo_the_decision(
    world, smtp_server_down, django_capture_on_commit_callbacks, caplog
):
    in_review(world)
    with django_capture_on_commit_callbacks(execute=True):
        dispute = file_one(world)
    dispute_review(dispute=dispute, actor=world["analyst"])
    caplog.clear()  # the filing's mail failed too; this test is about the decision's
    with (
        caplog.at_level(logging.ERROR, logger="chargeback.services.disputes"),
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        dispute_accept(dispute=dispute, actor=world["approver"], reason="agreed")
    assert len(callbacks) == 1  # the mail was tried, after the commit
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.ACCEPTED
    assert Adjustment.objects.filter(dispute=dispute).count() == 2
    assert AuditEvent.objects.filter(subject="dispute", action="accept").count() == 1
    [record] = [r for r in caplog.records if r.name == "chargeback.services.disputes"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert f"dispute #{dispute.pk}" in record.getMessage() and "sam@example.com" in record.getMessage()


# --- what is left of a line -------------------------------------------------------------


def test_a_line_is_disputed_at_most_for_what_other_disputes_leave_of_it(world):
    in_review(world)
    open_one = file_one(world, amount="6.00")
    accepted = dispute_review(dispute=file_one(world, amount="3.00"), actor=world["analyst"])
    dispute_accept(dispute=accepted, actor=world["approver"], reason="agreed")
    # 10.10 less 6.00 open and 3.00 accepted: 1.10 left.
    with pytest.raises(ValidationFailed) as refused:
        file_one(world, amount="1.11")
    assert refused.value.code == "dispute_amount_exceeds_line" and refused.value.extra["field"] == "amount"
    assert (refused.value.extra["claimed"], refused.value.extra["left"]) == ("9.00", "1.10")
    assert "amount: 1.11 must be at most the line's 1.10 left to dispute (9.00 of its 10.10" in str(refused.value)
    # Under review claims its share as open does.
    dispute_review(dispute=open_one, actor=world["analyst"])
    with pytest.raises(ValidationFailed):
        file_one(world, amount="1.11")
    # A rejected dispute gives its share back.
    dispute_reject(dispute=open_one, actor=world["approver"], reason="search's own calls")
    assert file_one(world, amount="7.10").amount == Decimal("7.10")
    with pytest.raises(ValidationFailed) as refused:
        file_one(world, amount="0.01")
    assert refused.value.extra["left"] == "0.00"
    assert Dispute.objects.count() == 3


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_filings_at_once_on_one_line_take_turns_and_the_second_sees_the_first(
    tmp_path, django_user_model, settings
):
    """Two members file 7.00 each of the 10.10 line at the same time: the line's row lock
    holds the second until the first commits, and then it is refused. SQLite has no row
    locks (it writes one transaction at a time), so this runs on PostgreSQL."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks (select_for_update) are PostgreSQL's; SQLite serialises every write")
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    settings.MEDIA_ROOT = tmp_path / "media"
    world = close_world(tmp_path, django_user_model)
    statements_build(period=MONTH, actor=world["analyst"])
    in_review(world)
    line = web_line()
    first_holds, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                outcome["first"] = dispute_file(line=line, actor=world["member"], amount="7.00", reason="first")
                first_holds.set()
                release.wait(timeout=30)
        finally:
            first_holds.set()
            connection.close()

    def second() -> None:
        try:
            outcome["second"] = dispute_file(line=line, actor=world["owner"], amount="7.00", reason="second")
        except ValidationFailed as exc:
            outcome["second"] = exc
        finally:
            connection.close()

    one = threading.Thread(target=first)
    one.start()
    assert first_holds.wait(timeout=30)
    two = threading.Thread(target=second)
    two.start()
    two.join(timeout=1)
    assert two.is_alive() and "second" not in outcome  # waiting on the line's lock
    release.set()
    one.join(timeout=30)
    two.join(timeout=30)
    assert isinstance(outcome["first"], Dispute)
    refused = outcome["second"]
    assert isinstance(refused, ValidationFailed) and refused.code == "dispute_amount_exceeds_line"
    assert refused.extra["left"] == "3.10"
    assert list(Dispute.objects.values_list("amount", flat=True)) == [Decimal("7.00")]


# --- amounts as typed -------------------------------------------------------------------

NOT_AN_AMOUNT = [
    "ten",
    "NaN",
    "-NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "1e40",
    "-1",
    "0",
    "0.00",
    "1.005",
    "",
    " ",
    "٣",
]


@pytest.mark.parametrize("amount", NOT_AN_AMOUNT)
def test_an_amount_that_is_not_whole_cents_above_zero_is_refused_by_the_service(world, amount):
    in_review(world)
    with pytest.raises(ValidationFailed) as refused:
        dispute_file(line=web_line(), actor=world["member"], amount=amount, reason="wrong")
    assert refused.value.code == "dispute_amount_invalid" and refused.value.extra == {"field": "amount"}
    assert str(refused.value).startswith("amount: ")
    assert not Dispute.objects.exists()


def test_amounts_as_decimals_and_text_with_trailing_zeros_are_taken(world):
    in_review(world)
    assert file_one(world, amount="1.500").amount == Decimal("1.50")  # whole cents, however written
    dispute = dispute_file(line=web_line(), actor=world["member"], amount=" 2 ", reason="wrong")
    assert dispute.amount == Decimal("2.00")
    for amount in (Decimal("NaN"), Decimal("Infinity"), Decimal("1E+40"), Decimal("0.001"), True):
        with pytest.raises(ValidationFailed) as refused:
            dispute_file(line=web_line(), actor=world["member"], amount=amount, reason="wrong")
        assert refused.value.code == "dispute_amount_invalid", amount


def test_the_dispute_form_shows_what_is_wrong_with_the_amount_under_the_field(world):
    statement = in_review(world)
    member = Client()
    member.force_login(world["member"])
    form = reverse("dispute-file", args=[statement.pk, web_line().pk])
    for amount in ["ten", "NaN", "Infinity", "1e40", "-1", "0", "1.005", "10.11"]:
        response = member.post(form, {"amount": amount, "reason": "wrong"})
        assert response.status_code == 400, amount
        errors = response.context["form"].errors
        assert list(errors) == ["amount"] and errors["amount"][0].startswith("amount: "), (amount, errors)
        assert 'class="field-error"' in response.content.decode()
    assert not Dispute.objects.exists()
    assert member.post(form, {"amount": "2.50", "reason": "wrong"}).status_code == 302
    assert Dispute.objects.get().amount == Decimal("2.50")
    # The form then offers what is left of the line (10.10 less 2.50), not all of it again.
    assert member.get(form).context["form"].initial["amount"] == Decimal("7.60")


# --- who files ----------------------------------------------------------------------------


def _joining(world, django_user_model, username: str, roles: tuple[str, ...], memberships: dict[str, str]):
    person = django_user_model.objects.create_user(username=username, password="x", email=f"{username}@example.com")
    for role in roles:
        person.groups.add(Group.objects.get_or_create(name=role)[0])
    for code, role in memberships.items():
        CostCenterMembership.objects.create(user=person, cost_center=world["centers"][code], role=role)
    return person


def test_finance_that_is_a_member_of_another_cost_center_may_not_dispute_this_one(world, django_user_model):
    """Finance sees every statement; filing goes by membership. Frank is an analyst and a
    member of support's CC-120: he disputes support's lines, not search's."""
    frank = _joining(world, django_user_model, "frank", ("finance_analyst", "team_member"), {"CC-120": "member"})
    search, support = in_review(world), in_review(world, "CC-120")
    with pytest.raises(NotAllowed) as refused:
        dispute_file(line=web_line(), actor=frank, amount="1.00", reason="on search's behalf")
    assert refused.value.code == "not_your_cost_center" and "CC-110" in str(refused.value)
    assert not Dispute.objects.exists()
    support_line = support.lines.filter(kind=StatementLineKind.CHARGE, amount__gt=0).first()
    assert dispute_file(line=support_line, actor=frank, amount="0.01", reason="ours").cost_center.code == "CC-120"

    # The pages agree: search's statement is his to read, not to dispute.
    client = Client()
    client.force_login(frank)
    assert client.get(reverse("statement", args=[search.pk])).status_code == 200
    assert (
        reverse("dispute-file", args=[search.pk, web_line().pk])
        not in client.get(reverse("statement", args=[search.pk])).content.decode()
    )
    assert client.get(reverse("dispute-file", args=[search.pk, web_line().pk])).status_code == 404
    assert (
        client.post(
            reverse("dispute-file", args=[search.pk, web_line().pk]), {"amount": "1", "reason": "x"}
        ).status_code
        == 404
    )
    page = client.get(reverse("statement", args=[support.pk])).content.decode()
    assert reverse("dispute-file", args=[support.pk, support_line.pk]) in page
    assert Dispute.objects.count() == 1


def test_the_owner_of_a_parent_cost_center_files_for_the_ones_below_and_its_members_do_not(world, django_user_model):
    centers = world["centers"]
    centers["CC-120"].parent = centers["CC-100"]
    centers["CC-120"].save()
    head = _joining(world, django_user_model, "hana", ("team_member",), {"CC-100": "owner"})
    staff = _joining(world, django_user_model, "stan", ("team_member",), {"CC-100": "member"})
    support = in_review(world, "CC-120")
    line = support.lines.filter(kind=StatementLineKind.CHARGE, amount__gt=0).first()
    with pytest.raises(NotAllowed) as refused:
        dispute_file(line=line, actor=staff, amount="0.01", reason="not ours")
    assert refused.value.code == "not_your_cost_center"
    assert dispute_file(line=line, actor=head, amount="0.01", reason="not ours").filed_by == head


# --- deciding in order --------------------------------------------------------------------


def test_a_dispute_is_accepted_only_under_review_and_the_page_offers_the_review_first(world):
    in_review(world)
    dispute = file_one(world)
    with pytest.raises(Conflict) as refused:
        dispute_accept(dispute=dispute, actor=world["approver"], reason="agreed")
    assert refused.value.code == "dispute_not_under_review" and refused.value.extra["status"] == "open"
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.OPEN and not Adjustment.objects.exists()
    assert not AuditEvent.objects.filter(subject="dispute", action="accept").exists()

    finance = Client()
    finance.force_login(world["approver"])
    page = reverse("dispute", args=[dispute.pk])
    body = finance.get(page).content.decode()
    assert "Start review" in body and "Record the decision" not in body
    tried = finance.post(page, {"decision": "accept", "reason": "agreed"})
    assert tried.status_code == 400 and "not under review yet" in tried.content.decode()
    assert finance.post(page, {"action": "review"}).status_code == 302
    body = finance.get(page).content.decode()
    assert "Start review" not in body and "Record the decision" in body
    assert finance.post(page, {"decision": "accept", "reason": "agreed"}).status_code == 302
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.ACCEPTED and Adjustment.objects.filter(dispute=dispute).count() == 2


# --- telling people -----------------------------------------------------------------------


def test_the_counterparts_owners_are_told_when_the_amount_lands_on_them(
    world, smtp_server, django_user_model, django_capture_on_commit_callbacks
):
    _joining(world, django_user_model, "petra", ("team_member",), {"CC-120": "owner"})
    in_review(world)
    with django_capture_on_commit_callbacks(execute=True):
        dispute = file_one(world, counterpart=world["centers"]["CC-120"])
    [filed] = smtp_server.received
    assert sorted(filed.rcpt_tos) == ["olivia@example.com", "sam@example.com"]  # named, not yet charged
    dispute_review(dispute=dispute, actor=world["analyst"])
    with django_capture_on_commit_callbacks(execute=True):
        dispute_accept(dispute=dispute, actor=world["approver"], reason="support's calls")
    [_, accepted] = smtp_server.received
    assert sorted(accepted.rcpt_tos) == ["olivia@example.com", "petra@example.com", "sam@example.com"]
    assert accepted.subject == f"Dispute #{dispute.pk} accepted: CC-110 2026-10"
    assert "It is charged to CC-120 (Support)." in accepted.body
    assert "adjustment on the statements of 2026-11" in accepted.body


def test_a_rejected_dispute_does_not_tell_the_counterpart(
    world, smtp_server, django_user_model, django_capture_on_commit_callbacks
):
    _joining(world, django_user_model, "petra", ("team_member",), {"CC-120": "owner"})
    in_review(world)
    dispute = file_one(world, counterpart=world["centers"]["CC-120"])
    with django_capture_on_commit_callbacks(execute=True):
        dispute_reject(dispute=dispute, actor=world["approver"], reason="search's own")
    [rejected] = smtp_server.received
    assert sorted(rejected.rcpt_tos) == ["olivia@example.com", "sam@example.com"]


def test_a_mail_server_that_never_answers_times_out_and_the_decision_stands(
    world, smtp_server_hanging, settings, django_capture_on_commit_callbacks, caplog
):
    settings.EMAIL_TIMEOUT = 1
    in_review(world)
    dispute = dispute_review(dispute=file_one(world), actor=world["analyst"])
    started = time.monotonic()
    with (
        caplog.at_level(logging.ERROR, logger="chargeback.services.disputes"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        dispute_accept(dispute=dispute, actor=world["approver"], reason="agreed")
    assert time.monotonic() - started < 4  # the timeout, not a hang
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.ACCEPTED and Adjustment.objects.filter(dispute=dispute).count() == 2
    [record] = [r for r in caplog.records if r.name == "chargeback.services.disputes"]
    assert isinstance(record.exc_info[1], OSError) and "timed out" in str(record.exc_info[1])


def test_the_mail_timeout_is_ten_seconds_unless_the_environment_says_otherwise():
    def timeout(**env: str) -> str:
        environment = {k: v for k, v in os.environ.items() if k != "EMAIL_TIMEOUT"} | env
        code = "import chargeback.settings as s; print(s.EMAIL_TIMEOUT)"
        return subprocess.run(
            [sys.executable, "-c", code], env=environment, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert timeout() == "10"
    assert timeout(EMAIL_TIMEOUT="3") == "3"


def test_every_public_function_of_the_service_is_in_its_all():
    public = {
        name
        for name, value in vars(disputes).items()
        if inspect.isfunction(value) and value.__module__ == disputes.__name__ and not name.startswith("_")
    }
    assert public == set(disputes.__all__) and "dispute_recipients" in public


# --- the SLA ------------------------------------------------------------------------------


def test_a_dispute_past_its_sla_stands_out_in_the_queue_and_on_the_dashboard(world):
    in_review(world)
    late, on_time = file_one(world, "1.00"), file_one(world, "2.00")
    Dispute.objects.filter(pk=late.pk).update(due_at=late.filed_at - timedelta(days=1))
    finance = Client()
    finance.force_login(world["approver"])
    scope = cost_center_scope(world["approver"])

    assert disputes_counts(scope=scope) == {"open": 2, "overdue": 1}
    queue = finance.get(reverse("disputes")).content.decode()
    assert "1 dispute past its SLA" in queue and queue.count('class="row--overdue"') == 1
    dashboard = finance.get(reverse("home") + f"?period={MONTH}").content.decode()
    assert "1 past the SLA" in dashboard
    # A decision takes it off both: decided disputes are never overdue.
    dispute_review(dispute=late, actor=world["approver"])
    dispute_reject(dispute=Dispute.objects.get(pk=late.pk), actor=world["approver"], reason="Not ours to move")
    assert disputes_counts(scope=scope) == {"open": 1, "overdue": 0}
    assert on_time.pk in [d.pk for d in disputes_list(scope=scope, status="undecided")]
    # The close panel counts the month's statements by status in the database.
    counts = statements_count_by_status(period=MONTH, scope=scope)
    assert counts[StatementStatus.IN_REVIEW] == 1 and sum(counts.values()) == Statement.objects.count()
