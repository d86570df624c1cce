"""Activity counts: the proxy drivers (jobs run, documents indexed) of activity-based pools.

A CSV of `period,driver,cost_center,count` rows, loaded as code: refused whole
when any row is bad (every error names the file line and the field), and
idempotent: a row for a period, driver and cost center replaces the earlier count.
"""

import csv
import os
from decimal import Decimal
from pathlib import Path

from django.db import transaction

from allocation.models import ActivityCount, CostCenter
from pricing.config_files import ConfigErrors
from pricing.errors import ApplicationError, ValidationFailed
from pricing.money import QUANTITY_LIMIT, parse_decimal
from pricing.periods import Period

__all__ = ["ACTIVITY_COLUMNS", "activity_counts_load_file"]

ACTIVITY_COLUMNS: tuple[str, ...] = ("period", "driver", "cost_center", "count")


@transaction.atomic
def activity_counts_load_file(*, path: str | os.PathLike) -> dict:
    """Load the counts of a CSV file; returns {"rows", "created", "updated"}."""
    source = Path(path).name
    errors = ConfigErrors(source, code="activity_invalid")
    rows: list[tuple[str, str, CostCenter, Decimal]] = []
    centers = {center.code: center for center in CostCenter.objects.all()}
    seen: dict[tuple[str, str, str], int] = {}
    with open(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        missing = [c for c in ACTIVITY_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValidationFailed(
                f"{source}:1: missing column(s) {', '.join(missing)}; expected {','.join(ACTIVITY_COLUMNS)}",
                code="activity_invalid",
            )
        for row in reader:
            line = reader.line_num
            text = (row.get("period") or "").strip()
            driver = (row.get("driver") or "").strip()
            code = (row.get("cost_center") or "").strip()
            try:
                period = str(Period.parse(text))
            except ApplicationError as exc:
                period = text
                errors.add(exc.message, line=line)
            if not driver:
                errors.add("driver is required (the proxy's name, such as jobs_run)", line=line)
            if code not in centers:
                errors.add(f"cost_center {code!r} is not a known cost center code", line=line)
            try:
                count = parse_decimal(row.get("count") or "")
                if count < 0 or count >= QUANTITY_LIMIT:
                    raise ValueError(f"out of range: {row.get('count')}")
            except ValueError as exc:
                errors.add(f"count {exc}", line=line)
                continue
            key = (period, driver, code)
            if key in seen:
                errors.add(f"{period} {driver} {code} is also on line {seen[key]}", line=line)
            seen[key] = line
            if code in centers:
                rows.append((period, driver, centers[code], count))
    errors.refuse_if_any()
    created = updated = 0
    for period, driver, center, count in rows:
        _, was_created = ActivityCount.objects.update_or_create(
            period=period, driver=driver, cost_center=center, defaults={"count": count, "source": source}
        )
        created += was_created
        updated += not was_created
    return {"rows": len(rows), "created": created, "updated": updated}
