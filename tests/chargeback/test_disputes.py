"""Disputes, through the services: a member of CC-110 (search) contests a line of its
October statement; finance reviews it and accepts it (the amount moves as adjustments
onto November's statements, off CC-110 and onto the counterpart or the unallocated
owner) or rejects it with a reason. The filer and the owner are told by mail, sent on
commit through Django's SMTP backend to a real SMTP server on loopback.
"""

import logging
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from allocation.services.runs.run import allocation_run_execute
from chargeback.choices import DisputeStatus, StatementLineKind, StatementStatus
from chargeback.models import Adjustment, AuditEvent, Dispute, Statement, StatementLine
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
    assert (refused.value.extra["left"], refused.value.extra["claimed"]) == ("10.1", "0")
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
