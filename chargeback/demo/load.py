"""`demo_load`: the demo from nothing, in the order finance would build it, and its result.

First the organization, the demo login and three months of usage; then, with
rating, what finance does at month end, through the same services a user would
call: list prices and a rating of each month, the embedding rate card and the
signed mapping, the activity counts, the providers' invoices as files, and an
allocation run per month, so the pages open with results. A month is rated and
allocated again only when something it reads is new. Last, the close (`close.py`):
the first month signed off and closed, the second in review with a dispute and its
flagged run awaiting override, the third open.
"""

import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from allocation.models import AllocationRun
from allocation.services.org import OrgLoadResult
from chargeback.demo.close import demo_close
from chargeback.demo.invoices import demo_invoices_load, demo_month_bill
from chargeback.demo.mapping import (
    demo_activity_load,
    demo_mapping_ensure,
    demo_prices_import,
    demo_rate_card_load,
)
from chargeback.demo.organization import DEMO_PASSWORD, DEMO_USERNAME, demo_org_load, demo_user_ensure
from chargeback.demo.runs import demo_month_allocate, demo_month_rate, demo_run_figures
from chargeback.demo.usage import DEMO_SEED, demo_month_events, demo_month_ingest, demo_months
from pricing.errors import ValidationFailed

__all__ = ["DemoResult", "demo_load"]


@dataclass
class DemoResult:
    """What one demo run loaded and found, printed by the command as JSON."""

    period_from: datetime.date
    period_to: datetime.date
    org: OrgLoadResult
    events: int = 0
    batches: int = 0
    events_inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    lines_inserted: int = 0
    user_created: bool = False
    seconds: float = 0.0
    events_by_month: dict[str, int] = field(default_factory=dict)
    rating_runs: list[dict[str, Any]] = field(default_factory=list)
    workdir: Path | None = None
    mapping_version: dict[str, Any] | None = None
    rate_card: dict[str, Any] | None = None
    activity_counts: dict[str, int] = field(default_factory=dict)
    invoice_files: list[dict[str, Any]] = field(default_factory=list)
    allocation_runs: list[dict[str, Any]] = field(default_factory=list)
    close: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        org = self.org.as_dict()
        return {
            "period": {"from": self.period_from.isoformat(), "to": self.period_to.isoformat()},
            "org": {kind: org[kind] for kind in ("cost_centers", "teams", "features", "tenants")},
            "events": self.events,
            "events_by_month": self.events_by_month,
            "batches": self.batches,
            "events_inserted": self.events_inserted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "lines_inserted": self.lines_inserted,
            "rating_runs": self.rating_runs,
            "workdir": str(self.workdir) if self.workdir else None,
            "rate_card": self.rate_card,
            "mapping_version": self.mapping_version,
            "activity_counts": self.activity_counts,
            "invoice_files": self.invoice_files,
            "invoices": {
                "files": len(self.invoice_files),
                "lines_inserted": sum(f["inserted"] for f in self.invoice_files),
                "duplicates": sum(f["duplicate"] for f in self.invoice_files),
                "rejected": sum(f["rejected"] for f in self.invoice_files),
            },
            "allocation_runs": self.allocation_runs,
            "close": self.close,
            "login": {"username": DEMO_USERNAME, "password": DEMO_PASSWORD, "created": self.user_created},
            "seconds": round(self.seconds, 1),
        }


def demo_load(
    *,
    scale: float = 1.0,
    today: datetime.date | None = None,
    seed: int = DEMO_SEED,
    rate: bool = True,
    workdir: str | Path | None = None,
) -> DemoResult:
    """Load the demo organization, three months of usage and the demo login.

    With `rate`, also genai-prices' list prices (once per package version), a
    rating of each month and the month-end close: the providers' invoices as
    files in `workdir` (default `MEDIA_ROOT/demo/x<scale>-seed<seed>`), the
    embedding rate card, the signed mapping, the activity counts, an
    allocation run per month and the statements' close, so the pages open with
    results. A second run inserts nothing and redoes only what new input would
    change.
    """
    if not (0 < scale <= 1000):
        raise ValidationFailed(f"scale must be above 0 and at most 1000, not {scale:g}", code="invalid_scale")
    started = time.monotonic()
    today = today or datetime.datetime.now(datetime.UTC).date()
    months = demo_months(today=today)
    last_day = (months[-1].replace(day=28) + datetime.timedelta(days=4)).replace(day=1) - datetime.timedelta(days=1)
    result = DemoResult(period_from=months[0], period_to=last_day, org=demo_org_load())
    user, result.user_created = demo_user_ensure()
    inserted: dict[str, int] = {}
    for index, month in enumerate(months):
        period = f"{month:%Y-%m}"
        events = demo_month_events(month=month, scale=scale, seed=seed, index=index)
        result.events_by_month[period] = len(events)
        result.events += len(events)
        inserted[period] = 0
        for batch in demo_month_ingest(events=events, period=period):
            result.batches += 1
            result.events_inserted += batch.inserted
            result.duplicates += batch.duplicate
            result.rejected += batch.rejected
            result.lines_inserted += batch.lines_inserted
            inserted[period] += batch.lines_inserted
    if rate:
        folder = Path(workdir) if workdir is not None else Path(settings.MEDIA_ROOT) / "demo" / f"x{scale:g}-seed{seed}"
        result.workdir = folder
        runs = _month_end(result, months=months, scale=scale, seed=seed, user=user, inserted=inserted, workdir=folder)
        result.close = demo_close(months=months)
        # The runs' figures after the close: the first month's run is closed by its sign-off.
        result.allocation_runs = [demo_run_figures(run) for run in runs]
    result.seconds = time.monotonic() - started
    return result


def _month_end(
    result: DemoResult,
    *,
    months: list[datetime.date],
    scale: float,
    seed: int,
    user,
    inserted: dict[str, int],
    workdir: Path,
) -> list[AllocationRun]:
    """Prices, rating, invoices, mapping, activity and an allocation run per month (the
    current runs, in month order).

    A month is rated and allocated again only when something it reads is new:
    usage, prices, invoice lines, the rate card, the mapping or its activity.
    """
    periods = [f"{month:%Y-%m}" for month in months]
    prices_changed = demo_prices_import(user)
    changed = dict.fromkeys(periods, False)
    for period in periods:
        figures, rated = demo_month_rate(period, user=user, again=bool(prices_changed or inserted[period]))
        if rated:
            changed[period] = True
        result.rating_runs.append(figures)

    result.rate_card = demo_rate_card_load(user)
    result.mapping_version = demo_mapping_ensure(month=months[0], user=user)
    if result.rate_card["created"] or result.mapping_version["created"]:
        changed = dict.fromkeys(periods, True)

    bills = [demo_month_bill(month) for month in months]
    result.activity_counts = {"rows": 0, "changed": 0}
    for bill in bills:
        moved = demo_activity_load(period=bill.period, activity=bill.activity, workdir=workdir)
        result.activity_counts["rows"] += len(bill.activity)
        if moved:
            result.activity_counts["changed"] += 1
            changed[bill.period] = True

    for period, figures in demo_invoices_load(bills, scale=scale, seed=seed, user=user, workdir=workdir):
        result.invoice_files.append(figures)
        if figures["inserted"]:
            changed[period] = True

    return [demo_month_allocate(period, user=user, again=changed[period]) for period in periods]
