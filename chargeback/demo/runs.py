"""The demo's rating and allocation runs per month, and the figures it reports of each.

A month is rated and allocated again only when something it reads is new (the
caller says so): otherwise the current run stands, so a second demo is quick
and leaves the runs as they were. A closed month is never run again.
"""

from typing import Any

from allocation.models import AllocationRun
from allocation.selectors.rating import rating_run_current
from allocation.selectors.runs import allocation_run_current, allocation_run_summary
from allocation.services.rating import usage_rate_period
from allocation.services.runs.run import allocation_run_execute
from pricing.money import CENT, decimal_text, quantize
from pricing.periods import Period

__all__ = ["demo_month_allocate", "demo_month_rate", "demo_run_figures"]


def demo_month_rate(period: str, *, user, again: bool) -> tuple[dict[str, Any], bool]:
    """The month's rating (anew when `again` or when it has none) and its figures; True
    when this call rated it."""
    month = Period.parse(period)
    run = None if again else rating_run_current(period=month)
    rated = run is None
    if run is None:
        run = usage_rate_period(period=month, created_by=user)
    figures = {
        "period": run.period,
        "lines_rated": run.lines_rated,
        "lines_unpriced": run.lines_unpriced,
        "cost": decimal_text(quantize(run.cost, CENT)),
    }
    return figures, rated


def demo_month_allocate(period: str, *, user, again: bool) -> AllocationRun:
    """Run the month's allocation, unless its current run read the same inputs or the
    month is closed; the month's current run."""
    month = Period.parse(period)
    run = None if again else allocation_run_current(period=month)
    if run is None:
        closed = AllocationRun.objects.filter(period=period, closed_at__isnull=False).exists()
        run = allocation_run_current(period=month) if closed else allocation_run_execute(period=month, actor=user)
    return run


def demo_run_figures(run: AllocationRun) -> dict[str, Any]:
    """A run's figures as the demo reports them, as the run stands now (after the close)."""
    run.refresh_from_db()
    summary = allocation_run_summary(run=run, cost_centers=False)
    return {
        "period": run.period,
        "run": run.pk,
        "invoice_total": summary["invoice_total"],
        "allocated": summary["allocated"],
        "chargeback": summary["chargeback"],
        "showback": summary["showback"],
        "unallocated": summary["unallocated"]["total"],
        "unallocated_by_reason": summary["unallocated"]["by_reason"],
        "flagged": summary["flagged"],
        "closed": summary["closed"],
    }
