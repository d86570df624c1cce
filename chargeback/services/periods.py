"""A month's close: its status, closing and reopening it, and the override that lets a
flagged run's statements be signed off. Each transition checks the actor's role, locks
its row and writes its audit row in one transaction (STYLE.md house rule 3)."""

from django.db import transaction
from django.utils import timezone

from allocation.access import Permission, access_require, user_of
from allocation.models import AllocationRun
from allocation.services.runs.run import PeriodClosed
from chargeback.choices import SIGNED_STATUSES, PeriodStatus
from chargeback.models import AccountingPeriod, ReconciliationOverride, Statement
from chargeback.models.statements import LIVE_STATEMENTS
from chargeback.services.audit import audit_record
from pricing.errors import Conflict, ValidationFailed
from pricing.periods import Period

__all__ = [
    "PeriodClosed",
    "period_close",
    "period_locked",
    "period_reopen",
    "reconciliation_override",
]


def period_locked(period: Period) -> AccountingPeriod:
    """The period's close row, created open when missing, locked for the transaction."""
    AccountingPeriod.objects.get_or_create(period=str(period))
    return AccountingPeriod.objects.select_for_update().get(period=str(period))


def _snapshot(row: AccountingPeriod) -> dict:
    return {"status": row.status, "closed_at": row.closed_at.isoformat() if row.closed_at else None}


@transaction.atomic
def period_close(*, period: Period, actor) -> AccountingPeriod:
    """Close a month whose statements are all signed off. Nothing in it changes again:
    late data and accepted disputes land in the next open month."""
    access_require(actor, Permission.SIGN_OFF, doing=f"close {period}")
    row = period_locked(period)
    if row.status == PeriodStatus.CLOSED:
        raise PeriodClosed(f"{period} is already closed", extra={"period": str(period)})
    statements = Statement.objects.filter(LIVE_STATEMENTS, period=str(period))
    if not statements.exists():
        raise Conflict(f"{period} has no statements to close", code="period_without_statements")
    pending = list(statements.exclude(status__in=SIGNED_STATUSES).values_list("cost_center__code", flat=True))
    if pending:
        raise Conflict(
            f"{period} can't close: {len(pending)} statements are not signed off ({', '.join(pending[:10])})",
            code="statements_not_signed_off",
            extra={"period": str(period), "cost_centers": pending},
        )
    before = _snapshot(row)
    row.status, row.closed_at, row.closed_by = PeriodStatus.CLOSED, timezone.now(), user_of(actor)
    row.save()
    audit_record(subject="period", subject_id=period, action="close", actor=actor, before=before, after=_snapshot(row))
    return row


@transaction.atomic
def period_reopen(*, period: Period, actor, reason: str) -> AccountingPeriod:
    """Reopen a closed month, with a written reason: it goes back to closing, so that a
    statement missing from it can still be built and signed off. Signed-off statements
    stay as they are."""
    access_require(actor, Permission.SIGN_OFF, doing=f"reopen {period}")
    if not reason.strip():
        raise ValidationFailed("reopening a closed period needs a reason", code="reason_required")
    row = period_locked(period)
    if row.status != PeriodStatus.CLOSED:
        raise Conflict(f"{period} is not closed", code="period_not_closed", extra={"period": str(period)})
    before = _snapshot(row)
    row.status, row.closed_at, row.closed_by = PeriodStatus.CLOSING, None, None
    row.save()
    audit_record(
        subject="period",
        subject_id=period,
        action="reopen",
        actor=actor,
        before=before,
        after=_snapshot(row),
        reason=reason.strip(),
    )
    return row


@transaction.atomic
def reconciliation_override(*, run: AllocationRun, actor, reason: str) -> ReconciliationOverride:
    """Accept a flagged run's reconciliation for sign-off, with a written reason."""
    access_require(actor, Permission.SIGN_OFF, doing=f"override the reconciliation of run #{run.pk}")
    if not reason.strip():
        raise ValidationFailed("an override needs a written reason", code="reason_required")
    run = AllocationRun.objects.select_for_update().get(pk=run.pk)
    if not run.is_flagged:
        raise Conflict(f"run #{run.pk}'s reconciliation is within tolerance: nothing to override", code="not_flagged")
    if ReconciliationOverride.objects.filter(run=run).exists():
        raise Conflict(f"run #{run.pk}'s reconciliation was already overridden", code="already_overridden")
    override = ReconciliationOverride.objects.create(run=run, reason=reason.strip(), overridden_by=user_of(actor))
    audit_record(
        subject="allocation_run",
        subject_id=run.pk,
        action="override_reconciliation",
        actor=actor,
        before={"flagged": True, "overridden": False},
        after={"flagged": True, "overridden": True},
        reason=override.reason,
    )
    return override
