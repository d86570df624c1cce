"""The price book pages as a user sees them: prices in the HTML, files downloaded,
what changed between versions, the usage no price covers, and an admin that
never edits a loaded version."""

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
import yaml
from django.contrib.admin.sites import site as admin_site
from django.urls import reverse

from allocation.models import RatingRun
from allocation.services.ledger import usage_ingest_events
from allocation.services.rating import usage_rate_period
from pricing.choices import PriceBookKind
from pricing.models import AiModel, Price, PriceBook, PriceBookVersion, Provider
from pricing.periods import Period
from pricing.services.price_books import PriceRow, price_book_load_file, price_book_version_create
from tests.page_reading import page_text, table_rows

pytestmark = pytest.mark.django_db


def row(provider="openai", model="gpt-4o", unit="input_token", amount="2.50", per=1_000_000, **more) -> PriceRow:
    return PriceRow(where="test", provider=provider, model=model, unit=unit, amount=Decimal(amount), per=per, **more)


@pytest.fixture
def catalog() -> dict[str, AiModel]:
    openai = Provider.objects.create(code="openai", name="OpenAI")
    anthropic = Provider.objects.create(code="anthropic", name="Anthropic")
    return {
        "gpt-4o": AiModel.objects.create(provider=openai, code="gpt-4o", name="GPT-4o"),
        "gpt-4o-mini": AiModel.objects.create(provider=openai, code="gpt-4o-mini"),
        "claude-sonnet-4": AiModel.objects.create(provider=anthropic, code="claude-sonnet-4"),
    }


@pytest.fixture
def book(catalog) -> PriceBook:
    """A list book of two versions: v2 drops gpt-4o-mini output, cuts gpt-4o input
    from $2.50 to $2.00, and adds Claude."""
    book = PriceBook.objects.create(code="public-list", name="Public list prices", kind=PriceBookKind.LIST)
    price_book_version_create(
        book=book,
        source="genai-prices 0.2.3",
        rows=[
            row(amount="2.50"),
            row(unit="output_token", amount="10"),
            row(model="gpt-4o-mini", unit="output_token", amount="0.60"),
        ],
    )
    price_book_version_create(
        book=book,
        source="file public-list.yaml",
        rows=[
            row(amount="2.00"),
            row(unit="output_token", amount="10"),
            row(unit="input_token", amount="5", context_above=200_000, effective_from=date(2026, 1, 1)),
            row(provider="anthropic", model="claude-sonnet-4", unit="cached_input_token", amount="0.30"),
            row(unit="image", amount="0.04", per=1, tier="hd-1024x1024", effective_to=date(2027, 1, 1)),
        ],
    )
    return book


def _urls(book: PriceBook) -> list[str]:
    return [
        reverse("price-books"),
        reverse("price-book", args=[book.code]),
        reverse("price-book-diff", args=[book.code]),
        reverse("price-book-export", args=[book.code, 2, "yaml"]),
        reverse("price-book-export", args=[book.code, 2, "csv"]),
        reverse("unpriced-usage") + "?period=2026-10",
    ]


def test_page_url_names_lead_to_the_pages(book):
    assert reverse("price-books") == "/pricing/"
    assert reverse("price-book", args=["public-list"]) == "/pricing/books/public-list/"
    assert reverse("price-book-diff", args=["public-list"]) == "/pricing/books/public-list/diff/"
    assert reverse("unpriced-usage") == "/pricing/unpriced/"


