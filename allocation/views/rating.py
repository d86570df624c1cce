"""The page of usage a rating could not price, mounted at /pricing/unpriced/.

It sits with the pricing pages for users, but lives in allocation: it reads
the rated ledger, which pricing (the lowest layer) never imports.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from allocation.selectors.ledger import usage_latest_period
from allocation.selectors.rating import unpriced_usage
from allocation.tasks import usage_rate_period_task
from pricing.errors import ValidationFailed
from pricing.periods import Period

__all__ = ["unpriced_usage_report"]


def _report_url(period: Period) -> str:
    return f"{reverse('unpriced-usage')}?{urlencode({'period': str(period)})}"


@require_http_methods(["GET", "POST"])
def unpriced_usage_report(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            period = Period.parse(request.POST.get("period", "").strip())
        except ValidationFailed as error:
            messages.error(request, error.message)
            return redirect("unpriced-usage")
        # A large month takes a while: the worker rates it; without a broker it runs here.
        result = usage_rate_period_task.delay(str(period), request.user.pk)
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

    text = request.GET.get("period", "").strip()
    try:
        period = Period.parse(text) if text else usage_latest_period()
    except ValidationFailed as error:
        context = {"period": text, "error": error.message}
        return render(request, "allocation/rating/unpriced_usage.html", context, status=400)
    report = unpriced_usage(period=period)
    context: dict = {"period": period}
    context.update(
        previous_period=period.previous,
        next_period=period.next,
        report=report,
        run=report["run"],
        rows=report["rows"],
    )
    return render(request, "allocation/rating/unpriced_usage.html", context)
