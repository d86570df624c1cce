"""The demo's monthly close, so that every screen of it has something to show.

Through the services finance and the teams would call, after each month's allocation:

* the first month is closed: the analyst builds its statements and sends them for
  review, the finance approver signs them all off, reopens one (`DEMO_REOPEN`: its
  entries reversed, revision 2 built, reviewed and signed off again) and closes the month;
* the second is in review: its statements are out, a member of Search and Discovery
  disputes one of its lines, and its run, flagged beyond the reconciliation tolerance
  (Anthropic billed a workspace the gateway never saw, `invoices.STRAY_WORKSPACE`),
  waits for the approver's override;
* the third is open: allocated, no statements yet.

The first month's sign-off wrote its journal entries; the ERP (the demo's service token
`demo-erp`) has pulled them all and posted those of the first `DEMO_POSTED` cost
centers, whose statements are therefore posted; the rest wait for its acknowledgement
(a statement with no chargeback is posted at its sign-off: it has nothing to post).

A step is taken only when its month does not stand there yet, so a second demo leaves
the close as it was. The second month's statements are built again only while no line
of theirs is disputed: a dispute holds on to its line.
"""

import contextlib
import datetime
import sys
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Q

from allocation.access import ServiceAccount
from allocation.choices import AllocationMethod, ApiTokenScope
from allocation.models import ApiToken, CostCenter, UsageLine
from allocation.selectors.runs import allocation_run_current
from allocation.services.access import api_token_issue
from chargeback.choices import (
    SIGNED_STATUSES,
    UNDECIDED_DISPUTES,
    JournalEntryStatus,
    PeriodStatus,
    StatementLineKind,
    StatementStatus,
)
from chargeback.models import (
    AccountingPeriod,
    Dispute,
    JournalEntry,
    ReconciliationOverride,
    Statement,
    StatementLine,
)
from chargeback.services.disputes import dispute_file
from chargeback.services.journals import journal_entries_export, journal_entry_acknowledge
from chargeback.services.periods import period_close
from chargeback.services.statements import (
    statement_approve,
    statement_reopen,
    statement_submit,
    statements_approve_period,
    statements_build,
    statements_submit_period,
)
from pricing.money import CENT, quantize
from pricing.periods import Period

__all__ = ["DEMO_DISPUTE", "DEMO_ERP_TOKEN", "DEMO_POSTED", "DEMO_REOPEN", "demo_close", "demo_close_state"]

# Who does what: the analyst prepares, the approver signs off, a member disputes.
PREPARER, APPROVER = "analyst", "finance"
# The second month's dispute: Search and Discovery's member says part of the largest
# line of calls on their statement was the Evaluation Lab's red-teaming run, tagged with
# the team's key, and names the cost center that should bear it.
DEMO_DISPUTE = {
    "filer": "arjun",
    "cost_center": "CC-1210",
    "counterpart": "CC-1300",
    "share": Decimal("0.25"),
    "reason": (
        "A quarter of these calls were the Evaluation Lab's red-teaming run, sent through our "
        "gateway key with our team tag (the traces below come from their harness). Please move "
        "the amount to Data Science and Research (CC-1300)."
    ),
    "evidence_traces": 3,
}


# The first month's reissued statement: signed off before its budget owner had looked at
# it, reopened by the approver with this reason, and signed off again as revision 2.
DEMO_REOPEN = {
    "cost_center": "CC-1220",
    "reason": (
        "Signed off before Customer Experience Engineering's budget owner had reviewed the "
        "support assistant's lines; reopened so that revision 2 goes out after their review."
    ),
}

# The ERP's service token, and how many cost centers' entries of the closed month it posted.
DEMO_ERP_TOKEN = "demo-erp"
DEMO_POSTED = 4


def demo_close(*, months: list[datetime.date]) -> list[dict[str, Any]]:
    """Take the demo's three months to where the demo leaves them (see the module), and
    return the close's state per month."""
    User = get_user_model()
    preparer, approver = User.objects.get(username=PREPARER), User.objects.get(username=APPROVER)
    closed, in_review = (Period.of(month) for month in months[:2])

    if _status(closed) != PeriodStatus.CLOSED:
        statements_build(period=closed, actor=preparer)
        statements_submit_period(period=closed, actor=preparer)
        statements_approve_period(period=closed, actor=approver)
        _reissue(closed, preparer=preparer, approver=approver)
        period_close(period=closed, actor=approver)
    _erp_posts(closed)

    if _status(in_review) != PeriodStatus.CLOSED:
        if not Dispute.objects.filter(statement__period=str(in_review)).exists():
            statements_build(period=in_review, actor=preparer)
        statements_submit_period(period=in_review, actor=preparer)
        _dispute_ensure(in_review)

    return [demo_close_state(period=Period.of(month)) for month in months]


