"""Statements: built from the stored lines of the run being closed, sent for review,
signed off. Each transition checks the actor's role, locks the row, moves the state and
writes its audit row in one transaction (STYLE.md house rule 3).

A statement's content is its header figures and its lines; `statement_content_hash` is
the SHA-256 of their canonical text, recorded at sign-off, so anyone can check later
that what was approved is what the database (or a PDF) holds.
"""

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from allocation.access import Permission, access_require, user_of
from allocation.choices import AllocationRunStatus
from allocation.models import AllocationLine, AllocationRun, CostCenter
from allocation.selectors.runs import allocation_run_current, correction_runs_booked_in
from allocation.services.runs.run import PeriodClosed, allocation_run_close
from chargeback.choices import (
    SIGNED_STATUSES,
    UNDECIDED_DISPUTES,
    PeriodStatus,
    StatementLineKind,
    StatementPdfStatus,
    StatementStatus,
)
from chargeback.models import (
    Adjustment,
    ReconciliationOverride,
    Statement,
    StatementFeature,
    StatementLine,
    StatementPdf,
)
from chargeback.models.statements import LIVE_STATEMENTS, STATEMENT_LINE_CONTENT
from chargeback.services.audit import audit_record
from chargeback.services.feature_counts import feature_counts
from chargeback.services.journals import (
    journal_entries_for_statement,
    journal_entries_reverse_statement,
    journal_write_lock,
)
from chargeback.services.periods import period_locked
from pricing.errors import Conflict, ValidationFailed
from pricing.money import CENT, decimal_text, quantize
from pricing.periods import Period
from pricing.task_queue import task_queue_on_commit

__all__ = [
    "STATEMENT_PDF_TASK",
    "StatementsBuilt",
    "statement_approve",
    "statement_content_hash",
    "statement_reopen",
    "statement_return",
    "statement_submit",
    "statements_approve_period",
    "statements_build",
    "statements_submit_period",
]

# The task that renders and signs an approved statement's PDF (chargeback.tasks), queued by
# name on approval so that this module never imports the tasks that call it.
STATEMENT_PDF_TASK = "chargeback.tasks.statement_pdf_issue_task"
_TOTAL_FIELDS = ("total", "chargeback", "showback", "unallocated", "corrections", "adjustments")


def _line_text(line: StatementLine) -> list[str]:
    values = []
    for field in STATEMENT_LINE_CONTENT:
        value = getattr(line, field)
        if field == "amount":
            value = decimal_text(quantize(Decimal(value), CENT))
        elif field == "quantity":
            value = decimal_text(Decimal(value))
        values.append(str(value))
    return values


def statement_content_hash(statement: Statement, lines: Iterable[StatementLine] | None = None) -> str:
    """SHA-256 of the statement's canonical content: who, when, from which run, its totals
    and every line (sorted, so the order of storage does not matter)."""
    lines = statement.lines.all() if lines is None else lines
    header = {
        "period": statement.period,
        "cost_center": statement.cost_center.code,
        "currency": statement.currency,
        "run": statement.run_id,
        "run_fingerprint": statement.run.fingerprint,
        **{field: decimal_text(quantize(Decimal(getattr(statement, field)), CENT)) for field in _TOTAL_FIELDS},
    }
    body = sorted(_line_text(line) for line in lines)
    return hashlib.sha256(json.dumps({"header": header, "lines": body}, sort_keys=True).encode()).hexdigest()


def _snapshot(statement: Statement) -> dict:
    return {
        "status": statement.status,
        "run": statement.run_id,
        "total": decimal_text(statement.total),
        "line_count": statement.line_count,
        "content_hash": statement.content_hash,
    }


# --- building -------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementsBuilt:
    """What a build did: statements written or rewritten, left as they were, and those
    already signed off (never touched)."""

    period: str
    run: int
    built: int
    unchanged: int
    signed: int
    returned_to_draft: int
    held_by_disputes: int = 0

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _unallocated_owner() -> CostCenter | None:
    code = getattr(settings, "CHARGEBACK_UNALLOCATED_OWNER", "")
    return CostCenter.objects.filter(code=code).first() if code else None


