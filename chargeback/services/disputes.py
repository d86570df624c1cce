"""Disputes: a cost center's member contests a statement line; finance reviews it and
accepts it (the amount moves as an adjustment in the next open period, on both cost
centers) or rejects it with a reason. The filer and the cost center's owners are told
by email once the change is committed.

A dispute may be filed while the statement is in review and for
`CHARGEBACK_DISPUTE_WINDOW_DAYS` after sign-off; finance decides it within
`CHARGEBACK_DISPUTE_SLA_DAYS`, or it stands out as overdue.
"""

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from allocation.access import Permission, access_require, cost_center_memberships, user_of
from allocation.choices import MembershipRole
from allocation.models import CostCenter, CostCenterMembership
from allocation.models.runs import ALLOCATED_DECIMAL_PLACES, ALLOCATED_MAX_DIGITS
from allocation.selectors.runs import period_next_open
from chargeback.choices import SIGNED_STATUSES, UNDECIDED_DISPUTES, DisputeStatus, StatementStatus
from chargeback.models import Adjustment, Dispute, StatementLine
from chargeback.services.audit import audit_record
from pricing.errors import Conflict, NotAllowed, ValidationFailed
from pricing.formatting import money_plain
from pricing.money import CENT, decimal_from_db, parse_decimal, quantize
from pricing.periods import Period

__all__ = [
    "dispute_accept",
    "dispute_amount_left",
    "dispute_file",
    "dispute_recipients",
    "dispute_reject",
    "dispute_review",
    "dispute_window_end",
]

logger = logging.getLogger(__name__)

EVIDENCE_MAX_BYTES = 10 * 1024 * 1024
# The disputes that hold a share of their line: a rejected one gives its share back.
_CLAIMING = (DisputeStatus.OPEN, DisputeStatus.UNDER_REVIEW, DisputeStatus.ACCEPTED)
# More than the amount column holds is no amount at all (1e40), not just too much.
_AMOUNT_LIMIT = Decimal(10) ** (ALLOCATED_MAX_DIGITS - ALLOCATED_DECIMAL_PLACES)


def dispute_window_end(statement) -> object | None:
    """When disputes of a signed statement stop being taken (None: not signed yet)."""
    if statement.approved_at is None:
        return None
    return statement.approved_at + timedelta(days=settings.CHARGEBACK_DISPUTE_WINDOW_DAYS)


def _snapshot(dispute: Dispute) -> dict:
    return {"status": dispute.status, "amount": money_plain(dispute.amount)}


def _refuse_outside_window(line: StatementLine) -> None:
    statement = line.statement
    if statement.status == StatementStatus.IN_REVIEW:
        return
    if statement.status in SIGNED_STATUSES and timezone.now() <= dispute_window_end(statement):
        return
    when = (
        "is not out for review yet"
        if statement.status == StatementStatus.DRAFT
        else "was reopened and replaced by a new revision: dispute a line of the new one"
        if statement.status == StatementStatus.SUPERSEDED
        else f"was signed off on {statement.approved_at:%Y-%m-%d}, and disputes are taken for "
        f"{settings.CHARGEBACK_DISPUTE_WINDOW_DAYS} days after sign-off"
    )
    raise Conflict(
        f"{statement.cost_center.code}'s statement for {statement.period} {when}",
        code="dispute_window_closed",
        extra={"statement": statement.pk},
    )


def _amount_parse(value: Decimal | str) -> Decimal:
    """The amount disputed: a number of whole cents, more than zero (the project's one
    parser: no floats, no NaN or infinities)."""
    try:
        amount = parse_decimal(value)
    except ValueError as exc:
        raise _amount_invalid(str(exc)) from None
    shown = repr(str(value)[:40])
    if amount <= 0:
        raise _amount_invalid(f"{shown} must be more than 0")
    if amount >= _AMOUNT_LIMIT:
        raise _amount_invalid(f"{shown} is more than any statement carries (under {_AMOUNT_LIMIT:,})")
    # normalize(), not quantize(): quantizing 1e40 to a cent overflows the context.
    if amount.normalize().as_tuple().exponent < -2:
        raise _amount_invalid(f"{shown} has more than 2 decimals (whole cents only)")
    return amount


def _amount_invalid(why: str) -> ValidationFailed:
    return ValidationFailed(f"amount: {why}", code="dispute_amount_invalid", extra={"field": "amount"})


def dispute_amount_left(line: StatementLine) -> Decimal:
    """What of a line is still open to dispute: its amount less what undecided and
    accepted disputes claim of it."""
    return _line_left(line)[1]


def _line_left(line: StatementLine) -> tuple[Decimal, Decimal]:
    """What other disputes already claim of a line, and what is left to dispute."""
    claimed = line.disputes.filter(status__in=_CLAIMING).aggregate(total=Sum("amount"))["total"]
    # To the cent, as money reads everywhere (SQLite's sum comes back normalized: 9, not 9.00).
    claimed = quantize(decimal_from_db(claimed, places=2), CENT)
    return claimed, abs(line.amount) - claimed


