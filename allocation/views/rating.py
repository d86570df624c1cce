"""The page of usage a rating could not price, mounted at /pricing/unpriced/.

It sits with the pricing pages for users, but lives in allocation: it reads
the rated ledger, which pricing (the lowest layer) never imports.
"""

from datetime import timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from allocation.selectors.ledger import period_bounds, usage_latest_period
from allocation.selectors.rating import unpriced_usage
from allocation.tasks import usage_rate_period_task
from allocation.views.ledger import format_cost, format_quantity
from pricing.errors import ValidationFailed

__all__ = ["unpriced_usage_report"]


def _report_url(period: str) -> str:
    return f"{reverse('unpriced-usage')}?{urlencode({'period': period})}"


@login_required
@require_http_methods(["GET", "POST"])
def unpriced_usage_report(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        period = request.POST.get("period", "").strip()
        try:
            period_bounds(period)
        except ValidationFailed as error:
            messages.error(request, error.message)
            return redirect("unpriced-usage")
        # A large month takes a while: the worker rates it; without a broker it runs here.
        result = usage_rate_period_task.delay(period, request.user.pk)
        if result.ready():
            outcome = result.get()
            messages.success(
                request,
                f"Rated {period}: run {outcome['rating_run']}, {outcome['lines_rated']:,} lines,"
                f" {outcome['lines_unpriced']:,} of them unpriced.",
            )
        else:
            messages.info(request, f"Rating {period} in the background; reload this page to see the new run.")
        return redirect(_report_url(period))

    period = request.GET.get("period", "").strip() or usage_latest_period()
    context: dict = {"period": period}
    try:
        report = unpriced_usage(period=period)
    except ValidationFailed as error:
        context["error"] = error.message
        return render(request, "allocation/rating/unpriced_usage.html", context, status=400)
    start, end = period_bounds(period)
    context.update(
        previous_period=f"{start - timedelta(days=1):%Y-%m}",
        next_period=f"{end:%Y-%m}",
        report=report,
        run=report["run"],
        cost_text=format_cost(report["run"].cost) if report["run"] else "",
        cost_exact=format_quantity(report["run"].cost) if report["run"] else "",
        rows=[{**row, "quantity_text": format_quantity(row["quantity"])} for row in report["rows"]],
    )
    return render(request, "allocation/rating/unpriced_usage.html", context)