_LINE_VALUES = (
    "id",
    "cost_center_id",
    "reason",
    "provider",
    "model",
    "modality",
    "team",
    "feature",
    "environment",
    "treatment",
    "category",
    "method",
    "unit",
    "quantity",
    "line_count",
    "amount",
    "run__period",
    "pool__name",
)


class _Line:
    """A statement line before it is stored: the model's fields without a model
    instance's cost (a month's build makes tens of thousands and writes them by COPY)."""

    __slots__ = ("kind", "source_period", "allocation_line_id", "adjustment_id", *STATEMENT_LINE_CONTENT[2:])

    # The one rule of what is charged to the cost center, the stored line's own.
    is_chargeback = StatementLine.is_chargeback

    def __init__(self, **values):
        for field in self.__slots__:
            setattr(self, field, values.get(field, _LINE_DEFAULTS.get(field, "")))


_LINE_DEFAULTS = {"allocation_line_id": None, "adjustment_id": None, "quantity": Decimal(0), "line_count": 0}
# The columns a build writes, in the order of `_line_row`.
_LINE_COLUMNS = ("statement_id", *_Line.__slots__)


def _allocation_statement_line(row: dict, kind: str) -> _Line:
    return _Line(
        kind=kind,
        source_period=row["run__period"],
        allocation_line_id=row["id"],
        provider=row["provider"],
        model=row["model"],
        modality=row["modality"],
        team=row["team"],
        feature=row["feature"],
        environment=row["environment"],
        treatment=row["treatment"],
        category=row["category"],
        method=row["method"],
        reason=row["reason"],
        # A pool's share carries no team or feature: its pool's name says what it is.
        description=f"Shared pool: {row['pool__name']}" if row["pool__name"] else "",
        unit=row["unit"],
        quantity=row["quantity"],
        line_count=row["line_count"],
        amount=row["amount"],
    )


def _lines_write(lines: list[tuple[int, _Line]]) -> None:
    """Store (statement id, line) pairs: by COPY on PostgreSQL (Django's bulk_create
    costs ~0.2 ms a row; a month has ~20,000 lines), else by bulk_create."""
    if connection.vendor == "postgresql":
        columns = ", ".join(_LINE_COLUMNS)
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {StatementLine._meta.db_table} ({columns}) FROM STDIN") as copy,
        ):
            for statement_id, line in lines:
                copy.write_row((statement_id, *(getattr(line, field) for field in _Line.__slots__)))
        return
    StatementLine.objects.bulk_create(
        (
            StatementLine(statement_id=statement_id, **{field: getattr(line, field) for field in _Line.__slots__})
            for statement_id, line in lines
        ),
        batch_size=2000,
    )


def _lines_by_center(
    run: AllocationRun, period: Period, owner: CostCenter | None, *, only: CostCenter | None = None
) -> dict[int, list[_Line]]:
    """Every line of the month's statements, by cost center: the run's charges, the
    unallocated buckets (on their owner's), corrections and adjustments booked here.
    `only`: the lines of that one cost center's statement (a reopened statement's)."""
    by_center: dict[int, list[_Line]] = defaultdict(list)
    owner_id = owner.pk if owner is not None else None
    allocation_lines = AllocationLine.objects.all()
    adjustments = Adjustment.objects.filter(period=str(period))
    if only is not None:
        mine = Q(cost_center=only)
        if only.pk == owner_id:
            mine |= Q(cost_center__isnull=True)
        allocation_lines, adjustments = allocation_lines.filter(mine), adjustments.filter(mine)
    sources = [(allocation_lines.filter(run=run), StatementLineKind.CHARGE)]
    corrections = allocation_lines.filter(run__in=correction_runs_booked_in(period=period))
    sources.append((corrections, StatementLineKind.CORRECTION))
    for lines, kind in sources:
        for row in lines.values(*_LINE_VALUES).iterator(chunk_size=5000):
            center = row["cost_center_id"]
            if center is None:
                if owner_id is None:
                    continue  # no owner named: the dashboard shows it, no statement carries it
                center = owner_id
                kind_here = StatementLineKind.UNALLOCATED if kind == StatementLineKind.CHARGE else kind
            else:
                kind_here = kind
            by_center[center].append(_allocation_statement_line(row, kind_here))
    for adjustment in adjustments.select_related("dispute__line"):
        center = adjustment.cost_center_id if adjustment.cost_center_id is not None else owner_id
        if center is None:
            continue
        disputed = adjustment.dispute.line
        by_center[center].append(
            _Line(
                kind=StatementLineKind.ADJUSTMENT,
                source_period=adjustment.source_period,
                adjustment_id=adjustment.pk,
                provider=disputed.provider,
                model=disputed.model,
                modality=disputed.modality,
                team=disputed.team,
                feature=disputed.feature,
                environment=disputed.environment,
                treatment=adjustment.treatment,
                # Money no cost center bears sits with the unallocated, on its owner's statement.
                reason="" if adjustment.cost_center_id is not None else "dispute",
                category=disputed.category,
                description=adjustment.description,
                unit=disputed.unit,
                amount=adjustment.amount,
            )
        )
    return by_center


