"""Reads of the finance dashboard: a period's spend, and the months before it, by
modality and by cost center; its reconciliation per provider, its unallocated bucket
by reason, and the progress of its allocation run.

Every figure comes from a month's current allocation run (the one not superseded),
summed in the database. Amounts are decimal strings to the cent, as JSON and the
page's charts carry them. What a team member sees is narrowed by their
`CostCenterScope`: their cost centers' lines alone, so no unallocated money; the
providers' reconciliation and the unallocated bucket are company figures, for
finance and the platform team.
"""

from collections import defaultdict
from decimal import Decimal

from django.db.models import Count, Q, Sum

from allocation.access import CostCenterScope
from allocation.choices import AllocationProgressState, AllocationRunStatus, Treatment, UnallocatedReason
from allocation.models import AllocationLine, AllocationRun, CostCenter, ProviderInvoice
from allocation.selectors.runs import allocation_run_current, allocation_run_latest, allocation_runs
from allocation.services.runs.progress import allocation_progress
from pricing.choices import Modality
from pricing.formatting import money_cents, money_plain
from pricing.periods import Period

__all__ = [
    "DASHBOARD_MONTHS",
    "NO_MODALITY",
    "OTHER_COST_CENTERS",
    "TOP_COST_CENTERS",
    "UNALLOCATED",
    "dashboard_currency",
    "dashboard_default_period",
    "dashboard_months",
    "dashboard_reconciliation",
    "dashboard_run_progress",
    "dashboard_runs",
    "dashboard_spend_by_cost_center",
    "dashboard_spend_by_modality",
    "dashboard_totals",
    "dashboard_unallocated",
]

# Half a year shows a trend and still fits side by side on a laptop's screen.
DASHBOARD_MONTHS = 6
# More stacked segments than this no reader tells apart; the rest are summed as one.
TOP_COST_CENTERS = 6
# Keys of the series that are no single modality or cost center (no real key is empty
# or starts with an underscore: modalities are catalog words, cost centers codes).
NO_MODALITY = ""
OTHER_COST_CENTERS = "_others"
UNALLOCATED = "_unallocated"
_LABELS = {
    NO_MODALITY: "No modality (shared pools and fees)",
    OTHER_COST_CENTERS: "Other cost centers",
    UNALLOCATED: "Unallocated",
}
_LIVE_STATES = frozenset({AllocationProgressState.QUEUED, AllocationProgressState.RUNNING})
_ZERO = Decimal(0)


def dashboard_default_period() -> Period | None:
    """The month the dashboard opens on: the latest month with a current run (None: no
    month has been allocated yet, and the page opens where the other pages do)."""
    run = allocation_run_latest()
    return Period.parse(run.period) if run is not None else None


def dashboard_months(*, period: Period, months: int = DASHBOARD_MONTHS) -> list[Period]:
    """The months a chart covers, oldest first, ending with `period`."""
    if months < 1:
        raise ValueError("a chart covers at least one month")
    window = [period]
    while len(window) < months:
        window.append(window[-1].previous)
    return window[::-1]


def dashboard_runs(*, period: Period, months: int = DASHBOARD_MONTHS) -> dict[Period, AllocationRun | None]:
    """Each month's current run, oldest month first (None: the month has no run yet)."""
    window = dashboard_months(period=period, months=months)
    current = allocation_runs().filter(status=AllocationRunStatus.COMPLETED, period__in=[str(m) for m in window])
    by_period = {run.period: run for run in current}
    return {month: by_period.get(str(month)) for month in window}


def dashboard_currency(*, runs: list[AllocationRun]) -> str:
    """The currency of the runs' invoices when they share one; else amounts read as
    dollars, as the allocation pages say them."""
    currencies = set(
        ProviderInvoice.objects.filter(allocation_runs__in=runs).values_list("currency", flat=True).distinct()
    )
    return currencies.pop() if len(currencies) == 1 else "USD"


def dashboard_spend_by_modality(*, period: Period, scope: CostCenterScope, months: int = DASHBOARD_MONTHS) -> dict:
    """Spend per modality and month, from each month's current run, in scope; the
    company's includes the unallocated bucket, so that a month's total is its invoices'.

    `series` lists the modalities by their spend over the months, the lines that carry
    no modality (shared pools, fees) last; a series that is zero in every month is left out.
    """
    runs = dashboard_runs(period=period, months=months)
    periods = _run_periods(runs)
    rows = _lines_in_scope(runs, scope).values("run_id", "modality").annotate(amount=Sum("amount")).order_by()
    amounts = {(periods[row["run_id"]], row["modality"]): money_cents(row["amount"]) for row in rows}
    labels = dict(Modality.choices)

    def order(key: str, total: Decimal) -> tuple:
        return (key == NO_MODALITY, -total, key)

    return _chart(runs, amounts, lambda key: labels.get(key) or _LABELS.get(key) or key, order)