@transaction.atomic
def dispute_file(
    *,
    line: StatementLine,
    actor,
    amount: Decimal | str,
    reason: str,
    evidence_ids: str = "",
    evidence_file: UploadedFile | None = None,
    counterpart: CostCenter | None = None,
) -> Dispute:
    """File a dispute of one line of one's own cost center's statement, for at most what
    other disputes have not claimed of it yet."""
    access_require(actor, Permission.FILE_DISPUTE, doing="dispute a statement line")
    # The line's row lock makes two filings on one line take turns: the second sees the
    # first's claim, and both can't pass the check of what is left.
    line = (
        StatementLine.objects.select_for_update(of=("self",)).select_related("statement__cost_center").get(pk=line.pk)
    )
    statement = line.statement
    # Memberships, not visibility: finance sees every statement but disputes only its own.
    if not cost_center_memberships(actor).includes(statement.cost_center_id):
        raise NotAllowed(
            f"{actor.get_username()} may not dispute {statement.cost_center.code}'s statement: "
            "only members of that cost center may",
            code="not_your_cost_center",
            extra={"cost_center": statement.cost_center.code},
        )
    _refuse_outside_window(line)
    amount = _amount_parse(amount)
    claimed, left = _line_left(line)
    if amount > left:
        already = f" ({claimed} of its {abs(line.amount)} is already disputed)" if claimed else ""
        raise ValidationFailed(
            f"amount: {str(amount)[:40]} must be at most the line's {left} left to dispute{already}",
            code="dispute_amount_exceeds_line",
            extra={
                "field": "amount",
                "line_amount": money_plain(abs(line.amount)),
                "claimed": money_plain(claimed),
                "left": money_plain(left),
            },
        )
    if not reason.strip():
        raise ValidationFailed("reason: say why the line is wrong", code="reason_required", extra={"field": "reason"})
    if evidence_file is not None and evidence_file.size > EVIDENCE_MAX_BYTES:
        raise ValidationFailed(
            f"evidence_file: {evidence_file.name} is {evidence_file.size} bytes; the limit is {EVIDENCE_MAX_BYTES}",
            code="evidence_too_large",
            extra={"field": "evidence_file"},
        )
    if counterpart is not None and counterpart.pk == statement.cost_center_id:
        raise ValidationFailed(
            "counterpart: name another cost center than the one disputing", code="counterpart_invalid"
        )
    dispute = Dispute.objects.create(
        statement=statement,
        line=line,
        cost_center=statement.cost_center,
        amount=quantize(amount, CENT),
        reason=reason.strip(),
        evidence_ids=evidence_ids.strip(),
        evidence_file=evidence_file or "",
        counterpart=counterpart,
        filed_by=user_of(actor),
        due_at=timezone.now() + timedelta(days=settings.CHARGEBACK_DISPUTE_SLA_DAYS),
    )
    audit_record(
        subject="dispute", subject_id=dispute.pk, action="file", actor=actor, before={}, after=_snapshot(dispute)
    )
    _tell(dispute, "filed")
    return dispute


def _locked(dispute: Dispute) -> Dispute:
    return Dispute.objects.select_for_update().select_related("statement", "line", "cost_center").get(pk=dispute.pk)


def _refuse_decided(dispute: Dispute, doing: str) -> None:
    if dispute.status not in UNDECIDED_DISPUTES:
        raise Conflict(
            f"dispute #{dispute.pk} is already {dispute.get_status_display().lower()}: it can't be {doing}",
            code="dispute_decided",
            extra={"dispute": dispute.pk, "status": dispute.status},
        )


@transaction.atomic
def dispute_review(*, dispute: Dispute, actor) -> Dispute:
    """Finance takes a dispute up: it is under review."""
    access_require(actor, Permission.RESOLVE_DISPUTE, doing="review a dispute")
    dispute = _locked(dispute)
    if dispute.status != DisputeStatus.OPEN:
        raise Conflict(f"dispute #{dispute.pk} is not open", code="dispute_not_open", extra={"dispute": dispute.pk})
    before = _snapshot(dispute)
    dispute.status = DisputeStatus.UNDER_REVIEW
    dispute.save(update_fields=["status"])
    audit_record(
        subject="dispute", subject_id=dispute.pk, action="review", actor=actor, before=before, after=_snapshot(dispute)
    )
    return dispute


def _decide(dispute: Dispute, actor, status: str, reason: str) -> dict:
    if not reason.strip():
        raise ValidationFailed("a decision needs a reason", code="reason_required", extra={"field": "reason"})
    before = _snapshot(dispute)
    dispute.status, dispute.decided_by, dispute.decided_at = status, user_of(actor), timezone.now()
    dispute.decision_reason = reason.strip()
    dispute.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
    return before