def test_pages_send_anonymous_users_to_login(client, book):
    for url in _urls(book):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next="), url
    response = client.post(reverse("unpriced-usage"), {"period": "2026-10"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not RatingRun.objects.exists()


def test_pages_open_for_a_signed_in_user(client_logged_in, book):
    for url in _urls(book):
        assert client_logged_in.get(url).status_code == 200, url


def test_nav_marks_pricing_on_every_pricing_page(client_logged_in, book):
    html = client_logged_in.get(reverse("price-books")).content.decode()
    assert f'href="{reverse("price-books")}" aria-current="page">Pricing</a>' in html
    html = client_logged_in.get(reverse("price-book", args=[book.code])).content.decode()
    assert f'href="{reverse("price-books")}" aria-current="true">Pricing</a>' in html


def test_price_books_list_every_book_with_its_latest_version(client_logged_in, book):
    card = PriceBook.objects.create(code="search-card", name="Search rate card", kind=PriceBookKind.RATE_CARD)
    price_book_version_create(
        book=card, source="file card.csv", rows=[row(provider="", model="", unit="request", amount="0.002", per=1)]
    )
    PriceBook.objects.create(code="empty", name="Empty contract", kind=PriceBookKind.CONTRACT)
    response = client_logged_in.get(reverse("price-books"))
    rows = table_rows(response)
    html = response.content.decode()
    assert rows[0] == ["Book", "Kind", "Latest version", "Prices", "Source", "Created"]
    by_name = {cells[0].split(" ")[0]: cells for cells in rows[1:]}
    assert by_name["Public"][1:5] == ["List", "v2 of 2", "5", "file public-list.yaml"]
    assert by_name["Search"][1:5] == ["Rate card", "v1", "1", "file card.csv"]
    assert by_name["Empty"][1:5] == ["Contract", "none", "0", "—"]
    assert f'href="{reverse("price-book", args=[book.code])}"' in html


def test_book_page_shows_versions_and_the_latest_prices_readably(client_logged_in, book):
    response = client_logged_in.get(reverse("price-book", args=[book.code]))
    rows = table_rows(response)
    v2 = book.versions.get(number=2)
    assert ["v2 Latest", v2.created_at.strftime("%Y-%m-%d %H:%M")] == rows[1][:2]
    assert rows[1][3:6] == ["file public-list.yaml", v2.checksum[:12], "5"]
    assert rows[2][0] == "v1" and rows[2][5] == "3"
    prices = rows[rows.index(next(r for r in rows if r and r[0] == "Provider")) + 1 :]
    assert [
        "openai",
        "gpt-4o",
        "input_token",
        "standard",
        "any",
        "—",
        "$2.00 per 1M tokens",
        "always",
        "open",
    ] in prices
    assert [
        "openai",
        "gpt-4o",
        "input_token",
        "standard",
        "any",
        "200,000 tokens",
        "$5.00 per 1M tokens",
        "2026-01-01",
        "open",
    ] in prices
    assert [
        "openai",
        "gpt-4o",
        "image",
        "standard",
        "hd-1024x1024",
        "—",
        "$0.04 per image",
        "always",
        "2027-01-01",
    ] in (prices)
    assert [
        "anthropic",
        "claude-sonnet-4",
        "cached_input_token",
        "standard",
        "any",
        "—",
        "$0.30 per 1M tokens",
        "always",
        "open",
    ] in prices
    html = response.content.decode()
    assert "Prices in v2, the latest" in html
    assert f'href="{reverse("price-book-export", args=[book.code, 2, "yaml"])}" download>Export YAML' in html
    assert f'href="{reverse("price-book-export", args=[book.code, 2, "csv"])}" download>Export CSV' in html


def test_book_page_filters_by_model_and_unit(client_logged_in, book):
    url = reverse("price-book", args=[book.code])
    rows = table_rows(client_logged_in.get(url, {"model": "GPT-4O", "unit": "input_token"}))
    shown = [r for r in rows if r and r[0] in ("openai", "anthropic")]
    assert [(r[1], r[2], r[6]) for r in shown] == [
        ("gpt-4o", "input_token", "$2.00 per 1M tokens"),
        ("gpt-4o", "input_token", "$5.00 per 1M tokens"),
    ]
    html = client_logged_in.get(url, {"provider": "anthropic"}).content.decode()
    assert "1 price match" in html and "claude-sonnet-4" in html and "gpt-4o</th>" not in html
    html = client_logged_in.get(url, {"model": "no-such-model"}).content.decode()
    assert "No prices in v2 match these filters." in html


def test_book_page_shows_an_earlier_version_as_superseded(client_logged_in, book):
    response = client_logged_in.get(reverse("price-book", args=[book.code]), {"version": 1})
    html = response.content.decode()
    assert "Prices in v1, superseded" in html
    assert any(
        r[1:3] == ["gpt-4o-mini", "output_token"] and r[6] == "$0.60 per 1M tokens" for r in table_rows(response)
    )
    assert client_logged_in.get(reverse("price-book", args=[book.code]), {"version": 9}).status_code == 404


def test_book_page_paginates_a_large_book(client_logged_in, catalog):
    big = PriceBook.objects.create(code="big", name="Big", kind=PriceBookKind.LIST)
    rows = [row(unit="image", amount="0.01", per=1, tier=f"size-{n:03d}") for n in range(101)]
    price_book_version_create(book=big, rows=rows, source="test")
    url = reverse("price-book", args=["big"])
    first = page_text(client_logged_in.get(url))
    assert "101 prices. Showing 1–100." in first
    assert "Page 1 of 2" in first
    second = client_logged_in.get(url, {"page": 2})
    shown = [r for r in table_rows(second) if r and r[0] == "openai"]
    assert [r[4] for r in shown] == ["size-100"]


def test_exports_download_and_load_back_as_the_same_prices(client_logged_in, book, tmp_path):
    version = book.versions.get(number=2)
    expected = {
        (p.model.provider.code, p.model.code, p.unit_id, p.tier, p.context_above, Decimal(p.amount), p.quantum)
        for p in version.prices.select_related("model__provider")
    }

    response = client_logged_in.get(reverse("price-book-export", args=[book.code, 2, "csv"]))
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="public-list-v2.csv"'
    text = response.content.decode()
    parsed = {
        (r["provider"], r["model"], r["unit"], r["tier"], int(r["context_above"]), Decimal(r["amount"]), int(r["per"]))
        for r in csv.DictReader(io.StringIO(text))
    }
    assert parsed == expected

    response = client_logged_in.get(reverse("price-book-export", args=[book.code, 2, "yaml"]))
    assert response["Content-Disposition"] == 'attachment; filename="public-list-v2.yaml"'
    document = yaml.safe_load(response.content.decode())
    assert document["book"] == "public-list" and document["version"] == 2
    parsed = {
        (
            p["provider"],
            p["model"],
            p["unit"],
            p.get("tier", ""),
            p.get("context_above", 0),
            Decimal(str(p["amount"])),
            p["per"],
        )
        for p in document["prices"]
    }
    assert parsed == expected

    # Loaded back, either file is a version with exactly the same prices.
    for extension, content in (("csv", text), ("yaml", response.content.decode())):
        path = tmp_path / f"again.{extension}"
        path.write_text(content, encoding="utf-8")
        again, _ = price_book_load_file(path=path, book_code=f"again-{extension}", kind=PriceBookKind.CONTRACT)
        assert again.checksum == version.checksum

    assert client_logged_in.get(reverse("price-book-export", args=[book.code, 2, "xlsx"])).status_code == 404
    assert client_logged_in.get(reverse("price-book-export", args=[book.code, 7, "csv"])).status_code == 404


def test_diff_defaults_to_the_two_latest_versions(client_logged_in, book):
    response = client_logged_in.get(reverse("price-book-diff", args=[book.code]))
    html = response.content.decode()
    assert "v1 → v2" in html
    rows = table_rows(response)
    changed = rows[rows.index(next(r for r in rows if "Price in v1" in r)) + 1]
    assert changed == [
        "openai",
        "gpt-4o",
        "input_token",
        "standard",
        "any",
        "—",
        "always",
        "$2.50 per 1M tokens",
        "$2.00 per 1M tokens",
        "-20.0% (cheaper)",
    ]
    assert "Changed (1)" in html and "Added (3)" in html and "Removed (1)" in html
    assert [
        "openai",
        "gpt-4o-mini",
        "output_token",
        "standard",
        "any",
        "—",
        "always",
        "$0.60 per 1M tokens",
        "open",
    ] in (rows)
    assert [
        "anthropic",
        "claude-sonnet-4",
        "cached_input_token",
        "standard",
        "any",
        "—",
        "always",
        "$0.30 per 1M tokens",
        "open",
    ] in rows
    # gpt-4o output kept its price: counted as unchanged, not listed.
    assert '<span class="stats__value">1</span> <span class="stats__label">unchanged</span>' in html


def test_diff_compares_the_chosen_versions_and_refuses_unknown_ones(client_logged_in, book):
    url = reverse("price-book-diff", args=[book.code])
    html = client_logged_in.get(url, {"from": 2, "to": 2}).content.decode()
    assert "v2 and v2 hold the same prices." in html
    response = client_logged_in.get(url, {"from": 5, "to": 2})
    assert response.status_code == 400
    assert "public-list has no version 5; pick one of its versions." in response.content.decode()


def test_diff_of_a_single_version_book_says_there_is_nothing_to_compare(client_logged_in, catalog):
    single = PriceBook.objects.create(code="single", name="Single", kind=PriceBookKind.LIST)
    price_book_version_create(book=single, rows=[row()], source="test")
    html = client_logged_in.get(reverse("price-book-diff", args=["single"])).content.decode()
    assert "This book has only version 1: there is nothing to compare." in html


def test_diff_selector_reports_end_date_and_price_changes(book, catalog):
    from pricing.selectors import price_book_version_diff

    v2 = book.versions.get(number=2)
    v3, _ = price_book_version_create(
        book=book,
        source="test",
        rows=[
            row(amount="2.00", effective_to=date(2026, 6, 1)),
            row(unit="output_token", amount="0.012", per=1000),  # $12 per 1M: +20%
            row(unit="input_token", amount="5", context_above=200_000, effective_from=date(2026, 1, 1)),
            row(provider="anthropic", model="claude-sonnet-4", unit="cached_input_token", amount="0.30"),
            row(model="gpt-4o", unit="image", amount="0.04", per=1, tier="hd-1024x1024", effective_to=date(2027, 1, 1)),
        ],
    )
    diff = price_book_version_diff(old=v2, new=v3)
    assert diff["added"] == [] and diff["removed"] == [] and diff["unchanged"] == 3
    by_unit = {c["unit"]: c for c in diff["changed"]}
    assert by_unit["input_token"]["price_changed"] is False
    assert by_unit["input_token"]["new"]["effective_to"] == date(2026, 6, 1)
    assert by_unit["output_token"]["change"] == Decimal("0.2")


@pytest.fixture
def rated_october(book):
    """October 2026 usage rated at `book`: one priced key, one unknown model, and a
    known model in a unit no price covers."""
    usage_ingest_events(
        events=[
            {
                "event_id": "e1",
                "occurred_at": "2026-10-01T00:00:00Z",
                "provider": "openai",
                "model": "gpt-4o",
                "quantities": {"input_token": 1000, "reasoning_token": 40},
            },
            {
                "event_id": "e2",
                "occurred_at": "2026-10-02T00:00:00Z",
                "provider": "openai",
                "model": "gpt-9-ultra",
                "quantities": {"input_token": 1_234_567},
            },
            {
                "event_id": "e3",
                "occurred_at": "2026-10-03T00:00:00Z",
                "provider": "openai",
                "model": "gpt-9-ultra",
                "quantities": {"input_token": 100},
            },
        ],
        source_name="t",
    )
    return usage_rate_period(period=Period(2026, 10))


def test_unpriced_page_lists_unpriced_usage_with_its_reason(client_logged_in, rated_october):
    response = client_logged_in.get(reverse("unpriced-usage"), {"period": "2026-10"})
    html = response.content.decode()
    rows = table_rows(response)
    assert [
        "openai",
        "gpt-9-ultra",
        "input_token",
        "standard",
        "any",
        "1,234,667",
        "2",
        "model not in the catalog",
    ] in (rows)
    assert [
        "openai",
        "gpt-4o",
        "reasoning_token",
        "standard",
        "any",
        "40",
        "1",
        "no price for this unit/tier in force",
    ] in rows
    assert not any(r[:3] == ["openai", "gpt-4o", "input_token"] for r in rows)
    run = rated_october
    assert f"<dt>Run</dt><dd>{run.pk}</dd>" in html
    assert "<dt>Lines rated</dt><dd>4</dd>" in html
    assert "<dt>Lines unpriced</dt><dd><strong>3</strong></dd>" in html
    # 1,000 input tokens at $2.00 per 1M: below a cent, so "<$0.01", neither $0.00 nor $0.002.
    assert "<dt>Cost of priced lines</dt><dd>&lt;$0.01</dd>" in html


def test_unpriced_page_rates_the_period_on_request(client_logged_in, rated_october, user):
    url = reverse("unpriced-usage")
    response = client_logged_in.post(url, {"period": "2026-10"}, follow=True)
    assert response.redirect_chain == [(f"{url}?period=2026-10", 302)]
    newest = RatingRun.objects.order_by("-id").first()
    assert newest.pk != rated_october.pk and newest.created_by == user
    html = response.content.decode()
    assert f"Rated 2026-10: run {newest.pk}, 4 lines, 3 of them unpriced." in html
    assert f"<dt>Run</dt><dd>{newest.pk}</dd>" in html


def test_unpriced_page_without_a_run_or_with_a_bad_period(client_logged_in, book):
    html = client_logged_in.get(reverse("unpriced-usage"), {"period": "2026-09"}).content.decode()
    assert "2026-09 has not been rated yet, and the ledger holds no usage for it." in html
    assert "Rate 2026-09 now" in html
    response = client_logged_in.get(reverse("unpriced-usage"), {"period": "2026-13"})
    assert response.status_code == 400
    assert "period &#x27;2026-13&#x27; is not YYYY-MM" in response.content.decode()


def test_unpriced_page_tells_when_usage_arrived_after_the_run(client_logged_in, rated_october):
    usage_ingest_events(
        events=[
            {
                "event_id": "late",
                "occurred_at": "2026-10-30T00:00:00Z",
                "provider": "openai",
                "model": "gpt-4o",
                "quantities": {"input_token": 5},
            }
        ],
        source_name="late",
    )
    html = client_logged_in.get(reverse("unpriced-usage"), {"period": "2026-10"}).content.decode()
    assert "The ledger now holds 5 lines for 2026-10; this run rated 4." in html


def test_admin_never_changes_or_deletes_a_loaded_version_or_price(admin_client, rf, admin_user, book):
    version = book.versions.get(number=2)
    price = version.prices.get(model__code="gpt-4o", unit="input_token", context_above=0)
    request = rf.get("/")
    request.user = admin_user
    for model, obj in ((PriceBookVersion, version), (Price, price)):
        model_admin = admin_site._registry[model]
        assert not model_admin.has_add_permission(request)
        assert not model_admin.has_change_permission(request, obj)
        assert not model_admin.has_delete_permission(request, obj)
    change = reverse("admin:pricing_price_change", args=[price.pk])
    assert admin_client.get(change).status_code == 200  # viewable, read-only
    response = admin_client.post(change, {"amount": "0", "quantum": "1"})
    assert response.status_code == 403
    price.refresh_from_db()
    assert price.amount == Decimal("2.00")
    version_change = reverse("admin:pricing_pricebookversion_change", args=[version.pk])
    assert admin_client.post(version_change, {"source": "edited"}).status_code == 403
    assert admin_client.post(reverse("admin:pricing_price_delete", args=[price.pk]), {"post": "yes"}).status_code == 403
    assert Price.objects.filter(pk=price.pk).exists()


def test_admin_lists_open_for_staff(admin_client, book):
    for name in ("provider", "aimodel", "modelalias", "pricebook", "pricebookversion", "price", "unit"):
        assert admin_client.get(reverse(f"admin:pricing_{name}_changelist")).status_code == 200, name
    version = book.versions.get(number=2)
    html = admin_client.get(reverse("admin:pricing_pricebookversion_changelist")).content.decode()
    assert f"?version__id__exact={version.pk}" in html and "5 prices" in html
    filtered = admin_client.get(reverse("admin:pricing_price_changelist"), {"version__id__exact": version.pk})
    assert filtered.status_code == 200 and filtered.context["cl"].result_count == 5
