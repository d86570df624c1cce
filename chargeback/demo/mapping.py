"""What the demo's allocation reads besides usage and invoices: list prices, the
embedding service's rate card, the signed mapping version and the activity counts.

The rate card (`data/rate_card_embedding.yaml`) and the mapping (`data/mapping.yaml`)
are loaded through the services a user's files go through, and the mapping is
signed off by the demo's finance approver. The activity counts of the
activity-based pools come from the indexer's and the GPU schedulers' side
(here: derived from the ledger), as a CSV through `activity_counts_load_file`.
"""

import datetime
from collections import defaultdict
from decimal import Decimal
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from django.db.models import Sum

from allocation.models import ActivityCount, MappingVersion, Team
from allocation.selectors.mapping import mapping_version_in_force
from allocation.services.mapping.drafts import mapping_sign
from allocation.services.mapping.files import mapping_load
from allocation.services.runs.activity import activity_counts_load_file
from chargeback.demo.files import csv_text, file_write
from chargeback.demo.organization import DEMO_DATA
from pricing.config_files import yaml_parse
from pricing.models import PriceBookVersion
from pricing.money import quantize
from pricing.periods import Period
from pricing.services.genai_import import prices_import_genai
from pricing.services.price_books import price_book_load_file

__all__ = [
    "ACTIVITY_DRIVERS",
    "demo_activity_load",
    "demo_mapping_ensure",
    "demo_month_activity",
    "demo_prices_import",
    "demo_rate_card_load",
]

MAPPING_FILE = DEMO_DATA / "mapping.yaml"
RATE_CARD_FILE = DEMO_DATA / "rate_card_embedding.yaml"
# The activity proxies of the demo's pools (see chargeback/demo/data/mapping.yaml).
DOCUMENT_TOKENS = 800  # embedding tokens per indexed document
GPU_DRIVERS = {"coreweave": "gpu_hours_coreweave", "aws": "gpu_hours_aws"}
ACTIVITY_DRIVERS: tuple[str, ...] = ("documents_indexed", *GPU_DRIVERS.values())


def demo_prices_import(user) -> bool:
    """genai-prices' list prices, unless this package version's are in already (importing
    them again adds nothing, slowly). True when prices changed."""
    source = f"genai-prices {package_version('genai-prices')}"
    if PriceBookVersion.objects.filter(source=source).exists():
        return False
    return bool(prices_import_genai(created_by=user).versions_created)


def _mapping_version(*, month: datetime.date, user) -> tuple[MappingVersion, bool]:
    """The signed version in force for `month`; when there is none, `mapping.yaml` loaded
    with effective_from set to `month` and signed off by the demo's finance approver."""
    in_force = mapping_version_in_force(period=Period.of(month))
    if in_force is not None:
        return in_force, False
    text = MAPPING_FILE.read_text(encoding="utf-8")
    document, lines = yaml_parse(text=text, source=str(MAPPING_FILE), error_code="mapping_invalid")
    document["effective_from"] = month.isoformat()
    draft = mapping_load(document=document, source=str(MAPPING_FILE), lines=lines, created_by=user)
    return mapping_sign(version=draft, actor=user, reason="The demo's mapping, signed off at setup"), True


def demo_mapping_ensure(*, month: datetime.date, user) -> dict[str, Any]:
    """The demo's signed mapping version (loaded and signed unless one is in force) and
    whether this run created it."""
    version, created = _mapping_version(month=month, user=user)
    return {
        "number": version.number,
        "name": version.name,
        "effective_from": version.effective_from.isoformat(),
        "signed_by": version.signed_by.get_username() if version.signed_by else None,
        "created": created,
    }


def demo_rate_card_load(user) -> dict[str, Any]:
    """The embedding service's card from its file, and whether this run added a version."""
    card, card_created = price_book_load_file(path=RATE_CARD_FILE, created_by=user)
    return {"book": card.book.code, "version": card.number, "created": card_created}


def demo_month_activity(lines) -> list[tuple[str, str, Decimal]]:
    """(driver, cost center, count) of a month, as the indexer and the GPU schedulers report
    them: documents indexed per corpus owner, GPU hours per team on each provider."""
    centers = dict(Team.objects.values_list("code", "cost_center__code"))
    counts: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    embedded = lines.filter(unit="embedding_token").exclude(caller="").values("caller").annotate(q=Sum("quantity"))
    for row in embedded.order_by():
        if row["caller"] in centers:
            counts[("documents_indexed", centers[row["caller"]])] += row["q"] / DOCUMENT_TOKENS
    gpu = lines.filter(unit="gpu_second").exclude(team="").values("provider", "team").annotate(q=Sum("quantity"))
    for row in gpu.order_by():
        if row["team"] in centers and row["provider"] in GPU_DRIVERS:
            counts[(GPU_DRIVERS[row["provider"]], centers[row["team"]])] += row["q"] / 3600
    rows = []
    for (driver, center), count in sorted(counts.items()):
        places = Decimal(1) if driver == "documents_indexed" else Decimal("0.001")
        if (count := quantize(count, places)) > 0:
            rows.append((driver, center, count))
    return rows


def demo_activity_load(*, period: str, activity: list[tuple[str, str, Decimal]], workdir: Path) -> bool:
    """Write the month's activity counts as `activity.csv` (rewritten each run) and load
    them; True when they differ from the counts held before."""
    path = workdir / period / "activity.csv"
    held = {
        (driver, center): count
        for driver, center, count in ActivityCount.objects.filter(
            period=period, driver__in=ACTIVITY_DRIVERS
        ).values_list("driver", "cost_center__code", "count")
    }
    rows = [(period, driver, center, count) for driver, center, count in activity]
    file_write(path, csv_text(("period", "driver", "cost_center", "count"), rows), replace=True)
    activity_counts_load_file(path=path)
    return held != {(driver, center): count for driver, center, count in activity}