def dashboard_spend_by_cost_center(
    *, period: Period, scope: CostCenterScope, months: int = DASHBOARD_MONTHS, top: int = TOP_COST_CENTERS
) -> dict:
    """Spend per cost center and month, from each month's current run, in scope: the
    `top` cost centers by spend over the months, the rest summed as "Other cost centers",
    and, for the company, the unallocated bucket; internal transfers (fixed fees) count
    where they land, as on the run's page.
    """
    runs = dashboard_runs(period=period, months=months)
    periods = _run_periods(runs)
    # Grouped by ids, not by the joined code and name: ~20,000 lines a month sort or hash
    # far faster on integers than on collated text; the names come with the few centers.
    lines = _lines_in_scope(runs, scope)
    rows = list(lines.values("run_id", "cost_center_id").annotate(amount=Sum("amount")).order_by())
    centers = {
        pk: (code, name)
        for pk, code, name in CostCenter.objects.filter(
            pk__in={row["cost_center_id"] for row in rows if row["cost_center_id"] is not None}
        ).values_list("pk", "code", "name")
    }
    per_center: dict[tuple[str, str], Decimal] = {}
    names: dict[str, str] = {}
    for row in rows:
        code, name = centers.get(row["cost_center_id"], (UNALLOCATED, ""))
        names[code] = name
        per_center[(periods[row["run_id"]], code)] = money_cents(row["amount"])
    window_totals: dict[str, Decimal] = defaultdict(Decimal)
    for (_, code), amount in per_center.items():
        window_totals[code] += amount
    ranked = sorted((code for code in window_totals if code != UNALLOCATED), key=lambda c: (-window_totals[c], c))
    shown = set(ranked[:top])
    amounts: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (month, code), amount in per_center.items():
        amounts[(month, code if code in shown or code == UNALLOCATED else OTHER_COST_CENTERS)] += amount

    def label(key: str) -> str:
        return _LABELS.get(key) or f"{key} {names.get(key, '')}".strip()

    def order(key: str, total: Decimal) -> tuple:
        return (key == UNALLOCATED, key == OTHER_COST_CENTERS, -total, key)

    return _chart(runs, amounts, label, order)


def _run_periods(runs: dict[Period, AllocationRun | None]) -> dict[int, str]:
    return {run.pk: run.period for run in runs.values() if run is not None}


def _lines_in_scope(runs: dict[Period, AllocationRun | None], scope: CostCenterScope):
    lines = AllocationLine.objects.filter(run__in=[run for run in runs.values() if run is not None])
    # A team member's scope leaves the unallocated bucket (no cost center) out.
    return scope.filter(lines)


def _chart(runs: dict[Period, AllocationRun | None], amounts, label, order) -> dict:
    """A chart's figures from (month, key) -> amount: per series its amount each month
    (None in a month with no run) and per month the total of the series."""
    months = [str(month) for month in runs]
    has_run = [runs[month] is not None for month in runs]
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for (_, key), amount in amounts.items():
        totals[key] += amount
    keys = [key for key in totals if any(amounts.get((month, key)) for month in months)]
    series = [
        {
            "key": key,
            "label": label(key),
            "amounts": [
                money_plain(amounts.get((month, key), _ZERO)) if ran else None
                for month, ran in zip(months, has_run, strict=True)
            ],
            "total": money_plain(totals[key]),
        }
        for key in sorted(keys, key=lambda k: order(k, totals[k]))
    ]
    month_totals = [
        money_plain(sum((amounts.get((month, key), _ZERO) for key in keys), _ZERO)) if ran else None
        for month, ran in zip(months, has_run, strict=True)
    ]
    present = [run for run in runs.values() if run is not None]
    return {
        "currency": dashboard_currency(runs=present) if present else "USD",
        "months": months,
        "runs": [run.pk if run is not None else None for run in runs.values()],
        "series": series,
        "totals": month_totals,
    }


