"""Reads of allocation runs: the run's summary per provider, invoice and cost center."""

from collections import defaultdict
from decimal import Decimal

from django.db.models import F, QuerySet, Sum

from allocation.access import EVERY_COST_CENTER, CostCenterScope
from allocation.choices import AllocationRunStatus, Treatment, UnallocatedReason
from allocation.models import AllocationLine, AllocationRun, InvoiceLine
from pricing.formatting import money_plain
from pricing.periods import Period

__all__ = ["allocation_run_current", "allocation_run_latest", "allocation_run_summary", "allocation_runs"]


def allocation_runs(*, period: Period | None = None) -> QuerySet[AllocationRun]:
    runs = AllocationRun.objects.select_related("mapping_version", "created_by")
    return runs.filter(period=period) if period else runs


def allocation_run_current(*, period: Period) -> AllocationRun | None:
    """The period's run that reports and statements use: the one not superseded."""
    return allocation_runs(period=period).filter(status=AllocationRunStatus.COMPLETED).first()


def allocation_run_latest() -> AllocationRun | None:
    """The current run of the latest period that has one."""
    return AllocationRun.objects.filter(status=AllocationRunStatus.COMPLETED).order_by("-period", "-created_at").first()


def allocation_run_summary(*, run: AllocationRun, cost_centers: bool = True) -> dict:
    """The run's totals: per provider its invoices, allocated (chargeback and showback),
    unallocated by reason, and the reconciliation; per cost center when asked.

    Amounts are decimal strings in the invoice currency, to the cent.
    """
    lines = AllocationLine.objects.filter(run=run)
    per_invoice = defaultdict(lambda: {"allocated": Decimal(0), "unallocated": Decimal(0)})
    per_provider = defaultdict(
        lambda: {
            "allocated": Decimal(0),
            "chargeback": Decimal(0),
            "showback": Decimal(0),
            "reasons": defaultdict(Decimal),
        }
    )
    rows = lines.values("provider", "invoice_id", "reason", "treatment", "cost_center_id").annotate(
        amount=Sum("amount")
    )
    for row in rows:
        amount = row["amount"] or Decimal(0)
        if not row["provider"]:
            continue  # internal transfers (fixed fees) net to zero and belong to no invoice
        provider = per_provider[row["provider"]]
        side = "allocated" if row["cost_center_id"] is not None else "unallocated"
        if row["invoice_id"] is not None:
            per_invoice[row["invoice_id"]][side] += amount
        if side == "allocated":
            provider["allocated"] += amount
            provider["showback" if row["treatment"] == Treatment.SHOWBACK else "chargeback"] += amount
        else:
            provider["reasons"][row["reason"]] += amount
    invoice_sums = {
        row["invoice_id"]: row
        for row in InvoiceLine.objects.filter(invoice__in=run.invoices.all())
        .values("invoice_id")
        .annotate(billed=Sum("billed_cost"), effective=Sum("effective_cost"))
    }
    reconciliation = {(r.provider, r.model): r for r in run.reconciliation.all()}
    invoices_by_provider = defaultdict(list)
    for invoice in run.invoices.order_by("provider", "invoice_id"):
        invoices_by_provider[invoice.provider].append(invoice)
    providers = []
    for provider in sorted(set(per_provider) | set(invoices_by_provider) | {p for p, _ in reconciliation}):
        totals = per_provider[provider]
        invoices = [
            {
                "invoice_id": invoice.invoice_id,
                "currency": invoice.currency,
                "billing_period_start": invoice.billing_period_start.date().isoformat(),
                "total": money_plain(invoice_sums.get(invoice.pk, {}).get("effective")),
                "billed_total": money_plain(invoice_sums.get(invoice.pk, {}).get("billed")),
                "allocated": money_plain(per_invoice[invoice.pk]["allocated"]),
                "unallocated": money_plain(per_invoice[invoice.pk]["unallocated"]),
            }
            for invoice in invoices_by_provider[provider]
        ]
        invoice_total = sum((Decimal(i["total"]) for i in invoices), Decimal(0))
        unallocated_total = sum(totals["reasons"].values(), Decimal(0))
        check = reconciliation.get((provider, ""))
        providers.append(
            {
                "provider": provider,
                "invoice_total": money_plain(invoice_total),
                "billed_total": money_plain(sum((Decimal(i["billed_total"]) for i in invoices), Decimal(0))),
                "allocated": money_plain(totals["allocated"]),
                "chargeback": money_plain(totals["chargeback"]),
                "showback": money_plain(totals["showback"]),
                "unallocated": {
                    "total": money_plain(unallocated_total),
                    "by_reason": {
                        reason: money_plain(totals["reasons"][reason])
                        for reason in UnallocatedReason.values
                        if reason in totals["reasons"]
                    },
                },
                "rated_usage": money_plain(check.rated_cost if check else None),
                "invoiced_usage": money_plain(check.invoice_cost if check else None),
                "variance": money_plain(check.variance if check else None),
                "variance_share": str(check.variance_share) if check and check.variance_share is not None else None,
                "within_tolerance": check.within_tolerance if check else True,
                "invoices": invoices,
                "reconciliation": [
                    {
                        "model": r.model,
                        "invoiced": money_plain(r.invoice_cost),
                        "rated": money_plain(r.rated_cost),
                        "variance": money_plain(r.variance),
                        "variance_share": str(r.variance_share) if r.variance_share is not None else None,
                        "within_tolerance": r.within_tolerance,
                    }
                    for (p, model), r in sorted(reconciliation.items())
                    if p == provider and model
                ],
            }
        )
    reasons: dict[str, Decimal] = defaultdict(Decimal)
    for entry in per_provider.values():
        for reason, amount in entry["reasons"].items():
            reasons[reason] += amount
    summary = {
        "run": run.pk,
        "period": run.period,
        "status": run.status,
        "fingerprint": run.fingerprint,
        "created_at": run.created_at.isoformat(timespec="seconds"),
        "created_by": run.created_by.get_username() if run.created_by else None,
        "seconds": str(run.seconds),
        "mapping_version": run.mapping_version.number,
        "rating_run": run.rating_run_id,
        "tolerance": str(run.tolerance),
        "flagged": run.is_flagged,
        "closed": run.closed_at is not None,
        "invoice_total": money_plain(run.invoice_total),
        "allocated": money_plain(run.allocated),
        "chargeback": money_plain(sum((Decimal(p["chargeback"]) for p in providers), Decimal(0))),
        "showback": money_plain(sum((Decimal(p["showback"]) for p in providers), Decimal(0))),
        "unallocated": {
            "total": money_plain(run.unallocated),
            "by_reason": {r: money_plain(reasons[r]) for r in UnallocatedReason.values if r in reasons},
        },
        "providers": providers,
    }
    if cost_centers:
        summary["cost_centers"] = allocation_run_cost_centers(run=run)
    return summary


