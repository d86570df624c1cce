"""The finance dashboard, the home page of everyone with spend to see: a period's
totals, its spend by modality and by cost center over the months before it, and for
the company its reconciliation per provider, its unallocated bucket and its run.

Thin like the other pages: every figure comes from `chargeback.selectors.dashboard`;
this module only shapes them for display (decimal text becomes `Money` and `Share`).
The charts draw the selectors' figures as they are, from `json_script` data, and each
has the same figures as a table beside it.
"""

from datetime import datetime
from decimal import Decimal

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from allocation.access import CostCenterScope
from allocation.selectors.ledger import usage_latest_period
from allocation.selectors.runs import allocation_run_current
from chargeback.selectors.dashboard import (
    dashboard_currency,
    dashboard_default_period,
    dashboard_reconciliation,
    dashboard_run_progress,
    dashboard_spend_by_cost_center,
    dashboard_spend_by_modality,
    dashboard_totals,
    dashboard_unallocated,
)
from chargeback.selectors.statements import (
    disputes_counts,
    period_runs_needing_override,
    period_status,
    statements_count_by_status,
)
from pricing.errors import ValidationFailed
from pricing.formatting import Money, Share, money_change_text, percent_text
from pricing.periods import Period

__all__ = ["dashboard"]


def dashboard(request: HttpRequest, *, scope: CostCenterScope) -> HttpResponse:
    """The dashboard of `?period=YYYY-MM` (default: the latest month with a run) for
    the scope: the company's for finance and the platform team, a team member's cost
    centers' for them."""
    text = request.GET.get("period", "").strip()
    try:
        period = Period.parse(text) if text else dashboard_default_period() or usage_latest_period()
    except ValidationFailed as error:
        context = {"period_text": text, "error": error.message, "company": scope.is_everything}
        return render(request, "chargeback/dashboard.html", context, status=400)
    by_modality = dashboard_spend_by_modality(period=period, scope=scope)
    by_cost_center = dashboard_spend_by_cost_center(period=period, scope=scope)
    run = allocation_run_current(period=period)
    currency = dashboard_currency(runs=[run]) if run is not None else by_modality["currency"]
    context = {
        "period": period,
        "period_text": str(period),
        "previous_period": period.previous,
        "next_period": period.next,
        "company": scope.is_everything,
        "currency": currency,
        "run": run,
        "totals": _totals(dashboard_totals(period=period, scope=scope), currency),
        "charts": [
            _chart("spend-by-modality", "Spend by modality", "Modality", by_modality),
            _chart("spend-by-cost-center", "Spend by cost center", "Cost center", by_cost_center),
        ],
    }
    by_status = statements_count_by_status(period=period, scope=scope)
    disputes = disputes_counts(scope=scope)
    context["close"] = {
        "status": period_status(period=period),
        "statements": sum(by_status.values()),
        "by_status": by_status,
        "disputes_open": disputes["open"],
        "disputes_overdue": disputes["overdue"],
        "needs_override": period_runs_needing_override(period=period),
    }
    if scope.is_everything:
        context |= {
            "progress": _progress(dashboard_run_progress(period=period)),
            "reconciliation": _reconciliation(run, currency) if run is not None else [],
            "unallocated": _unallocated(run, currency) if run is not None else [],
        }
    return render(request, "chargeback/dashboard.html", context)


def _totals(totals: dict | None, currency: str) -> dict | None:
    if totals is None:
        return None
    shaped = {
        key: Money.of(totals[key], currency)
        for key in ("total", "allocated", "chargeback", "showback", "invoice_total", "unallocated")
        if key in totals
    }
    shaped |= {key: totals[key] for key in ("run", "company", "cost_centers", "flagged") if key in totals}
    if "tolerance" in totals:
        shaped["tolerance"] = Share.of(totals["tolerance"])
    if totals["previous_total"] is not None:
        before, now = Decimal(totals["previous_total"]), Decimal(totals["total"])
        shaped["change"] = money_change_text(now - before, currency)
        if before:
            share = (now - before) / before
            shaped["change_share"] = f"+{percent_text(share)}" if share > 0 else percent_text(share)
    if "invoice_total" in totals and Decimal(totals["invoice_total"]):
        shaped["unallocated_share"] = Share.of(Decimal(totals["unallocated"]) / Decimal(totals["invoice_total"]))
    return shaped


def _chart(chart_id: str, title: str, row_heading: str, data: dict) -> dict:
    """One chart: its figures as the selector gave them (drawn by static/dashboard.js),
    the same figures as a table, and a sentence that says what it shows."""
    table = _chart_table(data)
    return {
        "id": chart_id,
        "data_id": f"{chart_id}-data",
        "title": title,
        "row_heading": row_heading,
        "data": data,
        "table": table,
        "summary": _chart_summary(title, data, table),
    }


def _chart_summary(title: str, data: dict, table: dict) -> str:
    """What a screen reader hears for the chart: its span, and the last month's total
    and largest part; the table beside it has every figure."""
    months = data["months"]
    text = f"Stacked bar chart of {title.lower()} per month, {months[0]} to {months[-1]}."
    last = table["totals"][-1]
    if last is None:
        return f"{text} {months[-1]} has no allocation run yet. The table below has every figure."
    text += f" {months[-1]}: {last} in all"
    parts = [row for row in table["rows"] if row["amounts"][-1] is not None]
    if parts:
        largest = max(parts, key=lambda row: row["amounts"][-1].value)
        text += f", the most in {largest['label']} ({largest['amounts'][-1]})"
    return f"{text}. The table below has every figure."


def _chart_table(chart: dict) -> dict:
    """A chart's figures as a table: a row per series, a column per month (None: no run)."""
    currency = chart["currency"]

    def money(value: str | None) -> Money | None:
        return None if value is None else Money.of(value, currency)

    return {
        "months": list(zip(chart["months"], chart["runs"], strict=True)),
        "rows": [
            {
                "label": series["label"],
                "amounts": [money(amount) for amount in series["amounts"]],
            }
            for series in chart["series"]
        ],
        "totals": [money(total) for total in chart["totals"]],
        "has_gap": None in chart["totals"],
    }


def _progress(progress: dict | None) -> dict | None:
    if progress is None:
        return None
    try:
        started = datetime.fromisoformat(progress["started_at"])
    except ValueError:
        started = None
    return {**progress, "started": started}


def _reconciliation(run, currency: str) -> list[dict]:
    rows = dashboard_reconciliation(run=run)
    money_keys = ("invoiced", "allocated", "unallocated", "usage_invoiced", "usage_rated", "variance")
    return [
        {
            **row,
            **{key: Money.of(row[key], currency) if row[key] is not None else None for key in money_keys},
            "variance_share": Share.of(row["variance_share"]),
        }
        for row in rows
    ]


def _unallocated(run, currency: str) -> list[dict]:
    return [{**row, "amount": Money.of(row["amount"], currency)} for row in dashboard_unallocated(run=run)]