def dashboard_totals(*, period: Period, scope: CostCenterScope) -> dict | None:
    """The period's headline figures from its current run, in scope (None: no run yet).

    `total` is what the scope was charged and shown: for the company every invoice
    cent, allocated and unallocated; for a team member their cost centers' lines.
    `previous_total` is the same figure for the month before, when it has a run.
    """
    run = allocation_run_current(period=period)
    if run is None:
        return None
    figures = _scope_figures(run, scope)
    previous = allocation_run_current(period=period.previous)
    previous_total = None
    if previous is not None:
        before = _scope_figures(previous, scope)
        previous_total = money_plain(before["allocated"] + before["unallocated"])
    totals = {
        "run": run,
        "company": scope.is_everything,
        "total": money_plain(figures["allocated"] + figures["unallocated"]),
        "allocated": money_plain(figures["allocated"]),
        "chargeback": money_plain(figures["chargeback"]),
        "showback": money_plain(figures["showback"]),
        "previous_total": previous_total,
        "cost_centers": figures["cost_centers"],
    }
    if scope.is_everything:
        totals |= {
            "invoice_total": money_plain(run.invoice_total),
            "unallocated": money_plain(figures["unallocated"]),
            "flagged": run.is_flagged,
            "tolerance": str(run.tolerance),
        }
    return totals


def _scope_figures(run: AllocationRun, scope: CostCenterScope) -> dict:
    allocated = Q(cost_center__isnull=False)
    showback = Q(treatment=Treatment.SHOWBACK)
    figures = scope.filter(AllocationLine.objects.filter(run=run)).aggregate(
        chargeback=Sum("amount", filter=allocated & ~showback),
        showback=Sum("amount", filter=allocated & showback),
        unallocated=Sum("amount", filter=Q(cost_center__isnull=True)),
        cost_centers=Count("cost_center", distinct=True),
    )
    chargeback, showback = money_cents(figures["chargeback"]), money_cents(figures["showback"])
    return {
        "chargeback": chargeback,
        "showback": showback,
        "allocated": chargeback + showback,
        "unallocated": money_cents(figures["unallocated"]),
        "cost_centers": figures["cost_centers"],
    }


def dashboard_reconciliation(*, run: AllocationRun) -> list[dict]:
    """Per provider of the run: its invoices' total (allocated plus unallocated, which
    the true-up makes equal), and the run's check of rated usage against invoiced usage
    (the reconciliation line with no model)."""
    money = {
        row["provider"]: row
        for row in AllocationLine.objects.filter(run=run)
        .exclude(provider="")  # internal transfers (fixed fees) belong to no invoice
        .values("provider")
        .annotate(
            allocated=Sum("amount", filter=Q(cost_center__isnull=False)),
            unallocated=Sum("amount", filter=Q(cost_center__isnull=True)),
        )
        .order_by()
    }
    checks = {line.provider: line for line in run.reconciliation.filter(model="")}
    rows = []
    for provider in sorted(set(money) | set(checks)):
        allocated = money_cents(money.get(provider, {}).get("allocated"))
        unallocated = money_cents(money.get(provider, {}).get("unallocated"))
        check = checks.get(provider)
        rows.append(
            {
                "provider": provider,
                "invoiced": money_plain(allocated + unallocated),
                "allocated": money_plain(allocated),
                "unallocated": money_plain(unallocated),
                "usage_invoiced": money_plain(check.invoice_cost) if check else None,
                "usage_rated": money_plain(check.rated_cost) if check else None,
                "variance": money_plain(check.variance) if check else None,
                "variance_share": str(check.variance_share) if check and check.variance_share is not None else None,
                "within_tolerance": check.within_tolerance if check else True,
            }
        )
    return rows


def dashboard_unallocated(*, run: AllocationRun) -> list[dict]:
    """The run's unallocated bucket by reason, in the reasons' own order, with the
    ledger lines behind each."""
    rows = {
        row["reason"]: row
        for row in AllocationLine.objects.filter(run=run, cost_center__isnull=True)
        .values("reason")
        .annotate(amount=Sum("amount"), lines=Sum("line_count"))
        .order_by()
    }
    return [
        {
            "reason": reason.value,
            "label": reason.label,
            "amount": money_plain(rows[reason]["amount"]),
            "lines": rows[reason]["lines"] or 0,
        }
        for reason in UnallocatedReason
        if reason in rows
    ]


def dashboard_run_progress(*, period: Period) -> dict | None:
    """The period's allocation run while it is queued or running, as its progress
    marker says (None: nothing is running)."""
    progress = allocation_progress(period=period) or {}
    if progress.get("state") not in _LIVE_STATES:
        return None
    return {
        "state": progress["state"],
        "step": progress.get("step") or "",
        "percent": int(progress.get("percent") or 0),
        "user": progress.get("user") or "",
        "started_at": progress.get("started_at") or "",
    }