def _totals(lines: list[_Line]) -> dict[str, Decimal]:
    totals = dict.fromkeys(_TOTAL_FIELDS, Decimal(0))
    for line in lines:
        amount = Decimal(line.amount)
        totals["total"] += amount
        if line.is_chargeback:
            totals["chargeback"] += amount
        elif line.kind == StatementLineKind.UNALLOCATED or line.reason:
            totals["unallocated"] += amount
        else:
            totals["showback"] += amount
        if line.kind == StatementLineKind.CORRECTION:
            totals["corrections"] += amount
        elif line.kind == StatementLineKind.ADJUSTMENT:
            totals["adjustments"] += amount
    return totals


def _statement_candidate(
    *,
    period: Period,
    center: CostCenter,
    run: AllocationRun,
    currency: str,
    lines: list[_Line],
    previous_total,
    built_at,
) -> Statement:
    """One cost center's statement as its lines make it (not saved): what a build compares
    with the stored one, or stores."""
    return Statement(
        period=str(period),
        cost_center=center,
        run=run,
        currency=currency,
        previous_total=previous_total,
        line_count=len(lines),
        built_at=built_at,
        **_totals(lines),
    )


def _statement_features(statement: Statement, lines: list[_Line], counts: dict) -> list[StatementFeature]:
    """The requests and traces behind a statement's charges, per feature (not saved)."""
    keys = sorted({(x.team, x.feature, x.environment) for x in lines if x.kind == StatementLineKind.CHARGE})
    return [
        StatementFeature(
            statement=statement,
            team=team,
            feature=feature,
            environment=environment,
            requests=counts.get((team, feature, environment), (0, 0))[0],
            traces=counts.get((team, feature, environment), (0, 0))[1],
        )
        for team, feature, environment in keys
    ]


def _run_currency(run: AllocationRun) -> str:
    return run.invoices.values_list("currency", flat=True).first() or "USD"


def _previous_totals(period: Period) -> dict[int, Decimal]:
    """The month before's live statement total per cost center."""
    previous = Statement.objects.filter(LIVE_STATEMENTS, period=str(period.previous))
    return dict(previous.values_list("cost_center_id", "total"))


