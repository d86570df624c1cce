"""Reads of months in their close: status, statements by status and open disputes, as
the API's periods list them. Counts are of the actor's cost centers only."""

from decimal import Decimal

from django.db.models import Count, Sum

from allocation.access import CostCenterScope
from chargeback.choices import LIVE_STATUSES, UNDECIDED_DISPUTES, PeriodStatus
from chargeback.models import AccountingPeriod, Dispute, Statement
from chargeback.models.statements import LIVE_STATEMENTS
from pricing.periods import Period

__all__ = ["period_overview", "periods_overview"]


def periods_overview(*, scope: CostCenterScope, period: Period | None = None) -> list[dict]:
    """Every month with a close row or a statement (or the one asked for), newest first:
    its status, who closed it, its live statements by status and total, its undecided disputes."""
    statements = scope.filter(Statement.objects.filter(LIVE_STATEMENTS))
    disputes = scope.filter(Dispute.objects.filter(status__in=UNDECIDED_DISPUTES))
    rows = AccountingPeriod.objects.select_related("closed_by")
    if period is not None:
        statements = statements.filter(period=str(period))
        disputes = disputes.filter(statement__period=str(period))
        rows = rows.filter(period=str(period))
    closes = {row.period: row for row in rows}
    counts: dict[str, dict[str, int]] = {}
    totals: dict[str, Decimal] = {}
    for row in statements.order_by().values("period", "status").annotate(n=Count("id"), total=Sum("total")):
        counts.setdefault(row["period"], dict.fromkeys(LIVE_STATUSES, 0))[row["status"]] = row["n"]
        totals[row["period"]] = totals.get(row["period"], Decimal(0)) + (row["total"] or Decimal(0))
    open_disputes = dict(
        disputes.order_by().values("statement__period").annotate(n=Count("id")).values_list("statement__period", "n")
    )
    months = set(closes) | set(counts) | ({str(period)} if period is not None else set())
    overview = []
    for month in sorted(months, reverse=True):
        close = closes.get(month)
        by_status = counts.get(month, dict.fromkeys(LIVE_STATUSES, 0))
        overview.append(
            {
                "period": month,
                "status": close.status if close else PeriodStatus.OPEN,
                "closed_at": close.closed_at if close else None,
                "closed_by": close.closed_by.get_username() if close and close.closed_by else None,
                "statements": sum(by_status.values()),
                "statements_by_status": by_status,
                "total": totals.get(month, Decimal(0)),
                "disputes_open": open_disputes.get(month, 0),
            }
        )
    return overview


def period_overview(*, scope: CostCenterScope, period: Period) -> dict:
    """One month's overview; a month with no close row and no statement is open and empty."""
    return periods_overview(scope=scope, period=period)[0]
