"""The usage pages as a finance user sees them: figures in the HTML, files downloaded."""

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from allocation.choices import UsageBatchStatus
from allocation.models import CostCenter, Feature, Team, Tenant, UsageBatch
from allocation.services.ledger import usage_ingest_file
from pricing.periods import Period
from tests.page_reading import table_rows

pytestmark = pytest.mark.django_db

# Five good events (four in May 2025, one in April) and two rejected rows,
# on file lines 7 and 8 (line 1 is the header).
USAGE_CSV = """\
event_id,occurred_at,provider,model,unit,quantity,team,feature,environment,tenant,user
e1,2025-05-02T10:00:00Z,openai,gpt-4o,input_token,1200000,search,semantic-search,production,acme,u1
e2,2025-05-03T10:00:00Z,openai,gpt-4o,input_token,34567.5,search,semantic-search,production,acme,u1
e3,2025-05-04T10:00:00Z,openai,gpt-4o,output_token,800,,,,acme,u2
e4,2025-05-05T10:00:00Z,anthropic,claude-sonnet-4,input_token,1000,support,chat,production,,u3
e5,2025-04-30T23:59:59Z,openai,gpt-4o,input_token,999,search,semantic-search,production,acme,u1
bad1,2025-05-06T10:00:00Z,openai,gpt-4o,input_token,-5,search,semantic-search,production,acme,u1
bad2,not-a-time,openai,gpt-4o,input_token,5,search,semantic-search,production,acme,u1
"""


@pytest.fixture
def finance_user(django_user_model):
    """A finance analyst on the platform team: sees the ledger and may upload to it."""
    from django.contrib.auth.models import Group

    fia = django_user_model.objects.create_user("fin", password="not-used", first_name="Fia", last_name="Nord")
    for role in ("finance_analyst", "platform_admin"):
        fia.groups.add(Group.objects.get_or_create(name=role)[0])
    return fia


@pytest.fixture
def signed_in(client, finance_user):
    client.force_login(finance_user)
    return client


@pytest.fixture
def batch(tmp_path) -> UsageBatch:
    path = tmp_path / "usage.csv"
    path.write_text(USAGE_CSV, encoding="utf-8")
    return usage_ingest_file(path=path, source_format="csv")


def _rejections_url(batch: UsageBatch) -> str:
    # Spelled out, not reversed: the page's URL is what users bookmark.
    return f"/usage/batches/{batch.pk}/rejections.csv"


def _page_urls(batch: UsageBatch) -> list[str]:
    return [
        reverse("usage-overview"),
        reverse("usage-batches"),
        reverse("usage-batch", args=[batch.pk]),
        _rejections_url(batch),
        reverse("organization"),
    ]


def test_page_url_names_lead_to_the_pages(batch):
    assert reverse("usage-overview") == "/usage/"
    assert reverse("usage-batches") == "/usage/batches/"
    assert reverse("usage-batch", args=[batch.pk]) == f"/usage/batches/{batch.pk}/"
    assert reverse("usage-batch-rejections", args=[batch.pk]) == _rejections_url(batch)
    assert reverse("organization") == "/usage/organization/"


def test_pages_send_anonymous_users_to_login(client, batch):
    for url in _page_urls(batch):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next="), url


def test_pages_open_for_a_signed_in_user(signed_in, batch):
    for url in _page_urls(batch):
        assert signed_in.get(url).status_code == 200, url


def test_layout_has_nav_user_and_a_post_logout(signed_in, batch):
    html = signed_in.get(reverse("usage-batches")).content.decode()
    assert 'href="#main"' in html and '<main id="main"' in html
    assert "Fia Nord" in html
    assert f'<form method="post" action="{reverse("logout")}">' in html
    assert f'href="{reverse("usage-batches")}" aria-current="page"' in html


def test_login_page_labels_its_fields(client):
    html = client.get(reverse("login")).content.decode()
    assert '<label for="id_username">' in html and '<label for="id_password">' in html


def test_overview_shows_the_latest_month_totals_by_default(signed_in, batch):
    response = signed_in.get(reverse("usage-overview"))
    html = response.content.decode()
    assert "Usage in 2025-05" in html
    rows = table_rows(response)
    # Two May input lines add up exactly; April's 999 is not in May.
    # Not rated yet: no cost, every line unpriced, and the page says so.
    assert ["openai", "gpt-4o", "input_token", "1,234,567.5", "2", "—", "2"] in rows
    assert ["openai", "gpt-4o", "output_token", "800", "1", "—", "1"] in rows
    assert ["anthropic", "claude-sonnet-4", "input_token", "1,000", "1", "—", "1"] in rows
    assert ["Total", "4", "—", "4"] in rows
    assert "2025-05 is not rated yet" in html


