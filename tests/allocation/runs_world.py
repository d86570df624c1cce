"""A small company, written out so that allocation results can be computed by hand.

Provider acme-ai, model acme-1 at list: input $1 / 1M tokens, cached input
$0.50 / 1M, output $2 / 1M. The platform team's rate card RC-PLATFORM prices
acme-1 input at $1.50 / 1M and output at $3 / 1M (cached input is not on it).
"""

import textwrap
from decimal import Decimal
from pathlib import Path

from django.contrib.auth.models import Group

from allocation.models import ActivityCount, AllocationRun, CostCenter, Team
from allocation.services.invoices.ingest import invoice_ingest_file
from allocation.services.ledger import usage_ingest_events
from allocation.services.mapping.drafts import mapping_sign
from allocation.services.mapping.files import mapping_load_file
from allocation.services.runs.run import allocation_run_execute
from pricing.models import AiModel, PriceBook, Provider
from pricing.periods import Period
from pricing.services.price_books import PriceRow, price_book_version_create

MONTH = Period(2026, 10)
PERIOD = str(MONTH)
CENTERS = {"CC-100": "platform", "CC-110": "search", "CC-120": "support", "CC-130": "research"}


def build_org() -> dict[str, CostCenter]:
    centers = {}
    for code, team in CENTERS.items():
        center = CostCenter.objects.create(
            code=code,
            name=team.title(),
            owner=f"{team} lead",
            gl_expense_account="6100",
            gl_recovery_account="6190",
            active_from="2026-01-01",
        )
        Team.objects.create(code=team, name=team.title(), cost_center=center)
        centers[code] = center
    return centers


def build_prices() -> None:
    provider = Provider.objects.create(code="acme-ai", name="Acme AI")
    AiModel.objects.create(provider=provider, code="acme-1", match_rule={"starts_with": "acme-1"})
    listed = PriceBook.objects.create(code="LIST-ACME", name="Acme list", kind="list")
    rows = [
        PriceRow("list", "acme-ai", "acme-1", "input_token", Decimal("1.00"), 1_000_000),
        PriceRow("list", "acme-ai", "acme-1", "cached_input_token", Decimal("0.50"), 1_000_000),
        PriceRow("list", "acme-ai", "acme-1", "output_token", Decimal("2.00"), 1_000_000),
    ]
    price_book_version_create(book=listed, rows=rows, source="test")
    card = PriceBook.objects.create(code="RC-PLATFORM", name="Platform card", kind="rate_card", service="platform")
    card_rows = [
        PriceRow("card", "acme-ai", "acme-1", "input_token", Decimal("1.50"), 1_000_000),
        PriceRow("card", "acme-ai", "acme-1", "output_token", Decimal("3.00"), 1_000_000),
    ]
    price_book_version_create(book=card, rows=card_rows, source="test")


MAPPING = """\
name: Hand-computed scenario
effective_from: "2026-10-01"
rules:
  - match: {environment: eval}
    cost_center: CC-130
    charge_model: direct
    treatment: showback
  - match: {caller: "*", feature: summarize}
    cost_center: CC-100
    charge_model: passthrough
    margin_percent: "10"
    service_owner: CC-100
  - match: {caller: "*", feature: rerank}
    cost_center: CC-100
    charge_model: rate_card
    treatment: showback
    rate_card: RC-PLATFORM
    service_owner: CC-100
  - match: {caller: "*", feature: embed}
    cost_center: CC-100
    charge_model: hybrid
    rate_card: RC-PLATFORM
    service_owner: CC-100
  - match: {team: search}
    cost_center: CC-110
    charge_model: direct
pools:
  - code: platform
    name: Platform fee
    match: {sku: "platform-fee"}
    method: proportional
    driver: tokens
    cost_centers: [CC-110, CC-120, CC-130]
  - code: vector
    name: Vector store
    match: {description: "*vector*"}
    method: activity
    driver: jobs_run
    cost_centers: [CC-110, CC-130]
"""


def build_mapping(tmp_path: Path, approver, text: str = MAPPING):
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    version = mapping_load_file(path=path)
    return mapping_sign(version=version, actor=approver)


def make_approver(django_user_model):
    user = django_user_model.objects.create_user(username="fiona", password="x")
    user.groups.add(Group.objects.get_or_create(name="finance_approver")[0])
    return user