@transaction.atomic
def statements_build(*, period: Period, actor=None) -> StatementsBuilt:
    """Build (or bring up to date) one statement per cost center for the month, from its
    current allocation run. Signed-off statements are never touched; a statement in
    review whose content changed goes back to draft, with an audit row saying so."""
    if actor is not None:
        access_require(actor, Permission.PREPARE_STATEMENTS, doing=f"build the statements of {period}")
    row = period_locked(period)
    if row.status == PeriodStatus.CLOSED:
        raise PeriodClosed(f"{period} is closed: its statements stay as signed off", extra={"period": str(period)})
    run = allocation_run_current(period=period)
    if run is None:
        raise ValidationFailed(
            f"{period} has no allocation run: run the allocation before building statements",
            code="no_allocation_run",
            extra={"period": str(period)},
        )
    currency = _run_currency(run)
    by_center = _lines_by_center(run, period, _unallocated_owner())
    # The live revision of each; a reopened (superseded) one is history and never rebuilt.
    live = Statement.objects.select_for_update().filter(LIVE_STATEMENTS, period=str(period))
    existing = {s.cost_center_id: s for s in live}
    for center_id in existing:
        by_center.setdefault(center_id, [])  # a statement whose lines all went stays, at zero
    previous = _previous_totals(period)
    centers = CostCenter.objects.in_bulk(list(by_center))
    counts = feature_counts(period=period)
    now = timezone.now()
    built = unchanged = signed = returned = held = 0
    # Written once at the end, in one COPY and one bulk insert, not per statement.
    to_write: list[tuple[int, _Line]] = []
    features: list[StatementFeature] = []
    for center_id in sorted(by_center, key=lambda pk: centers[pk].code):
        lines = by_center[center_id]
        statement = existing.get(center_id)
        if statement is not None and statement.status in SIGNED_STATUSES:
            signed += 1
            continue
        candidate = _statement_candidate(
            period=period,
            center=centers[center_id],
            run=run,
            currency=currency,
            lines=lines,
            previous_total=previous.get(center_id),
            built_at=now,
        )
        if statement is not None:
            if statement_content_hash(statement) == statement_content_hash(candidate, lines):
                unchanged += 1
                continue
            if statement.disputes.exists():
                held += 1  # its disputed lines stay as filed; decide the disputes, then build again
                continue
            before = _snapshot(statement)
            statement.lines.all().delete()
            statement.features.all().delete()
            for field in ("run", "currency", "previous_total", "line_count", "built_at", *_TOTAL_FIELDS):
                setattr(statement, field, getattr(candidate, field))
            if statement.status == StatementStatus.IN_REVIEW:
                statement.status = StatementStatus.DRAFT
                returned += 1
            statement.save()
            action = "rebuild"
        else:
            statement = candidate
            statement.save()
            before, action = {}, "build"
        to_write.extend((statement.pk, line) for line in lines)
        features.extend(_statement_features(statement, lines, counts))
        audit_record(
            subject="statement",
            subject_id=statement.pk,
            action=action,
            actor=actor,
            before=before,
            after=_snapshot(statement),
            reason=f"from allocation run #{run.pk}",
        )
        built += 1
    _lines_write(to_write)
    StatementFeature.objects.bulk_create(features, batch_size=2000)
    if row.status == PeriodStatus.OPEN and (built or unchanged or signed):
        row.status = PeriodStatus.CLOSING
        row.save(update_fields=["status", "updated_at"])
    return StatementsBuilt(
        period=str(period),
        run=run.pk,
        built=built,
        unchanged=unchanged,
        signed=signed,
        returned_to_draft=returned,
        held_by_disputes=held,
    )


# --- the workflow ------------------------------------------------------------------


def _locked(statement: Statement) -> Statement:
    return Statement.objects.select_for_update().select_related("run", "cost_center").get(pk=statement.pk)


def _refuse_unless(statement: Statement, *statuses: str, doing: str) -> None:
    if statement.status not in statuses:
        raise Conflict(
            f"{statement.cost_center.code}'s statement for {statement.period} is "
            f"{statement.get_status_display().lower()}: it can't be {doing}",
            code="statement_status",
            extra={"statement": statement.pk, "status": statement.status},
        )


@transaction.atomic
def statement_submit(*, statement: Statement, actor) -> Statement:
    """Send a draft for review: the cost center's members see it and may dispute its lines."""
    access_require(actor, Permission.PREPARE_STATEMENTS, doing="send a statement for review")
    statement = _locked(statement)
    _refuse_unless(statement, StatementStatus.DRAFT, doing="sent for review")
    before = _snapshot(statement)
    statement.status, statement.submitted_at, statement.submitted_by = (
        StatementStatus.IN_REVIEW,
        timezone.now(),
        user_of(actor),
    )
    statement.save(update_fields=["status", "submitted_at", "submitted_by"])
    audit_record(
        subject="statement",
        subject_id=statement.pk,
        action="submit",
        actor=actor,
        before=before,
        after=_snapshot(statement),
    )
    return statement