def test_overview_groups_by_the_chosen_keys(signed_in, batch):
    response = signed_in.get(reverse("usage-overview"), {"period": "2025-04", "group_by": ["team", "unit"]})
    rows = table_rows(response)
    assert ["Team", "Unit", "Quantity", "Lines", "Rated cost", "Unpriced lines"] in rows
    assert ["search", "input_token", "999", "1", "—", "1"] in rows


def test_overview_reports_tag_coverage_per_source(signed_in, batch):
    rows = table_rows(signed_in.get(reverse("usage-overview"), {"period": "2025-05"}))
    coverage = next(row for row in rows if row and row[0] == "CSV (documented schema)")
    # One of four May lines (e3, 800 tokens) lacks team, feature and environment.
    assert coverage[1] == "4"
    assert coverage[-3:] == ["1", "25.0%", "800"]


def test_overview_shows_a_bad_period_as_a_form_error(signed_in, batch):
    response = signed_in.get(reverse("usage-overview"), {"period": "2025-13", "group_by": ["provider"]})
    html = response.content.decode()
    # 400, as the allocation and unpriced-usage pages answer a bad period.
    assert response.status_code == 400
    assert "is not YYYY-MM" in html
    assert 'aria-invalid="true"' in html
    assert "Rated cost" not in html


def test_overview_shows_an_unknown_group_key_as_a_form_error(signed_in, batch):
    response = signed_in.get(reverse("usage-overview"), {"period": "2025-05", "group_by": ["colour"]})
    assert response.status_code == 400
    assert "unknown group key(s) colour" in response.content.decode()


def test_overview_of_an_empty_month_says_so(signed_in, batch):
    html = signed_in.get(reverse("usage-overview"), {"period": "2024-01"}).content.decode()
    assert "No usage in 2024-01" in html


def test_batches_page_lists_counts_and_status(signed_in, batch):
    response = signed_in.get(reverse("usage-batches"))
    row = next(row for row in table_rows(response) if row and row[0] == str(batch.pk))
    assert row[3:8] == ["Completed", "7", "5", "0", "2"]
    assert "data-poll" not in response.content.decode().split('id="batch-list"')[1].split(">")[0]


def test_batches_page_refreshes_only_while_a_batch_runs(signed_in, batch):
    UsageBatch.objects.create(
        source_format="csv", source_name="big.csv", status=UsageBatchStatus.RUNNING, bytes_total=200, bytes_read=50
    )
    html = signed_in.get(reverse("usage-batches")).content.decode()
    assert 'id="batch-list" data-poll="3000"' in html
    assert 'value="50" max="200"' in html and "25%" in html


def test_batch_page_accounts_for_every_row_and_lists_rejections(signed_in, batch):
    response = signed_in.get(reverse("usage-batch", args=[batch.pk]))
    html = response.content.decode()
    assert "7 read = 5 inserted + 0 duplicate + 2 rejected" in html
    rows = table_rows(response)
    assert rows[-2][:3] == ["7", "quantity", "negative quantity: -5"]
    assert rows[-1][:2] == ["8", "occurred_at"]
    assert f'href="{_rejections_url(batch)}"' in html


