"""Price books as code: versions, refusals, contract over list, tiers, rating."""

import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection

from allocation.models import RatedUsage
from allocation.selectors.rating import usage_summary
from allocation.services.ledger import usage_ingest_events
from allocation.services.rating import usage_rate_period
from pricing.models import AiModel, Price, PriceBook, PriceBookVersion, Provider
from pricing.periods import Period
from pricing.selectors import rate_event
from pricing.services.price_books import PriceRow, price_book_export, price_book_load_file, price_book_version_create

pytestmark = pytest.mark.django_db

LIST_YAML = """\
book: openai-list
name: OpenAI list prices
kind: list
prices:
  - {provider: openai, model: gpt-4o, unit: input_token, amount: "2.50", per: 1000000}
  - {provider: openai, model: gpt-4o, unit: cached_input_token, amount: "1.25", per: 1000000}
  - {provider: openai, model: gpt-4o, unit: output_token, amount: "10", per: 1000000}
  - {provider: openai, model: gpt-4o, unit: input_token, amount: "1.25", per: 1000000, service_tier: batch}
  - {provider: openai, model: gpt-4o, unit: image, tier: "hd:1024x1792", amount: "0.12", per: 1}
"""


@pytest.fixture
def catalog():
    openai = Provider.objects.create(code="openai", name="OpenAI")
    gpt4o = AiModel.objects.create(provider=openai, code="gpt-4o", match_rule={"starts_with": "gpt-4o"})
    anthropic = Provider.objects.create(code="anthropic", name="Anthropic")
    sonnet = AiModel.objects.create(
        provider=anthropic, code="claude-sonnet-4-5", match_rule={"starts_with": "claude-sonnet-4-5"}
    )
    return {"gpt-4o": gpt4o, "sonnet": sonnet}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def event(event_id, occurred_at, **fields):
    return {
        "event_id": event_id,
        "occurred_at": occurred_at,
        "provider": "openai",
        "model": "gpt-4o-2024-08-06",
        "team": "t",
        "feature": "f",
        "environment": "production",
        **fields,
    }


def test_a_yaml_book_loads_as_a_version_and_an_unchanged_file_adds_none(tmp_path, catalog):
    path = write(tmp_path, "list.yaml", LIST_YAML)
    version, created = price_book_load_file(path=path)
    assert created and (version.book.code, version.book.kind, version.number) == ("openai-list", "list", 1)
    assert version.prices.count() == 5
    again, created_again = price_book_load_file(path=path)
    assert (again.pk, created_again) == (version.pk, False)

    changed = write(tmp_path, "list2.yaml", LIST_YAML.replace('amount: "10"', 'amount: "8"'))
    v2, created_v2 = price_book_load_file(path=changed)
    assert created_v2 and v2.number == 2
    # History is kept: version 1 still says 10.
    assert version.prices.get(unit="output_token").amount == Decimal("10")
    assert v2.prices.get(unit="output_token").amount == Decimal("8")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '  - {provider: openai, model: gpt-4o, unit: input_tokens, amount: "1", per: 1000000}',
            "unknown unit 'input_tokens'",
        ),
        (
            '  - {provider: openai, model: gpt-4o, unit: output_token, amount: "-1", per: 1000000, service_tier: flex}',
            "negative price",
        ),
        (
            '  - {provider: openai, model: gpt-4o, unit: output_token, amount: "ten", per: 1000000, service_tier: x}',
            "not a number",
        ),
        (
            '  - {provider: openai, model: gpt-5-nano, unit: output_token, amount: "1", per: 1000000}',
            "not in the catalog",
        ),
        (
            '  - {provider: openai, model: gpt-4o, unit: input_token, amount: "2", per: 1, effective_from: 2026-13-01}',
            "not a date",
        ),
        ('  - {provider: openai, model: gpt-4o, unit: input_token, amount: "2", per: 1000000}', "overlaps"),
    ],
)
def test_a_bad_line_refuses_the_whole_file_naming_the_line(tmp_path, catalog, line, message):
    path = write(tmp_path, "bad.yaml", LIST_YAML + line + "\n")
    with pytest.raises(Exception) as refused:
        price_book_load_file(path=path)
    errors = refused.value.extra["errors"]
    assert any(message in e and "bad.yaml:10" in e for e in errors), errors
    assert not PriceBookVersion.objects.exists() and not Price.objects.exists()