@transaction.atomic
def statements_submit_period(*, period: Period, actor) -> list[Statement]:
    """Send every draft of the month for review, each audited."""
    access_require(actor, Permission.PREPARE_STATEMENTS, doing=f"send the statements of {period} for review")
    drafts = Statement.objects.filter(period=str(period), status=StatementStatus.DRAFT).order_by("cost_center__code")
    return [statement_submit(statement=s, actor=actor) for s in drafts]


@transaction.atomic
def statement_return(*, statement: Statement, actor, reason: str) -> Statement:
    """Send a statement in review back to draft, with a reason (a figure to fix first)."""
    access_require(actor, Permission.PREPARE_STATEMENTS, doing="return a statement to draft")
    if not reason.strip():
        raise ValidationFailed("returning a statement to draft needs a reason", code="reason_required")
    statement = _locked(statement)
    _refuse_unless(statement, StatementStatus.IN_REVIEW, doing="returned to draft")
    before = _snapshot(statement)
    statement.status = StatementStatus.DRAFT
    statement.save(update_fields=["status"])
    audit_record(
        subject="statement",
        subject_id=statement.pk,
        action="return",
        actor=actor,
        before=before,
        after=_snapshot(statement),
        reason=reason.strip(),
    )
    return statement


def _refuse_unsignable_run(statement: Statement) -> None:
    run = statement.run
    if run.status != AllocationRunStatus.COMPLETED:
        raise Conflict(
            f"{statement.cost_center.code}'s statement for {statement.period} was built from run #{run.pk}, "
            "which a later run superseded: build the statements again",
            code="statement_stale",
            extra={"statement": statement.pk, "run": run.pk},
        )
    if run.is_flagged and not ReconciliationOverride.objects.filter(run=run).exists():
        raise Conflict(
            f"run #{run.pk}'s reconciliation is beyond the tolerance: a finance approver must override it, "
            "with a written reason, before its statements are signed off",
            code="reconciliation_flagged",
            extra={"statement": statement.pk, "run": run.pk},
        )


@transaction.atomic
def statement_approve(*, statement: Statement, actor) -> Statement:
    """Sign a statement off: approver, time and the SHA-256 of its content. From then on
    it never changes; its run's period takes no new run. Its journal entries are written
    in the same transaction."""
    access_require(actor, Permission.SIGN_OFF, doing="sign a statement off")
    journal_write_lock()  # before the statement's row: journal writers lock in one order
    statement = _locked(statement)
    _refuse_unless(statement, StatementStatus.IN_REVIEW, doing="signed off")
    period = period_locked(Period.parse(statement.period))
    if period.status == PeriodStatus.CLOSED:
        raise PeriodClosed(f"{statement.period} is closed", extra={"period": statement.period})
    _refuse_unsignable_run(statement)
    before = _snapshot(statement)
    statement.content_hash = statement_content_hash(statement)
    statement.status, statement.approved_at, statement.approved_by = (
        StatementStatus.APPROVED,
        timezone.now(),
        user_of(actor),
    )
    statement.save(update_fields=["status", "approved_at", "approved_by", "content_hash"])
    allocation_run_close(run=statement.run, at=statement.approved_at)
    audit_record(
        subject="statement",
        subject_id=statement.pk,
        action="approve",
        actor=actor,
        before=before,
        after=_snapshot(statement),
    )
    journal_entries_for_statement(statement=statement, actor=actor)
    statement.refresh_from_db(fields=["status", "posted_at"])  # posted now if it had nothing to post
    if settings.CHARGEBACK_STATEMENT_PDF_ON_APPROVAL:
        _statement_pdf_queue(statement)
    return statement


def _statement_pdf_queue(statement: Statement) -> None:
    """The signed PDF is being made from now on (the statement's page says so), by a worker
    once this sign-off commits: the worker must read the statement as approved."""
    pdf, _ = StatementPdf.objects.get_or_create(statement=statement)
    if pdf.status != StatementPdfStatus.READY:
        task_queue_on_commit(STATEMENT_PDF_TASK, statement.pk)