def test_batch_page_shows_why_a_batch_was_refused(signed_in, tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("when,who\n1,2\n", encoding="utf-8")
    refused = usage_ingest_file(path=path, source_format="csv")
    html = signed_in.get(reverse("usage-batch", args=[refused.pk])).content.decode()
    assert "Why the batch was refused" in html
    assert "missing required column(s) occurred_at" in html


def test_rejections_download_is_a_csv_of_every_rejected_line(signed_in, batch):
    response = signed_in.get(_rejections_url(batch))
    assert response["Content-Type"].startswith("text/csv")
    assert f"batch-{batch.pk}-rejections.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["batch", "source", "line", "field", "reason", "raw"]
    assert [(row[2], row[3]) for row in rows[1:]] == [("7", "quantity"), ("8", "occurred_at")]
    assert rows[1][5].startswith("bad1,")


def test_unknown_batch_is_not_found(signed_in):
    assert signed_in.get(reverse("usage-batch", args=[999])).status_code == 404


def test_upload_creates_a_batch_that_completes(
    signed_in, finance_user, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path / "media"
    upload = SimpleUploadedFile("may.csv", USAGE_CSV.encode(), content_type="text/csv")
    # With no broker Celery runs eagerly: the ingest runs when the upload commits.
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("usage-batches"), {"file": upload, "source_format": "csv"})
    created = UsageBatch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("usage-batch", args=[created.pk])
    assert (created.status, created.source_name, created.created_by) == (
        UsageBatchStatus.COMPLETED,
        "may.csv",
        finance_user,
    )
    assert (created.rows_read, created.inserted, created.rejected) == (7, 5, 2)
    html = signed_in.get(response["Location"]).content.decode()
    assert f"Uploaded may.csv as batch {created.pk}." in html
    assert "7 read = 5 inserted + 0 duplicate + 2 rejected" in html


def test_upload_without_a_file_shows_the_error(signed_in):
    response = signed_in.post(reverse("usage-batches"), {"source_format": "csv"})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not UsageBatch.objects.exists()


def test_organization_shows_the_tree_in_a_handful_of_queries(signed_in, django_assert_max_num_queries):
    company = CostCenter.objects.create(
        code="CC-1",
        name="Company",
        owner="CFO",
        gl_expense_account="6100",
        gl_recovery_account="6190",
        active_from=date(2024, 1, 1),
    )
    for n in range(2, 6):
        center = CostCenter.objects.create(
            code=f"CC-{n}",
            name=f"Unit {n}",
            owner=f"Owner {n}",
            gl_expense_account=f"61{n}0",
            gl_recovery_account=f"61{n}9",
            active_from=date(2024, 1, 1),
            parent=company,
        )
        team = Team.objects.create(code=f"team-{n}", name=f"Team {n}", cost_center=center)
        Feature.objects.create(code=f"feature-{n}", name=f"Feature {n}", team=team)
    Tenant.objects.create(code="acme", name="Acme Corp")
    # Session, user, the user's roles, then cost centers, teams, features, tenants.
    with django_assert_max_num_queries(7):
        response = signed_in.get(reverse("organization"))
    rows = table_rows(response)
    names = [row[0] for row in rows[1:6]]
    assert names == ["CC-1 Company", "└ CC-2 Unit 2", "└ CC-3 Unit 3", "└ CC-4 Unit 4", "└ CC-5 Unit 5"]
    unit_2 = rows[2]
    assert unit_2[1:6] == ["CC-1", "Owner 2", "6120", "6129", "2024-01-01 – open"]
    assert "Team 2 team-2 Feature 2 feature-2" in unit_2[6]
    assert ["acme", "Acme Corp"] in rows


def test_overview_shows_rated_cost_and_unpriced_lines(signed_in, batch):
    from allocation.services.rating import usage_rate_period
    from pricing.models import AiModel, PriceBook, Provider
    from pricing.services.price_books import PriceRow, price_book_version_create

    openai = Provider.objects.create(code="openai", name="OpenAI")
    AiModel.objects.create(provider=openai, code="gpt-4o")
    book = PriceBook.objects.create(code="openai-list", name="OpenAI", kind="list")
    price_book_version_create(
        book=book,
        rows=[
            PriceRow("1", "openai", "gpt-4o", "input_token", Decimal("2.50"), 1_000_000),
            PriceRow("2", "openai", "gpt-4o", "output_token", Decimal("10"), 1_000_000),
        ],
        source="test",
    )
    usage_rate_period(period=Period(2025, 5))
    response = signed_in.get(reverse("usage-overview"), {"period": "2025-05"})
    rows = table_rows(response)
    # 1,234,567.5 tokens x $2.50/1M = $3.0864...; 800 x $10/1M = $0.008, shown to the cent.
    assert ["openai", "gpt-4o", "input_token", "1,234,567.5", "2", "$3.09", "0"] in rows
    assert ["openai", "gpt-4o", "output_token", "800", "1", "$0.01", "0"] in rows
    assert ["anthropic", "claude-sonnet-4", "input_token", "1,000", "1", "—", "1"] in rows
    assert ["Total", "4", "$3.09", "1"] in rows
    assert "1 line could not be priced" in response.content.decode()