@transaction.atomic
def dispute_accept(*, dispute: Dispute, actor, reason: str, counterpart: CostCenter | None = None) -> Dispute:
    """Accept a dispute under review: the amount comes off the disputing cost center and
    goes to the counterpart (finance's choice, else the filer's; unallocated when neither
    names one), both as adjustments in the next open period."""
    access_require(actor, Permission.RESOLVE_DISPUTE, doing="accept a dispute")
    dispute = _locked(dispute)
    _refuse_decided(dispute, "accepted")
    # Money moves only after finance has taken the dispute up: open, review, then accept.
    if dispute.status != DisputeStatus.UNDER_REVIEW:
        raise Conflict(
            f"dispute #{dispute.pk} is not under review yet: start its review before accepting it",
            code="dispute_not_under_review",
            extra={"dispute": dispute.pk, "status": dispute.status},
        )
    counterpart = counterpart or dispute.counterpart
    if counterpart is not None and counterpart.pk == dispute.cost_center_id:
        raise ValidationFailed(
            "counterpart: name another cost center than the one disputing", code="counterpart_invalid"
        )
    if counterpart is not None:
        dispute.counterpart = counterpart
        dispute.save(update_fields=["counterpart"])
    before = _decide(dispute, actor, DisputeStatus.ACCEPTED, reason)
    booked_in = period_next_open(after=Period.parse(dispute.statement.period))
    note = f"Dispute #{dispute.pk} accepted ({dispute.statement.period}, {dispute.cost_center.code})"
    treatment = dispute.line.treatment
    Adjustment.objects.bulk_create(
        [
            Adjustment(
                dispute=dispute,
                period=str(booked_in),
                source_period=dispute.statement.period,
                cost_center=dispute.cost_center,
                amount=-dispute.amount,
                treatment=treatment,
                description=f"{note}: credit",
            ),
            Adjustment(
                dispute=dispute,
                period=str(booked_in),
                source_period=dispute.statement.period,
                cost_center=counterpart,
                amount=dispute.amount,
                treatment=treatment,
                description=f"{note}: charged here" if counterpart else f"{note}: left unallocated",
            ),
        ]
    )
    after = {
        **_snapshot(dispute),
        "booked_in": str(booked_in),
        "counterpart": counterpart.code if counterpart else None,
    }
    audit_record(
        subject="dispute",
        subject_id=dispute.pk,
        action="accept",
        actor=actor,
        before=before,
        after=after,
        reason=dispute.decision_reason,
    )
    _tell(dispute, "accepted")
    return dispute


@transaction.atomic
def dispute_reject(*, dispute: Dispute, actor, reason: str) -> Dispute:
    """Reject a dispute with a reason; the statement stands."""
    access_require(actor, Permission.RESOLVE_DISPUTE, doing="reject a dispute")
    dispute = _locked(dispute)
    _refuse_decided(dispute, "rejected")
    before = _decide(dispute, actor, DisputeStatus.REJECTED, reason)
    audit_record(
        subject="dispute",
        subject_id=dispute.pk,
        action="reject",
        actor=actor,
        before=before,
        after=_snapshot(dispute),
        reason=dispute.decision_reason,
    )
    _tell(dispute, "rejected")
    return dispute


# --- telling people ----------------------------------------------------------------


def dispute_recipients(dispute: Dispute) -> list[str]:
    """The filer and the owners of the disputing cost center, by their email addresses;
    once accepted, the owners of the counterpart too, since the amount lands on them."""
    centers = [dispute.cost_center_id]
    if dispute.status == DisputeStatus.ACCEPTED and dispute.counterpart_id:
        centers.append(dispute.counterpart_id)
    owners = CostCenterMembership.objects.filter(cost_center__in=centers, role=MembershipRole.OWNER)
    addresses = [dispute.filed_by.email, *owners.values_list("user__email", flat=True)]
    return sorted({address for address in addresses if address})


def _tell(dispute: Dispute, what: str) -> None:
    """Mail the filer and the owners once the change is committed; a mail server that is
    down is logged, and never undoes the decision."""
    recipients = dispute_recipients(dispute)
    if not recipients:
        return
    statement = dispute.statement
    subject = f"Dispute #{dispute.pk} {what}: {dispute.cost_center.code} {statement.period}"
    lines = [
        f"Dispute #{dispute.pk} of {dispute.cost_center.code} ({dispute.cost_center.name})'s statement "
        f"for {statement.period} was {what}.",
        "",
        f"Line: {dispute.line.provider} {dispute.line.model} {dispute.line.feature} ({dispute.line.amount})",
        f"Amount disputed: {dispute.amount} {statement.currency}",
        f"Reason given: {dispute.reason}",
    ]
    if dispute.decision_reason:
        lines.append(f"Decision: {dispute.get_status_display()}: {dispute.decision_reason}")
    if dispute.status == DisputeStatus.ACCEPTED:
        booked = dispute.adjustments.values_list("period", flat=True).first()
        lines.append(f"The amount moves as an adjustment on the statements of {booked}.")
        bearer = dispute.counterpart
        lines.append(f"It is charged to {bearer.code} ({bearer.name})." if bearer else "It is left unallocated.")
    body = "\n".join(lines)

    def send() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        except OSError:
            logger.exception("dispute #%s: the mail to %s was not sent", dispute.pk, ", ".join(recipients))

    transaction.on_commit(send)
