"""Statements and their workflow, through the services: built from the run's stored lines,
tied to the run to the cent, sent for review, signed off with a content hash, frozen."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from allocation.models import AllocationLine
from allocation.services.runs.run import PeriodClosed, allocation_run_execute
from chargeback.choices import PeriodStatus, StatementLineKind, StatementStatus
from chargeback.models import AccountingPeriod, AuditEvent, Statement, StatementLine
from chargeback.services.periods import period_close, period_reopen, reconciliation_override
from chargeback.services.statements import (
    statement_approve,
    statement_content_hash,
    statement_return,
    statement_submit,
    statements_approve_period,
    statements_build,
    statements_submit_period,
)
from pricing.errors import Conflict, NotAllowed, ValidationFailed
from tests.chargeback.close_world import MONTH, close_world


@pytest.fixture
def world(db, tmp_path, django_user_model, settings):
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    return close_world(tmp_path, django_user_model)


def statement_of(code: str) -> Statement:
    return Statement.objects.get(period=str(MONTH), cost_center__code=code)


def test_statements_tie_to_the_run_to_the_cent(world):
    built = statements_build(period=MONTH, actor=world["analyst"])
    run = world["run"]
    assert built.built == Statement.objects.count() > 0
    total = sum(Statement.objects.values_list("total", flat=True), Decimal(0))
    assert total == run.invoice_total  # allocated on the centers + unallocated on its owner
    for statement in Statement.objects.all():
        own = AllocationLine.objects.filter(run=run, cost_center=statement.cost_center)
        charged = sum(own.values_list("amount", flat=True), Decimal(0))
        owned = statement.lines.filter(kind=StatementLineKind.UNALLOCATED)
        assert statement.total == charged + sum(owned.values_list("amount", flat=True), Decimal(0))
        assert statement.total == statement.chargeback + statement.showback + statement.unallocated
    owner = statement_of("CC-100")
    assert owner.unallocated == run.unallocated > 0
    assert AccountingPeriod.objects.get(period=str(MONTH)).status == PeriodStatus.CLOSING
    # Per feature: requests and traces counted from the ledger.
    search = statement_of("CC-110")
    web = search.features.get(feature="web")
    assert web.requests == 0 and web.traces == 0  # the scenario's calls carry no request or trace ids
    # A pool's share names its pool, since it has no team or feature to say what it is.
    pooled = search.lines.filter(allocation_line__pool__isnull=False)
    assert pooled.exists()
    named = set(pooled.values_list("description", flat=True))
    assert named <= {"Shared pool: Platform fee", "Shared pool: Vector store"}
    assert not search.lines.filter(allocation_line__pool__isnull=True).exclude(description="").exists()


def test_building_again_leaves_an_unchanged_statement_alone(world):
    statements_build(period=MONTH, actor=world["analyst"])
    again = statements_build(period=MONTH, actor=world["analyst"])
    assert again.built == 0 and again.unchanged == Statement.objects.count()


def test_the_workflow_signs_off_with_a_hash_and_audits_each_step(world):
    statements_build(period=MONTH, actor=world["analyst"])
    statement = statement_of("CC-110")
    with pytest.raises(Conflict):
        statement_approve(statement=statement, actor=world["approver"])  # a draft is not signed off
    statement_submit(statement=statement, actor=world["analyst"])
    with pytest.raises(NotAllowed):
        statement_approve(statement=statement, actor=world["analyst"])  # analysts don't sign
    approved = statement_approve(statement=statement, actor=world["approver"])
    assert approved.status == StatementStatus.APPROVED
    assert approved.approved_by == world["approver"] and approved.approved_at is not None
    assert approved.content_hash == statement_content_hash(approved) and len(approved.content_hash) == 64
    actions = list(
        AuditEvent.objects.filter(subject="statement", subject_id=str(statement.pk))
        .order_by("id")
        .values_list("action", "actor_name", "before__status", "after__status")
    )
    assert actions == [
        ("build", "alex", None, "draft"),
        ("submit", "alex", "draft", "in_review"),
        ("approve", "fiona", "in_review", "approved"),
    ]
    # Its run is frozen: the period takes no new run.
    world["run"].refresh_from_db()
    assert world["run"].closed_at is not None
    with pytest.raises(PeriodClosed):
        allocation_run_execute(period=MONTH, actor=world["approver"])
    # Building again leaves the signed statement as it was.
    assert statements_build(period=MONTH, actor=world["analyst"]).signed == 1


def test_return_to_draft_needs_a_reason(world):
    statements_build(period=MONTH, actor=world["analyst"])
    statement = statement_submit(statement=statement_of("CC-120"), actor=world["analyst"])
    with pytest.raises(ValidationFailed):
        statement_return(statement=statement, actor=world["analyst"], reason="  ")
    returned = statement_return(statement=statement, actor=world["analyst"], reason="pool weights to check")
    assert returned.status == StatementStatus.DRAFT
    assert AuditEvent.objects.filter(action="return", reason="pool weights to check").exists()


def test_a_flagged_run_needs_an_override_with_a_reason(world):
    run = world["run"]
    run.is_flagged = True
    run.save(update_fields=["is_flagged"])
    statements_build(period=MONTH, actor=world["analyst"])
    statements_submit_period(period=MONTH, actor=world["analyst"])
    with pytest.raises(Conflict) as refused:
        statements_approve_period(period=MONTH, actor=world["approver"])
    assert refused.value.code == "reconciliation_flagged"
    assert not Statement.objects.filter(status=StatementStatus.APPROVED).exists()  # all or none
    with pytest.raises(ValidationFailed):
        reconciliation_override(run=run, actor=world["approver"], reason="")
    with pytest.raises(NotAllowed):
        reconciliation_override(run=run, actor=world["analyst"], reason="tax line known")
    reconciliation_override(run=run, actor=world["approver"], reason="VAT is invoiced, not rated")
    approved = statements_approve_period(period=MONTH, actor=world["approver"])
    assert len(approved) == Statement.objects.count()
    assert AuditEvent.objects.filter(action="approve").count() == len(approved)
    assert AuditEvent.objects.get(subject="allocation_run").reason == "VAT is invoiced, not rated"


def test_closing_and_reopening_the_period(world):
    statements_build(period=MONTH, actor=world["analyst"])
    with pytest.raises(Conflict) as refused:
        period_close(period=MONTH, actor=world["approver"])
    assert refused.value.code == "statements_not_signed_off"
    statements_submit_period(period=MONTH, actor=world["analyst"])
    statements_approve_period(period=MONTH, actor=world["approver"])
    with pytest.raises(NotAllowed):
        period_close(period=MONTH, actor=world["analyst"])
    assert period_close(period=MONTH, actor=world["approver"]).status == PeriodStatus.CLOSED
    with pytest.raises(PeriodClosed):
        statements_build(period=MONTH, actor=world["analyst"])
    with pytest.raises(ValidationFailed):
        period_reopen(period=MONTH, actor=world["approver"], reason="")
    reopened = period_reopen(period=MONTH, actor=world["approver"], reason="a cost center was missed")
    assert reopened.status == PeriodStatus.CLOSING
    assert list(AuditEvent.objects.filter(subject="period").order_by("id").values_list("action", flat=True)) == [
        "close",
        "reopen",
    ]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the database's own guard is PostgreSQL's")
def test_postgresql_refuses_to_change_a_signed_statement(world):
    statements_build(period=MONTH, actor=world["analyst"])
    statement = statement_submit(statement=statement_of("CC-110"), actor=world["analyst"])
    statement = statement_approve(statement=statement, actor=world["approver"])
    line = statement.lines.first()
    attempts = [
        lambda: StatementLine.objects.filter(pk=line.pk).update(amount=line.amount + 1),
        lambda: StatementLine.objects.filter(pk=line.pk).delete(),
        lambda: StatementLine.objects.create(statement=statement, kind="charge", source_period="2026-10", amount=1),
        lambda: Statement.objects.filter(pk=statement.pk).update(total=statement.total + 1),
        lambda: Statement.objects.filter(pk=statement.pk).update(status=StatementStatus.DRAFT),
        lambda: Statement.objects.filter(pk=statement.pk).update(content_hash="0" * 64),
    ]
    for attempt in attempts:
        with pytest.raises(IntegrityError, match="signed off"), transaction.atomic():
            attempt()
    # Posting (set by the ERP's acknowledgements) is the one change it takes.
    assert Statement.objects.filter(pk=statement.pk).update(status=StatementStatus.POSTED) == 1
    statement.refresh_from_db()
    assert statement.content_hash == statement_content_hash(statement)
