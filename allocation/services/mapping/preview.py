"""The mapping preview: what signing a draft would move between cost centers in a month."""

import time
from collections import defaultdict
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum

from allocation.models import (
    AllocationLine,
    AllocationRun,
    CostCenter,
    MappingVersion,
)
from allocation.selectors.mapping import mapping_version_in_force
from allocation.services.runs.engine import allocation_compute, default_tolerance
from pricing.money import CENT, quantize
from pricing.periods import Period

__all__ = ["mapping_preview"]


class _Rollback(Exception):
    """Unwinds a preview's transaction."""


def _grain_amounts(run: AllocationRun) -> dict[tuple, dict[str, Decimal]]:
    """Per usage grain (provider, team, feature, environment, modality, model): where its money went."""
    grains: dict[tuple, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    rows = (
        AllocationLine.objects.filter(run=run)
        .values(
            "provider",
            "team",
            "feature",
            "environment",
            "modality",
            "model",
            "pool__code",
            "cost_center__code",
            "reason",
        )
        .annotate(amount=Sum("amount"))
    )
    for row in rows:
        grain = (
            row["provider"],
            row["team"],
            row["feature"],
            row["environment"],
            row["modality"],
            row["model"],
            row["pool__code"] or "",
        )
        where = row["cost_center__code"] or f"unallocated:{row['reason']}"
        grains[grain][where] += row["amount"] or Decimal(0)
    return grains


def mapping_preview(*, version: MappingVersion, period: Period) -> dict:
    """What signing `version` would change for `period` against the version in force:
    per cost center (and unallocated reason) the total now, with the draft and the change,
    and the money that moves from one to another (summed over usage grains, largest first).

    Both runs are made in full, in a transaction that is then rolled back: nothing is kept.
    """
    tolerance = default_tolerance()
    current_version = mapping_version_in_force(period=period)
    results: dict[str, dict[tuple, dict[str, Decimal]]] = {"current": {}, "draft": {}}
    for label, candidate in (("current", current_version), ("draft", version)):
        if candidate is None:
            continue
        try:
            with transaction.atomic():
                run = allocation_compute(
                    period=period,
                    actor=None,
                    tolerance=tolerance,
                    began=time.monotonic(),
                    version=candidate,
                    progress=lambda *args, **kwargs: None,
                )
                results[label] = _grain_amounts(run)
                raise _Rollback
        except _Rollback:
            pass
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: {"current": Decimal(0), "draft": Decimal(0)})
    moves: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for grain in set(results["current"]) | set(results["draft"]):
        before = results["current"].get(grain, {})
        after = results["draft"].get(grain, {})
        changes = {}
        for where in set(before) | set(after):
            totals[where]["current"] += before.get(where, Decimal(0))
            totals[where]["draft"] += after.get(where, Decimal(0))
            change = after.get(where, Decimal(0)) - before.get(where, Decimal(0))
            if change:
                changes[where] = change
        losers = sorted(((w, -c) for w, c in changes.items() if c < 0), key=lambda x: (-x[1], x[0]))
        gainers = sorted(((w, c) for w, c in changes.items() if c > 0), key=lambda x: (-x[1], x[0]))
        # Pair what one side lost with what another gained, largest first.
        i = j = 0
        losers = [list(x) for x in losers]
        gainers = [list(x) for x in gainers]
        while i < len(losers) and j < len(gainers):
            amount = min(losers[i][1], gainers[j][1])
            moves[(losers[i][0], gainers[j][0])] += amount
            losers[i][1] -= amount
            gainers[j][1] -= amount
            i += not losers[i][1]
            j += not gainers[j][1]
    names = dict(CostCenter.objects.values_list("code", "name"))
    return {
        "period": str(period),
        "current_version": current_version.number if current_version else None,
        "draft_version": version.number,
        "cost_centers": [
            {
                "code": where,
                "name": names.get(where, where.replace("unallocated:", "Unallocated: ")),
                "current": quantize(entry["current"], CENT),
                "draft": quantize(entry["draft"], CENT),
                "change": quantize(entry["draft"] - entry["current"], CENT),
            }
            for where, entry in sorted(totals.items())
        ],
        "moves": [
            {"from": source, "to": target, "amount": quantize(amount, CENT)}
            for (source, target), amount in sorted(moves.items(), key=lambda m: (-m[1], m[0]))
            if quantize(amount, CENT)
        ],
    }