@transaction.atomic
def statements_approve_period(*, period: Period, actor) -> list[Statement]:
    """Sign off every statement of the month that is in review, each audited; all or none."""
    access_require(actor, Permission.SIGN_OFF, doing=f"sign off the statements of {period}")
    pending = Statement.objects.filter(period=str(period), status=StatementStatus.IN_REVIEW).order_by(
        "cost_center__code"
    )
    return [statement_approve(statement=s, actor=actor) for s in pending]


# --- reopening a signed statement -----------------------------------------------------


@transaction.atomic
def statement_reopen(*, statement: Statement, actor, reason: str) -> Statement:
    """Reopen a signed-off statement of a month still open, with a written reason: it is
    never edited. It becomes superseded (history, as signed), each of its journal entries
    not yet reversed gets a reversing entry, and a new draft revision is built from the
    month's current run for its cost center, to be reviewed and signed off again.
    Returns the new revision."""
    access_require(actor, Permission.SIGN_OFF, doing="reopen a signed-off statement")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("reopening a signed-off statement needs a written reason", code="reason_required")
    journal_write_lock()  # before the statement's row, as at sign-off: journal writers lock in one order
    statement = _locked(statement)
    _refuse_unless(statement, *SIGNED_STATUSES, doing="reopened (only a signed-off statement is)")
    period = Period.parse(statement.period)
    row = period_locked(period)
    code = statement.cost_center.code
    if row.status == PeriodStatus.CLOSED:
        raise PeriodClosed(
            f"{period} is closed: {code}'s statement stays as signed off. Book the change as a correction "
            f"or an adjustment in the next open period ({period.next} or later), or reopen {period} first",
            extra={"period": str(period), "statement": statement.pk},
        )
    undecided = statement.disputes.filter(status__in=UNDECIDED_DISPUTES).count()
    if undecided:
        raise Conflict(
            f"{code}'s statement for {period} has {undecided} undecided dispute(s): decide them before reopening it",
            code="statement_disputes_undecided",
            extra={"statement": statement.pk, "disputes": undecided},
        )
    run = allocation_run_current(period=period)
    if run is None:
        raise ValidationFailed(
            f"{period} has no current allocation run to build the new revision from",
            code="no_allocation_run",
            extra={"period": str(period)},
        )
    before = _snapshot(statement)
    statement.status, statement.reopened_at, statement.reopened_by, statement.reopen_reason = (
        StatementStatus.SUPERSEDED,
        timezone.now(),
        user_of(actor),
        reason,
    )
    statement.save(update_fields=["status", "reopened_at", "reopened_by", "reopen_reason"])
    audit_record(
        subject="statement",
        subject_id=statement.pk,
        action="reopen",
        actor=actor,
        before=before,
        after=_snapshot(statement),
        reason=reason,
    )
    journal_entries_reverse_statement(
        statement=statement, actor=actor, reason=f"statement revision {statement.revision} reopened: {reason}"
    )
    lines = _lines_by_center(run, period, _unallocated_owner(), only=statement.cost_center).get(
        statement.cost_center_id, []
    )
    revision = _statement_candidate(
        period=period,
        center=statement.cost_center,
        run=run,
        currency=_run_currency(run),
        lines=lines,
        previous_total=_previous_totals(period).get(statement.cost_center_id),
        built_at=statement.reopened_at,
    )
    revision.revision, revision.replaces = statement.revision + 1, statement
    revision.save()
    _lines_write([(revision.pk, line) for line in lines])
    StatementFeature.objects.bulk_create(_statement_features(revision, lines, feature_counts(period=period)))
    audit_record(
        subject="statement",
        subject_id=revision.pk,
        action="build",
        actor=actor,
        before={},
        after=_snapshot(revision),
        reason=f"revision {revision.revision}, replacing reopened statement #{statement.pk}, "
        f"from allocation run #{run.pk}",
    )
    return revision
