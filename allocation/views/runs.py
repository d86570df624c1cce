"""Pages of allocation runs, mounted at /allocation/: run a month, follow it, review it.

Thin like the other pages: runs are read through `allocation.selectors.runs` and
started through `allocation_run_queue`; this module only shapes figures for
display (Decimals become `Money` and `Share` of `pricing.formatting`, never floats).
A little over 500 lines: the period page, the run page and its lines (page and CSV)
share the shaping of providers, reasons and lines, and read best side by side.
"""

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet, Sum
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers

from allocation.access import CostCenterScope, Permission, access_allows, cost_center_scope
from allocation.choices import (
    AllocationMethod,
    AllocationProgressState,
    AllocationRunStatus,
    ChargeCategory,
    Treatment,
    UnallocatedReason,
)
from allocation.filtersets import AllocationLineFilterSet
from allocation.models import AllocationLine, AllocationRun
from allocation.selectors.ledger import usage_latest_period
from allocation.selectors.runs import (
    allocation_line_list,
    allocation_run_cost_centers,
    allocation_run_current,
    allocation_run_summary,
    allocation_runs,
)
from allocation.services.runs.progress import allocation_progress
from allocation.services.runs.run import allocation_run_queue
from allocation.views.ledger import csv_download
from pricing.errors import ApplicationError, ValidationFailed
from pricing.formatting import Money, Share, money_cents, quantity_plain, quantity_text
from pricing.periods import Period

__all__ = [
    "allocation_run_detail",
    "allocation_run_lines",
    "allocation_run_lines_csv",
    "allocation_run_list",
]

# States of a run in progress: the period's page polls while the cache says one of these.
LIVE_STATES = frozenset({AllocationProgressState.QUEUED, AllocationProgressState.RUNNING})
POLL_MILLISECONDS = 3000
LINES_PER_PAGE = 100
FINGERPRINT_SHOWN = 12
# Every line of a run, one CSV row each; amounts in the invoice currency.
LINE_CSV_HEADER = [
    "run",
    "period",
    "provider",
    "invoice_id",
    "cost_center",
    "cost_center_name",
    "unallocated_reason",
    "treatment",
    "method",
    "category",
    "team",
    "feature",
    "environment",
    "modality",
    "model",
    "unit",
    "rule",
    "pool",
    "line_count",
    "quantity",
    "rated_cost",
    "amount",
]

# Short names of allocation methods for the lines table, where the choices' labels are too long.
METHOD_SHORT = {
    AllocationMethod.RATE_CARD: "Rate card",
    AllocationMethod.CARD_SPREAD: "Card spread",
    AllocationMethod.MARGIN: "Margin",
    AllocationMethod.FIXED_FEE: "Fixed fee",
    AllocationMethod.FEE_ABSORBED: "Under a fixed fee",
    AllocationMethod.POOL_PROPORTIONAL: "Pool, by driver",
    AllocationMethod.POOL_ACTIVITY: "Pool, by activity",
    AllocationMethod.POOL_EVEN: "Pool, even",
}

# What each unallocated reason means, and what clears it, for a finance reader.
REASON_EXPLANATIONS: dict[str, tuple[str, str]] = {
    UnallocatedReason.UNTAGGED: (
        "Usage that carries no team, feature or environment tag, so no mapping rule can say who pays for it.",
        "Tag these calls at the gateway or the SDK, or add a mapping rule for them, then run again.",
    ),
    UnallocatedReason.UNMAPPED: (
        "Usage that is tagged, but no rule of the mapping version in force matches its tags.",
        "Add a rule (or widen one) in a new mapping version, sign it off, then run again.",
    ),
    UnallocatedReason.UNPRICED: (
        "Usage that no price book prices, so its share of the invoice cannot be attributed by cost.",
        "Load a price for the model and unit (see unpriced usage), then run again.",
    ),
    UnallocatedReason.FAILED_OR_MODERATED: (
        "Calls to a shared service that failed or were moderated: the provider bills them, "
        "but the service does not charge its callers for them.",
        "They stay with the service that made them; its owner decides whether to absorb them.",
    ),
    UnallocatedReason.TRUE_UP_GAP: (
        "The part of the invoice beyond the reconciliation tolerance: rated usage and the invoice differ "
        "by more than the tolerance allows, so the difference is not spread over the teams.",
        "Check the invoice and the prices against each other; correct the one that is wrong, then run again.",
    ),
    UnallocatedReason.POOL_WITHOUT_DRIVER: (
        "A shared-cost pool (a platform fee, a vector store …) for which no driver was measured this month: "
        "no tokens, spend or activity counts of its cost centers, so it could not be split.",
        "Record the pool's activity counts for the month, or widen its cost centers, then run again.",
    ),
}