def _reissue(period: Period, *, preparer, approver) -> Statement:
    """`DEMO_REOPEN`'s statement reopened and its revision 2 signed off."""
    signed = Statement.objects.get(
        period=str(period), cost_center__code=DEMO_REOPEN["cost_center"], status__in=SIGNED_STATUSES
    )
    revision = statement_reopen(statement=signed, actor=approver, reason=DEMO_REOPEN["reason"])
    statement_submit(statement=revision, actor=preparer)
    return statement_approve(statement=revision, actor=approver)


def _status(period: Period) -> str:
    row = AccountingPeriod.objects.filter(period=str(period)).first()
    return row.status if row is not None else PeriodStatus.OPEN


def _erp_posts(period: Period) -> None:
    """The ERP pulls the month's journal entries and posts those of the first cost
    centers (by code) that have any, unless it acknowledged some of the month already."""
    entries = JournalEntry.objects.filter(period=str(period))
    if not entries.exists() or entries.filter(status=JournalEntryStatus.ACKNOWLEDGED).exists():
        return
    token = ApiToken.objects.filter(name=DEMO_ERP_TOKEN, scope=ApiTokenScope.ERP, revoked_at__isnull=True).first()
    erp = ServiceAccount(token or api_token_issue(name=DEMO_ERP_TOKEN, scope=ApiTokenScope.ERP).token)
    journal_entries_export(entries=entries, actor=erp)
    codes = sorted(set(entries.values_list("cost_center__code", flat=True)))[:DEMO_POSTED]
    for entry in entries.filter(cost_center__code__in=codes).order_by("external_id"):
        # The ERP's own numbering, as NetSuite's journal entries are numbered.
        journal_entry_acknowledge(entry=entry, document_number=f"JE{100000 + entry.pk}", actor=erp)


def _dispute_ensure(period: Period) -> Dispute | None:
    """The member's dispute of the largest charge on their cost center's statement,
    unless they filed one for the month already (or it has no such line)."""
    filer = get_user_model().objects.get(username=DEMO_DISPUTE["filer"])
    statement = Statement.objects.filter(period=str(period), cost_center__code=DEMO_DISPUTE["cost_center"]).first()
    if statement is None or statement.status != StatementStatus.IN_REVIEW:
        return None
    if Dispute.objects.filter(statement=statement, filed_by=filer).exists():
        return None
    # A charge of the team's own calls (not a shared service's or a pool's), so the
    # evidence can name some of them.
    line = (
        StatementLine.objects.filter(
            statement=statement,
            kind=StatementLineKind.CHARGE,
            method=AllocationMethod.DIRECT,
            amount__gt=0,
            line_count__gt=0,
        )
        .exclude(feature="")
        .order_by("-amount", "provider", "model", "team", "feature", "environment", "unit", "category", "pk")
        .first()
    )
    if line is None:
        return None
    start, end = period.bounds
    traces = (
        UsageLine.objects.filter(
            occurred_at__gte=start,
            occurred_at__lt=end,
            provider=line.provider,
            model=line.model,
            team=line.team,
            feature=line.feature,
            environment=line.environment,
        )
        .exclude(trace_id="")
        .order_by("trace_id")
        .values_list("trace_id", flat=True)
        .distinct()[: DEMO_DISPUTE["evidence_traces"]]
    )
    # The console mail backend prints on stdout, where the demo command prints its JSON:
    # the demo's own dispute mail goes to stderr (it is sent when the filing commits).
    with contextlib.redirect_stdout(sys.stderr):
        return dispute_file(
            line=line,
            actor=filer,
            amount=max(quantize(line.amount * DEMO_DISPUTE["share"], CENT), CENT),
            reason=DEMO_DISPUTE["reason"],
            evidence_ids="\n".join(traces),
            counterpart=CostCenter.objects.get(code=DEMO_DISPUTE["counterpart"]),
        )


def demo_close_state(*, period: Period) -> dict[str, Any]:
    """Where a month's close stands: its status, its statements and journal entries by
    status, its undecided disputes, and whether its run is flagged and overridden."""
    run = allocation_run_current(period=period)
    statuses = dict(
        Statement.objects.filter(period=str(period)).values_list("status").annotate(n=Count("pk")).order_by("status")
    )
    disputes = Dispute.objects.filter(statement__period=str(period)).aggregate(
        open=Count("pk", filter=Q(status__in=UNDECIDED_DISPUTES)), total=Count("pk")
    )
    entries = dict(
        JournalEntry.objects.filter(period=str(period)).values_list("status").annotate(n=Count("pk")).order_by("status")
    )
    return {
        "period": str(period),
        "status": _status(period),
        "statements": {status: statuses[status] for status in StatementStatus.values if status in statuses},
        "journal_entries": {status: entries[status] for status in JournalEntryStatus.values if status in entries},
        "disputes_open": disputes["open"],
        "disputes": disputes["total"],
        "run": run.pk if run is not None else None,
        "flagged": bool(run and run.is_flagged),
        "overridden": bool(run and ReconciliationOverride.objects.filter(run=run).exists()),
    }