def test_csv_loads_and_exports_round_trip(tmp_path, catalog):
    version, _ = price_book_load_file(path=write(tmp_path, "list.yaml", LIST_YAML))
    csv_text = price_book_export(version=version, file_format="csv")
    assert (
        csv_text.splitlines()[0]
        == "provider,model,unit,amount,per,service_tier,tier,context_above,effective_from,effective_to,currency"
    )
    assert "openai,gpt-4o,input_token,1.25,1000000,batch,,0,,,USD" in csv_text
    copy, created = price_book_load_file(path=write(tmp_path, "copy.csv", csv_text), book_code="copy", kind="list")
    assert created and copy.checksum == version.checksum
    yaml_copy, _ = price_book_load_file(
        path=write(tmp_path, "copy.yaml", price_book_export(version=version, file_format="yaml")), book_code="copy2"
    )
    assert yaml_copy.checksum == version.checksum and yaml_copy.book.kind == "list"


def test_overlapping_ranges_are_refused_by_the_service(catalog):
    book = PriceBook.objects.create(code="c", name="Contract", kind="contract")
    rows = [
        PriceRow(
            "row 1",
            "openai",
            "gpt-4o",
            "input_token",
            Decimal("2"),
            1_000_000,
            effective_to=datetime(2026, 7, 1).date(),
        ),
        PriceRow(
            "row 2",
            "openai",
            "gpt-4o",
            "input_token",
            Decimal("1.8"),
            1_000_000,
            effective_from=datetime(2026, 6, 1).date(),
        ),
    ]
    with pytest.raises(Exception, match="row 2: its effective range overlaps row 1"):
        price_book_version_create(book=book, rows=rows, source="test")
    rows[1] = PriceRow(
        "row 2",
        "openai",
        "gpt-4o",
        "input_token",
        Decimal("1.8"),
        1_000_000,
        effective_from=datetime(2026, 7, 1).date(),
    )
    version, created = price_book_version_create(book=book, rows=rows, source="test")
    assert created and version.prices.count() == 2


def test_the_database_refuses_overlapping_ranges_too(catalog):
    if connection.vendor != "postgresql":
        pytest.skip("the exclusion constraint is PostgreSQL's; on SQLite the service check above holds it")
    book = PriceBook.objects.create(code="c", name="Contract", kind="contract")
    version = PriceBookVersion.objects.create(book=book, number=1, source="t", checksum="x")
    Price.objects.create(version=version, model=catalog["gpt-4o"], unit_id="input_token", amount=2, quantum=1_000_000)
    with pytest.raises(IntegrityError):
        Price.objects.create(
            version=version,
            model=catalog["gpt-4o"],
            unit_id="input_token",
            amount=1,
            quantum=1_000_000,
            effective_from=datetime(2026, 1, 1).date(),
        )


def test_rating_uses_contract_over_list_from_its_date_and_the_batch_tier(tmp_path, catalog):
    price_book_load_file(path=write(tmp_path, "list.yaml", LIST_YAML))
    contract = (
        "book: openai-contract\nkind: contract\nprices:\n"
        '  - {provider: openai, model: gpt-4o, unit: input_token, amount: "2.00", per: 1000000,'
        " effective_from: 2026-10-15}\n"
    )
    price_book_load_file(path=write(tmp_path, "contract.yaml", contract))
    usage_ingest_events(
        events=[
            event(
                "before", "2026-10-10T12:00:00Z", quantities={"input_token": 1_000_000, "cached_input_token": 400_000}
            ),
            event("after", "2026-10-20T12:00:00Z", quantities={"input_token": 1_000_000, "output_token": 1000}),
            event("batch", "2026-10-20T12:00:00Z", service_tier="batch", quantities={"input_token": 1_000_000}),
            event("flex", "2026-10-20T12:00:00Z", service_tier="flex", quantities={"input_token": 1_000_000}),
            event("hd", "2026-10-21T12:00:00Z", tier="hd:1024x1792", quantities={"image": 3}),
            event("unknown", "2026-10-21T12:00:00Z", model="gpt-9-turbo", quantities={"input_token": 500}),
        ],
        source_name="test",
    )
    run = usage_rate_period(period=Period(2026, 10))
    # before: 1M x 2.50 + 0.4M x 1.25 (cached at its cached price); after: contract 2.00 + 1000 x 10/1M;
    # batch: its own 1.25; flex has no price of its own: standard, contract 2.00; hd images 3 x 0.12.
    expected = (
        Decimal("2.5")
        + Decimal("0.5")
        + Decimal("2")
        + Decimal("0.01")
        + Decimal("1.25")
        + Decimal("2")
        + Decimal("0.36")
    )
    assert Decimal(run.cost).quantize(Decimal("0.000001")) == expected
    assert (run.lines_rated, run.lines_unpriced) == (8, 1)
    unpriced = RatedUsage.objects.get(run=run, price__isnull=True)
    assert (unpriced.model, unpriced.quantity, unpriced.cost) == ("gpt-9-turbo", 500, None)
    assert {v.book.code for v in run.price_book_versions.all()} == {"openai-list", "openai-contract"}

    groups = usage_summary(period=Period(2026, 10), group_by=["model"])
    assert [(g["model"], g["unpriced_line_count"]) for g in groups] == [("gpt-4o-2024-08-06", 0), ("gpt-9-turbo", 1)]
    assert groups[0]["cost"].quantize(Decimal("0.000001")) == expected and groups[1]["cost"] is None


