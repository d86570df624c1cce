"""Rating a period's usage: set-based, in the database.

Price resolution (pricing.selectors.price_segments) runs once per distinct
ledger key, which is a few hundred keys for millions of lines; it yields
non-overlapping rules. One INSERT ... SELECT then joins every ledger line of
the period to its rule and stores the cost summed by the reporting keys. A
line no rule prices is kept with an empty price: counted as unpriced.
"""

from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from allocation.models import RatedUsage, RatingRule, RatingRun, UsageLine
from allocation.selectors import period_bounds, rated_lines_params, rated_lines_sql
from pricing.selectors import context_band_floor, latest_price_book_versions, model_resolve, price_segments

__all__ = ["RATED_KEYS", "rated_lines_sql", "usage_rate_period"]

# Ledger columns RatedUsage keeps (with the day and the price).
RATED_KEYS: tuple[str, ...] = (
    "provider",
    "model",
    "unit",
    "service_tier",
    "tier",
    "team",
    "feature",
    "environment",
    "tenant",
    "caller",
    "project",
    "modality",
)


def _rules_for(run: RatingRun, start, end, versions) -> list[RatingRule]:
    keys = (
        UsageLine.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
        .values_list("provider", "model", "unit", "service_tier", "tier", "context_band")
        .distinct()
    )
    models: dict[tuple[str, str], object] = {}
    rules: list[RatingRule] = []
    for provider, model, unit, service_tier, tier, context_band in keys:
        if (provider, model) not in models:
            models[(provider, model)] = model_resolve(provider=provider, model=model)
        catalog_model = models[(provider, model)]
        if catalog_model is None:
            continue
        for segment in price_segments(
            model=catalog_model,
            unit=unit,
            service_tier=service_tier,
            tier=tier,
            start=start,
            end=end,
            versions=versions,
        ):
            rules.append(
                RatingRule(
                    run=run,
                    provider=provider,
                    model=model,
                    unit=unit,
                    service_tier=service_tier,
                    tier=tier,
                    context_band=context_band,
                    valid_from=segment.valid_from,
                    valid_to=segment.valid_to,
                    context_above=segment.context_above,
                    context_upto=segment.context_upto,
                    band_context=context_band_floor(context_band),
                    price=segment.price,
                )
            )
    return rules


@transaction.atomic
def usage_rate_period(*, period: str, created_by=None) -> RatingRun:
    """Rate every ledger line of a period at the prices in force; returns the run."""
    start, end = period_bounds(period)
    versions = latest_price_book_versions()
    run = RatingRun.objects.create(period=period, created_by=created_by)
    run.price_book_versions.set(versions)
    RatingRule.objects.bulk_create(_rules_for(run, start, end, versions), batch_size=2000)
    columns = ", ".join(["day", *RATED_KEYS, "price_id", "quantity", "line_count", "cost"])
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{RatedUsage._meta.db_table}" (run_id, {columns}) '
            f"SELECT %(run)s, rated.* FROM ({rated_lines_sql(RATED_KEYS, with_day=True)}) rated",
            rated_lines_params(run_id=run.pk, start=start, end=end),
        )
    totals = RatedUsage.objects.filter(run=run).aggregate(lines=Sum("line_count"), cost=Sum("cost"))
    unpriced = RatedUsage.objects.filter(run=run, price__isnull=True).aggregate(lines=Sum("line_count"))
    run.lines_rated = totals["lines"] or 0
    run.lines_unpriced = unpriced["lines"] or 0
    run.cost = totals["cost"] or Decimal(0)
    run.status = "completed"
    run.finished_at = timezone.now()
    run.save()
    return run