def allocation_run_cost_centers(*, run: AllocationRun, scope: CostCenterScope = EVERY_COST_CENTER) -> list[dict]:
    """Per cost center in scope: chargeback, showback and total, internal transfers included."""
    rows = (
        scope.filter(AllocationLine.objects.filter(run=run, cost_center__isnull=False))
        .values("cost_center__code", "cost_center__name", "treatment")
        .annotate(amount=Sum("amount"))
    )
    centers: dict[str, dict] = {}
    for row in rows:
        entry = centers.setdefault(
            row["cost_center__code"],
            {
                "code": row["cost_center__code"],
                "name": row["cost_center__name"],
                "chargeback": Decimal(0),
                "showback": Decimal(0),
            },
        )
        entry["showback" if row["treatment"] == Treatment.SHOWBACK else "chargeback"] += row["amount"] or 0
    return [
        {
            "code": entry["code"],
            "name": entry["name"],
            "chargeback": money_plain(entry["chargeback"]),
            "showback": money_plain(entry["showback"]),
            "total": money_plain(entry["chargeback"] + entry["showback"]),
        }
        for entry in sorted(centers.values(), key=lambda e: e["code"])
    ]


def allocation_line_list(*, run: AllocationRun, cost_center=None, reason: str = "") -> QuerySet[AllocationLine]:
    """A run's lines, in a stable order: one cost center's, one unallocated reason's
    (`unallocated`: every reason's), or all."""
    lines = AllocationLine.objects.filter(run=run)
    if cost_center is not None:
        lines = lines.filter(cost_center=cost_center)
    elif reason == "unallocated":
        lines = lines.filter(cost_center__isnull=True)
    elif reason:
        lines = lines.filter(cost_center__isnull=True, reason=reason)
    # Cost centers first, then the unallocated bucket, on SQLite as on PostgreSQL (their NULLs sort apart).
    return lines.order_by(
        F("cost_center__code").asc(nulls_last=True), "reason", "provider", "team", "feature", "model", "unit", "id"
    )