def test_long_context_is_all_or_nothing_past_the_threshold(tmp_path, catalog):
    book = PriceBook.objects.create(code="anthropic-list", name="Anthropic", kind="list")
    price_book_version_create(
        book=book,
        rows=[
            PriceRow("base", "anthropic", "claude-sonnet-4-5", "input_token", Decimal("3"), 1_000_000),
            PriceRow(
                "long", "anthropic", "claude-sonnet-4-5", "input_token", Decimal("6"), 1_000_000, context_above=200_000
            ),
        ],
        source="test",
    )
    common = {
        "provider": "anthropic",
        "model": "claude-sonnet-4-5-20250929",
        "team": "t",
        "feature": "f",
        "environment": "eval",
    }
    usage_ingest_events(
        events=[
            {
                **common,
                "event_id": "short",
                "occurred_at": "2026-10-01T00:00:00Z",
                "context_tokens": 200_000,
                "quantities": {"input_token": 200_000},
            },
            {
                **common,
                "event_id": "long",
                "occurred_at": "2026-10-01T00:00:00Z",
                "context_tokens": 200_001,
                "quantities": {"input_token": 200_001},
            },
        ],
        source_name="test",
    )
    run = usage_rate_period(period=Period(2026, 10))
    costs = {r.price.amount: r.cost for r in RatedUsage.objects.filter(run=run)}
    assert costs[Decimal("3")].quantize(Decimal("0.000001")) == Decimal("0.600000")
    assert costs[Decimal("6")].quantize(Decimal("0.000001")) == Decimal("1.200006")  # every token at the long rate
    quote = rate_event(
        provider="anthropic",
        model="claude-sonnet-4-5",
        occurred_at=datetime(2026, 10, 1, tzinfo=UTC),
        quantities={"input_token": Decimal(200_001)},
        context_tokens=200_001,
    )
    assert quote.total == Decimal("1.200006")


def test_commands_load_export_and_rate(tmp_path, catalog):
    out = io.StringIO()
    call_command("load_price_book", str(write(tmp_path, "list.yaml", LIST_YAML)), stdout=out)
    assert json.loads(out.getvalue()) == {"book": "openai-list", "version": 1, "created": True, "prices": 5}
    out = io.StringIO()
    call_command("export_price_book", "openai-list", "--format", "csv", stdout=out)
    assert out.getvalue().count("\n") == 6
    with pytest.raises(CommandError, match="unknown unit"):
        call_command(
            "load_price_book",
            str(write(tmp_path, "bad.csv", "provider,model,unit,amount,per\nopenai,gpt-4o,tokens,1,1\n")),
            "--book",
            "x",
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
    usage_ingest_events(events=[event("e", "2026-10-03T00:00:00Z", quantities={"output_token": 2000})], source_name="t")
    out = io.StringIO()
    call_command("rate_usage", "--period", "2026-10", stdout=out)
    report = json.loads(out.getvalue())
    assert (report["lines_rated"], report["lines_unpriced"], report["cost"]) == (1, 0, "0.02")
    assert report["price_book_versions"] == ["openai-list v1"]


def test_a_rate_card_prices_a_shared_service_per_tier(tmp_path):
    card = (
        "book: image-service-card\nname: Image generation service\nkind: rate_card\nservice: creative\nprices:\n"
        '  - {unit: image, tier: standard, amount: "0.02", per: 1, effective_from: 2026-01-01}\n'
        '  - {unit: image, tier: hd, amount: "0.08", per: 1, effective_from: 2026-01-01}\n'
    )
    version, _ = price_book_load_file(path=write(tmp_path, "card.yaml", card))
    assert (version.book.kind, version.book.service) == ("rate_card", "creative")
    assert dict(version.prices.values_list("tier", "amount")) == {"standard": Decimal("0.02"), "hd": Decimal("0.08")}
    # Rate cards are not provider prices: rating never uses them for provider cost.
    list_only = 'book: openai-contract\nkind: contract\nprices:\n  - {unit: image, tier: hd, amount: "0.08", per: 1}\n'
    with pytest.raises(Exception, match="only rate cards price per tier without a model"):
        price_book_load_file(path=write(tmp_path, "nomodel.yaml", list_only))