def usage(event_id: str, unit: str, tokens: int, **tags) -> dict:
    return {
        "event_id": event_id,
        "occurred_at": "2026-10-14T10:00:00Z",
        "provider": "acme-ai",
        "model": "acme-1",
        "unit": unit,
        "quantity": str(tokens),
        **tags,
    }


def scenario_events() -> list[dict]:
    """Rated at list: 69.00 in all."""
    web = {"team": "search", "feature": "web", "environment": "production"}
    summarize = {"team": "platform", "feature": "summarize", "environment": "production", "caller": "support"}
    return [
        # search's own calls, direct: 10 + 4 = 14.00
        usage("web-1", "input_token", 10_000_000, **web),
        usage("web-1", "output_token", 2_000_000, **web),
        # research's evaluation, showback: 5.00
        usage("eval-1", "input_token", 5_000_000, team="research", feature="bench", environment="eval"),
        # support calls the summarize service (passthrough, 10% margin): 20 + 10 = 30.00
        usage("sum-1", "input_token", 20_000_000, **summarize),
        usage("sum-1", "output_token", 5_000_000, **summarize),
        # ... and one call failed: 1.00 stays with the service, unallocated
        usage("sum-2", "input_token", 1_000_000, **summarize, outcome="failed"),
        # search calls rerank on the card: list 4 + 2 = 6.00, card 6 + 3 = 9.00
        usage(
            "rr-1",
            "input_token",
            4_000_000,
            team="platform",
            feature="rerank",
            environment="production",
            caller="search",
        ),
        usage(
            "rr-1",
            "output_token",
            1_000_000,
            team="platform",
            feature="rerank",
            environment="production",
            caller="search",
        ),
        # research calls embed (hybrid): input on the card (list 8, card 12), cached input off it (2.00)
        usage(
            "em-1",
            "input_token",
            8_000_000,
            team="platform",
            feature="embed",
            environment="production",
            caller="research",
        ),
        usage(
            "em-1",
            "cached_input_token",
            4_000_000,
            team="platform",
            feature="embed",
            environment="production",
            caller="research",
        ),
        # untagged: 3.00
        usage("raw-1", "input_token", 3_000_000),
    ]


INVOICE_HEADER = (
    "invoice_id,provider,charge_period_start,charge_period_end,charge_category,sku,description,"
    "unit,quantity,billed_cost,effective_cost,list_cost,currency\n"
)


def invoice_csv(tmp_path: Path, rows: str, name: str = "invoice.csv") -> Path:
    path = tmp_path / name
    path.write_text(INVOICE_HEADER + textwrap.dedent(rows), encoding="utf-8")
    return path


SCENARIO_INVOICE = """\
ACME-2026-10,acme-ai,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,usage,acme-1-tokens,acme-1 tokens,,,69.69,69.69,,USD
ACME-2026-10,acme-ai,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,tax,vat,VAT,,,15.869,15.869,,USD
ACME-2026-10,acme-ai,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,purchase,platform-fee,Platform fee,,,59.00,59.00,,USD
ACME-2026-10,acme-ai,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,usage,vs-storage,Hosted vector store,,,30.00,30.00,,USD
"""


def load_usage(events: list[dict]) -> None:
    batch, results = usage_ingest_events(events=events, source_name="test")
    assert batch.rejected == 0, [r for r in results if r.status != "accepted"]


def load_invoice(tmp_path: Path, rows: str, name: str = "invoice.csv"):
    batch = invoice_ingest_file(path=invoice_csv(tmp_path, rows, name), source_format="csv", provider="acme-ai")
    assert batch.rejected == 0, list(batch.rejections.values("line", "field", "reason"))
    return batch


def build_run(tmp_path: Path, django_user_model, mapping: str = MAPPING, extra_events: tuple = ()) -> AllocationRun:
    """The hand-computed scenario, invoiced and allocated (activity counts for its activity pool), plus any
    `extra_events`."""
    centers = build_org()
    build_prices()
    approver = make_approver(django_user_model)
    build_mapping(tmp_path, approver, mapping)
    load_usage(scenario_events() + list(extra_events))
    load_invoice(tmp_path, SCENARIO_INVOICE)
    ActivityCount.objects.create(period=MONTH, driver="jobs_run", cost_center=centers["CC-110"], count=3)
    ActivityCount.objects.create(period=MONTH, driver="jobs_run", cost_center=centers["CC-130"], count=1)
    return allocation_run_execute(period=MONTH, actor=approver)