__all__ += ["allocation_line_list", "allocation_run_cost_centers"]


# --- corrections of closed periods (DESIGN.md "Corrections, never rewrites") ------------------------------------


def _closed_runs() -> QuerySet[AllocationRun]:
    return AllocationRun.objects.filter(closed_at__isnull=False).exclude(status=AllocationRunStatus.CORRECTION)


def period_is_closed(*, period: Period) -> bool:
    """A statement from the period's run was approved: it is never run again, and its late
    data is booked as corrections in a later period."""
    return _closed_runs().filter(period=str(period)).exists()


def period_next_open(*, after: Period) -> Period:
    """The first period after `after` that is not closed (it may have no run yet): where
    corrections of `after`, and adjustments of its disputes, are booked."""
    closed = set(_closed_runs().filter(period__gt=str(after)).values_list("period", flat=True))
    month = after.next
    while str(month) in closed:
        month = month.next
    return month


def correction_runs_booked_in(*, period: Period) -> QuerySet[AllocationRun]:
    """The corrections booked in a period (their `period` is the one each corrects), oldest
    corrected period first."""
    return (
        AllocationRun.objects.filter(status=AllocationRunStatus.CORRECTION, booked_in=str(period))
        .select_related("corrects", "mapping_version", "created_by")
        .order_by("period", "pk")
    )


def correction_runs_of(*, run: AllocationRun) -> QuerySet[AllocationRun]:
    """The corrections of a closed run's period, in the order they were booked."""
    return (
        AllocationRun.objects.filter(status=AllocationRunStatus.CORRECTION, corrects=run)
        .select_related("created_by")
        .order_by("booked_in", "pk")
    )


def correction_lines(*, period: Period, scope: CostCenterScope = EVERY_COST_CENTER) -> QuerySet[AllocationLine]:
    """The lines of the corrections booked in a period, in scope: the prior-period corrections
    of its statements. Each line's `run.period` is the period it corrects; its amount is the
    change (negative when the cost center pays less than its closed statement said).
    Unallocated lines (no cost center) are in the company-wide scope only."""
    lines = AllocationLine.objects.filter(run__status=AllocationRunStatus.CORRECTION, run__booked_in=str(period))
    return (
        scope.filter(lines)
        .select_related("run", "cost_center", "invoice")
        .order_by("run__period", "cost_center__code", "reason", "provider", "team", "feature", "model", "unit", "id")
    )


def correction_summary(*, period: Period, scope: CostCenterScope = EVERY_COST_CENTER) -> list[dict]:
    """Per correction booked in a period: the period it corrects, its closed run, the changes
    of the invoice total, allocated and unallocated, and per cost center in scope its change
    (chargeback, showback, total). Amounts are decimal strings, to the cent."""
    return [
        {
            "run": correction.pk,
            "period": correction.period,
            "corrects": correction.corrects_id,
            "booked_in": correction.booked_in,
            "closed": correction.closed_at is not None,
            "created_at": correction.created_at.isoformat(timespec="seconds"),
            "fingerprint": correction.fingerprint,
            "invoice_total": money_plain(correction.invoice_total),
            "allocated": money_plain(correction.allocated),
            "unallocated": money_plain(correction.unallocated),
            "cost_centers": allocation_run_cost_centers(run=correction, scope=scope),
        }
        for correction in correction_runs_booked_in(period=period)
    ]


__all__ += [
    "correction_lines",
    "correction_runs_booked_in",
    "correction_runs_of",
    "correction_summary",
    "period_is_closed",
    "period_next_open",
]
