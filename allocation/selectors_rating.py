"""Reads of rating results: what a period's rating could not price, and why.

These live in allocation, not pricing: they read the rated ledger, and
pricing, the lowest layer, never imports allocation.
"""

from decimal import Decimal

from django.db.models import Count, Sum

from pricing.selectors import model_resolve

from .models import RatedUsage, RatingRun
from .selectors import usage_lines_in_period

__all__ = [
    "UNPRICED_REASONS",
    "rating_run_latest",
    "unpriced_usage",
]

RATING_COMPLETED = "completed"
# Why a usage key has no price, as a code and as a sentence a user can act on.
UNPRICED_REASONS: dict[str, str] = {
    "unknown_model": "model not in the catalog",
    "no_price": "no price for this unit/tier in force",
}


def rating_run_latest(*, period: str) -> RatingRun | None:
    """The newest completed rating run of a period: the one reports use."""
    return (
        RatingRun.objects.filter(period=period, status=RATING_COMPLETED)
        .select_related("created_by")
        .order_by("-created_at", "-id")
        .first()
    )


def unpriced_usage(*, period: str) -> dict:
    """The usage the period's newest completed rating run left unpriced.

    Grouped by provider, model, unit, service tier and unit tier, largest
    line count first, each with its reason: the model is not in the catalog,
    or the catalog has the model but no price in force for that unit and
    tier. Also the ledger's line count for the period, so a page can tell
    when usage arrived after the run. Raises ValidationFailed for a bad period.
    """
    ledger_lines = usage_lines_in_period(period).count()
    run = rating_run_latest(period=period)
    rows: list[dict] = []
    if run is not None:
        groups = (
            RatedUsage.objects.filter(run=run, price__isnull=True)
            .values("provider", "model", "unit", "service_tier", "tier")
            .annotate(quantity=Sum("quantity"), line_count=Sum("line_count"), days=Count("day", distinct=True))
            .order_by("-line_count", "provider", "model", "unit", "service_tier", "tier")
        )
        known: dict[tuple[str, str], bool] = {}
        for group in groups:
            name = (group["provider"], group["model"])
            if name not in known:
                known[name] = model_resolve(provider=group["provider"], model=group["model"]) is not None
            reason = "no_price" if known[name] else "unknown_model"
            rows.append(
                {
                    **group,
                    "quantity": group["quantity"] or Decimal(0),
                    "reason_code": reason,
                    "reason": UNPRICED_REASONS[reason],
                }
            )
    return {
        "period": period,
        "run": run,
        "rows": rows,
        "unpriced_lines": sum(row["line_count"] for row in rows),
        "ledger_lines": ledger_lines,
        "stale": run is not None and ledger_lines != run.lines_rated,
    }