def _currency(run: AllocationRun) -> str:
    """The currency of the run's invoices when they share one; else amounts read as dollars."""
    currencies = sorted({invoice.currency for invoice in run.invoices.all()})
    return currencies[0] if len(currencies) == 1 else "USD"


def _runs_url(period: Period | None = None) -> str:
    url = reverse("allocation-runs")
    return f"{url}?{urlencode({'period': str(period)})}" if period else url


def _person(user) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else ""


def _started(progress: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(progress.get("started_at") or "")
    except ValueError:
        return None


# --- the period: run it, follow it, list its runs -------------------------------


@require_http_methods(["GET", "POST"])
@vary_on_headers("X-Requested-With")
def allocation_run_list(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return _allocation_run_start(request)
    try:
        text = request.GET.get("period", "").strip()
        period = Period.parse(text) if text else usage_latest_period()
    except ValidationFailed as error:
        context = {"period": request.GET.get("period", ""), "error": error.message}
        return render(request, "allocation/runs/allocation_runs.html", context, status=400)
    context = _period_context(request, period)
    # The page's poll asks again every few seconds: answer with the live region alone.
    template = (
        "allocation/runs/_allocation_period.html" if _is_poll(request) else "allocation/runs/allocation_runs.html"
    )
    return render(request, template, context)


def _is_poll(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


def _allocation_run_start(request: HttpRequest) -> HttpResponse:
    """Queue a run of the posted period; with eager Celery it has run when this returns."""
    try:
        period = Period.parse(request.POST.get("period", "").strip())
    except ValidationFailed as error:
        messages.error(request, error.message)
        return redirect(_runs_url())
    try:
        allocation_run_queue(period=period, actor=request.user)
    except ApplicationError as error:
        reason = error.message[:1].upper() + error.message[1:]
        messages.error(request, f"The allocation of {period} did not run. {reason.rstrip('.')}.")
        return redirect(_runs_url(period))
    progress = allocation_progress(period=period) or {}
    run = None
    if progress.get("state") == AllocationProgressState.COMPLETED and progress.get("run_id"):
        run = AllocationRun.objects.filter(pk=progress["run_id"]).first()
    if run is None:
        messages.info(request, f"The allocation of {period} is queued; its progress shows below.")
    else:
        currency = _currency(run)
        text = (
            f"Allocated {period} as run #{run.pk}: {Money.of(run.invoice_total, currency)} invoiced, "
            f"{Money.of(run.allocated, currency)} on cost centers, {Money.of(run.unallocated, currency)} unallocated."
        )
        if run.is_flagged:
            messages.warning(request, f"{text} The run is flagged: a variance is beyond the tolerance.")
        else:
            messages.success(request, text)
    return redirect(_runs_url(period))


def _period_context(request: HttpRequest, period: Period) -> dict:
    runs = list(allocation_runs(period=period).prefetch_related("invoices"))
    current = next((run for run in runs if run.status == AllocationRunStatus.COMPLETED), None)
    progress = allocation_progress(period=period) or {}
    live = progress.get("state") in LIVE_STATES
    headline = None
    if current is not None:
        currency = _currency(current)
        summary = allocation_run_summary(run=current, cost_centers=False)
        headline = {
            "invoice_total": Money.of(summary["invoice_total"], currency),
            "chargeback": Money.of(summary["chargeback"], currency),
            "showback": Money.of(summary["showback"], currency),
            "unallocated": Money.of(summary["unallocated"]["total"], currency),
            "allocated": Money.of(summary["allocated"], currency),
            "flagged": summary["flagged"],
            "tolerance": Share.of(summary["tolerance"]),
        }
    return {
        "period": period,
        "previous_period": period.previous,
        "next_period": period.next,
        "runs": [_run_row(run) for run in runs],
        "current": current,
        "headline": headline,
        "closed": current is not None and current.closed_at is not None,
        "can_run": access_allows(request.user, Permission.RUN_ALLOCATION),
        "progress": {**progress, "started": _started(progress)} if live else None,
        "failure": _failure(request, progress, current),
        "live": live,
        "poll_milliseconds": POLL_MILLISECONDS,
    }


def _failure(request: HttpRequest, progress: dict, current: AllocationRun | None) -> dict | None:
    """The period's last attempt, when it failed after the current run was made, unless a
    message on this page already says the same (an eager run fails within the POST)."""
    if progress.get("state") != AllocationProgressState.FAILED:
        return None
    started = _started(progress)
    if current is not None and (started is None or started < current.created_at.replace(microsecond=0)):
        return None
    error = progress.get("error") or "no reason was recorded"
    if any(error.lower() in str(message).lower() for message in messages.get_messages(request)):
        return None
    return {**progress, "error": error, "started": started}


def _run_row(run: AllocationRun) -> dict:
    currency = _currency(run)
    return {
        "run": run,
        "by": _person(run.created_by),
        "invoice_total": Money.of(run.invoice_total, currency),
        "allocated": Money.of(run.allocated, currency),
        "unallocated": Money.of(run.unallocated, currency),
        "fingerprint": run.fingerprint[:FINGERPRINT_SHOWN],
    }


# --- one run -------------------------------------------------------------------


def _run_or_404(run_id: int) -> AllocationRun:
    return get_object_or_404(allocation_runs().select_related("superseded_by", "rating_run"), pk=run_id)


@require_GET
def allocation_run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(run_id)
    scope = cost_center_scope(request.user)
    # A team member sees their cost centers' rows; the run's company-wide figures are finance's.
    summary = allocation_run_summary(run=run, cost_centers=False)
    summary["cost_centers"] = allocation_run_cost_centers(run=run, scope=scope)
    currency = _currency(run)
    providers = [_provider_row(entry, currency) for entry in summary["providers"]]
    current = (
        allocation_run_current(period=Period.parse(run.period))
        if run.status == AllocationRunStatus.SUPERSEDED
        else None
    )
    context = {
        "run": run,
        "sees_company": scope.is_everything,
        "summary": summary,
        "by": _person(run.created_by),
        "invoice_total": Money.of(summary["invoice_total"], currency),
        "allocated": Money.of(summary["allocated"], currency),
        "chargeback": Money.of(summary["chargeback"], currency),
        "showback": Money.of(summary["showback"], currency),
        "unallocated": Money.of(summary["unallocated"]["total"], currency),
        "tolerance": Share.of(summary["tolerance"]),
        "providers": providers,
        "provider_totals": _provider_totals(summary["providers"], currency) if len(providers) > 1 else None,
        "invoices": [invoice for provider in providers for invoice in provider["invoices"]],
        "reasons": _reason_rows(summary["unallocated"]["by_reason"], currency),
        "cost_centers": [
            {
                **center,
                "chargeback": Money.of(center["chargeback"], currency),
                "showback": Money.of(center["showback"], currency),
                "total": Money.of(center["total"], currency),
            }
            for center in summary["cost_centers"]
        ],
        "cost_center_total": Money.of(
            sum((Decimal(c["total"]) for c in summary["cost_centers"]), Decimal(0)), currency
        ),
        "reconciliation": [row for provider in providers for row in provider["reconciliation"]],
        "inputs": _inputs(run),
        "newer": run.superseded_by,
        "current": current,
    }
    return render(request, "allocation/runs/allocation_run.html", context)


def _provider_row(entry: dict, currency: str) -> dict:
    return {
        "provider": entry["provider"],
        "invoice_total": Money.of(entry["invoice_total"], currency),
        "billed_total": Money.of(entry["billed_total"], currency),
        "invoiced_usage": Money.of(entry["invoiced_usage"], currency),
        "rated_usage": Money.of(entry["rated_usage"], currency),
        "variance": Money.of(entry["variance"], currency),
        "variance_share": Share.of(entry["variance_share"]),
        "no_share": _no_share(entry),
        "within_tolerance": entry["within_tolerance"],
        "allocated": Money.of(entry["allocated"], currency),
        "chargeback": Money.of(entry["chargeback"], currency),
        "showback": Money.of(entry["showback"], currency),
        "unallocated": Money.of(entry["unallocated"]["total"], currency),
        "invoices": [
            {
                **invoice,
                "provider": entry["provider"],
                "total": Money.of(invoice["total"], currency),
                "billed_total": Money.of(invoice["billed_total"], currency),
                "allocated": Money.of(invoice["allocated"], currency),
                "unallocated": Money.of(invoice["unallocated"], currency),
            }
            for invoice in entry["invoices"]
        ],
        "reconciliation": [
            {
                **row,
                "provider": entry["provider"],
                "invoiced": Money.of(row["invoiced"], currency),
                "rated": Money.of(row["rated"], currency),
                "variance": Money.of(row["variance"], currency),
                "variance_share": Share.of(row["variance_share"]),
            }
            for row in entry["reconciliation"]
        ],
    }


def _no_share(entry: dict) -> str:
    """Why a provider has no variance share. The share divides by invoiced usage, so it is empty
    both without an invoice and with one whose lines all go to shared-cost pools or are not
    usage (a GPU cluster, a vector store): that provider has an invoice, only no usage on it."""
    if entry["variance_share"] is not None:
        return ""
    return "no usage invoiced" if entry["invoices"] else "no invoice"


def _provider_totals(entries: list[dict], currency: str) -> dict:
    def total(pick) -> Money:
        return Money.of(sum((Decimal(pick(entry)) for entry in entries), Decimal(0)), currency)

    return {
        "invoice_total": total(lambda e: e["invoice_total"]),
        "billed_total": total(lambda e: e["billed_total"]),
        "invoiced_usage": total(lambda e: e["invoiced_usage"]),
        "rated_usage": total(lambda e: e["rated_usage"]),
        "variance": total(lambda e: e["variance"]),
        "allocated": total(lambda e: e["allocated"]),
        "unallocated": total(lambda e: e["unallocated"]["total"]),
    }


def _reason_rows(by_reason: dict[str, str], currency: str) -> list[dict]:
    return [
        {
            "code": reason,
            "label": UnallocatedReason(reason).label,
            "meaning": REASON_EXPLANATIONS[reason][0],
            "remedy": REASON_EXPLANATIONS[reason][1],
            "amount": Money.of(amount, currency),
        }
        for reason, amount in by_reason.items()
    ]


def _inputs(run: AllocationRun) -> dict:
    """The run's recorded inputs (stable identities and checksums), for reading."""
    inputs = run.inputs or {}
    ledger = inputs.get("ledger") or {}
    return {
        "mapping_version": (inputs.get("mapping_version") or {}).get("number", run.mapping_version.number),
        "mapping_hash": (inputs.get("mapping_version") or {}).get("content_hash", ""),
        "price_book_versions": [
            {"book": book, "number": number, "checksum": checksum}
            for book, number, checksum in inputs.get("price_book_versions", [])
        ],
        "rate_card_versions": [
            {"book": book, "number": number, "checksum": checksum}
            for book, number, checksum in inputs.get("rate_card_versions", [])
        ],
        "invoices": inputs.get("invoices", []),
        "usage_batches": inputs.get("usage_batches", []),
        "lines_rated": ledger.get("lines_rated"),
        "lines_unpriced": ledger.get("lines_unpriced"),
        "rated_cost": Money.of(ledger["rated_cost"]) if ledger.get("rated_cost") is not None else None,
        "activity_counts": [
            {"driver": driver.replace("_", " "), "cost_center": center, "count": quantity_text(Decimal(count))}
            for driver, center, count in inputs.get("activity_counts", [])
        ],
        "tolerance": Share.of(inputs.get("tolerance") or run.tolerance),
    }


# --- a run's lines: the drill-down behind a cost center or an unallocated reason ------

# Filters whose unknown value names something that is not there (or not the reader's):
# a page that does not exist, as before the page had a form.
NAMING_FILTERS = ("cost_center", "reason")


def _line_filterset(request: HttpRequest, run: AllocationRun, scope: CostCenterScope) -> AllocationLineFilterSet:
    """The run's lines in the reader's scope, narrowed by the query; a cost center that is
    unknown, not in this run or not the reader's, and an unknown reason, are a 404."""
    filterset = AllocationLineFilterSet(request.GET, queryset=scope.filter(allocation_line_list(run=run)))
    if any(name in filterset.form.errors for name in NAMING_FILTERS):
        raise Http404("no such lines")
    return filterset


def _lines_heading(filterset: AllocationLineFilterSet, *, sees_company: bool) -> str:
    chosen = filterset.chosen
    if "cost_center" in chosen:
        return f"Lines of {dict(filterset.filters['cost_center'].extra['choices'])[chosen['cost_center']]}"
    if chosen.get("reason") in UnallocatedReason.values:
        return f"Unallocated lines: {UnallocatedReason(chosen['reason']).label.lower()}"
    if "reason" in chosen:
        return "Unallocated lines"
    if chosen:
        return "Lines"
    return "All lines" if sees_company else "Your lines"


@require_GET
def allocation_run_lines(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(run_id)
    scope = cost_center_scope(request.user)
    filterset = _line_filterset(request, run, scope)
    valid = filterset.form.is_valid()
    lines = (filterset.qs if valid else filterset.queryset.none()).select_related(
        "cost_center", "invoice", "rule", "pool"
    )
    totals = lines.aggregate(amount=Sum("amount"), rated_cost=Sum("rated_cost"))
    page = Paginator(lines, LINES_PER_PAGE).get_page(request.GET.get("page"))
    currency = _currency(run)
    methods = {**dict(AllocationMethod.choices), **METHOD_SHORT}
    treatments = {value: label.split(" (")[0] for value, label in Treatment.choices}
    # A line's charge category is said only when it is not usage, the common case.
    categories = {value: label for value, label in ChargeCategory.choices if value != ChargeCategory.USAGE}
    chosen = filterset.chosen
    context = {
        "run": run,
        "filterset": filterset,
        "heading": _lines_heading(filterset, sees_company=scope.is_everything),
        # A team member's lines are never unallocated: the reason filter is finance's.
        "sees_company": scope.is_everything,
        "one_cost_center": "cost_center" in chosen,
        "filtered": bool(chosen),
        "page": page,
        "currency": currency,
        "rows": [
            {
                "line": line,
                "quantity": quantity_text(line.quantity),
                "rated_cost": Money.of(line.rated_cost, currency),
                "amount": Money.of(line.amount, currency),
                "method": methods.get(line.method, line.method),
                "treatment": treatments.get(line.treatment, line.treatment),
                "category": categories.get(line.category, ""),
                "reason": UnallocatedReason(line.reason).label if line.reason else "",
            }
            for line in page
        ],
        "count": page.paginator.count,
        "total": Money.of(totals["amount"], currency),
        "rated_total": Money.of(totals["rated_cost"], currency),
        "csv_query": urlencode(chosen),
    }
    return render(request, "allocation/runs/allocation_run_lines.html", context, status=200 if valid else 400)


@require_GET
def allocation_run_lines_csv(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(run_id)
    filterset = _line_filterset(request, run, cost_center_scope(request.user))
    if not filterset.form.is_valid():
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in filterset.form.errors.items())
        return HttpResponseBadRequest(f"The filters are not valid: {problems}", content_type="text/plain")
    chosen = filterset.chosen
    filename = f"allocation-run-{run.pk}-{run.period}-lines"
    if chosen:
        filename += "-" + (chosen.get("cost_center") or chosen.get("reason") or "filtered")
        if len(chosen) > 1:
            filename += "-filtered"
    return csv_download(_line_rows(run, filterset.qs), filename=f"{filename}.csv")


def _line_rows(run: AllocationRun, lines: QuerySet[AllocationLine]) -> Iterator[list]:
    yield LINE_CSV_HEADER
    rows = lines.values_list(
        "provider",
        "invoice__invoice_id",
        "cost_center__code",
        "cost_center__name",
        "reason",
        "treatment",
        "method",
        "category",
        "team",
        "feature",
        "environment",
        "modality",
        "model",
        "unit",
        "rule__position",
        "pool__code",
        "line_count",
        "quantity",
        "rated_cost",
        "amount",
    )
    for row in rows.iterator(chunk_size=2000):
        *keys, line_count, quantity, rated_cost, amount = row
        yield [
            run.pk,
            run.period,
            *("" if value is None else value for value in keys),
            line_count,
            quantity_plain(quantity),
            quantity_plain(rated_cost),
            money_cents(amount),
        ]
