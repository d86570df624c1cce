"""The finance dashboard on the home page (chargeback/views/dashboard.py): what finance,
the platform team and a team member see for a period, that its figures tie to the
allocation runs, and that its charts come from this site alone."""

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.staticfiles import finders
from django.db.models import Sum
from django.templatetags.static import static
from django.test import Client
from django.urls import reverse

from allocation.access import EVERY_COST_CENTER, cost_center_scope
from allocation.models import AllocationLine, AllocationRun
from allocation.services.access import membership_grant
from allocation.services.runs.progress import progress_start
from allocation.services.runs.run import allocation_run_execute
from chargeback.selectors.dashboard import (
    OTHER_COST_CENTERS,
    UNALLOCATED,
    dashboard_reconciliation,
    dashboard_spend_by_cost_center,
    dashboard_spend_by_modality,
    dashboard_unallocated,
)
from pricing.periods import Period
from tests.allocation.runs_world import MONTH, build_run, load_invoice, load_usage, usage
from tests.page_reading import page_text, table_rows

pytestmark = pytest.mark.django_db

NOVEMBER = Period(2026, 11)
CHART_LIBRARY = "vendor/chartjs/chart.umd.min.js"
# November, for two months of history: search's direct calls (10M input at $1 / 1M =
# 10.00) and an untagged call (3M input = 3.00), on an invoice of 13.00.
NOVEMBER_INVOICE = """\
ACME-2026-11,acme-ai,2026-11-01T00:00:00Z,2026-12-01T00:00:00Z,usage,acme-1-tokens,acme-1 tokens,,,13.00,13.00,,USD
"""


def _november_events() -> list[dict]:
    web = {"team": "search", "feature": "web", "environment": "production"}
    return [
        {**usage("nov-web-1", "input_token", 10_000_000, **web), "occurred_at": "2026-11-05T10:00:00Z"},
        {**usage("nov-raw-1", "input_token", 3_000_000), "occurred_at": "2026-11-06T10:00:00Z"},
    ]


@pytest.fixture
def world(tmp_path, django_user_model) -> dict:
    """The hand-computed October (tests/allocation/runs_world.py) and a smaller November,
    each allocated; a finance analyst, a platform admin, a member of CC-110 (search) and
    a user with no role."""
    october = build_run(tmp_path, django_user_model)
    load_usage(_november_events())
    load_invoice(tmp_path, NOVEMBER_INVOICE, name="november.csv")
    november = allocation_run_execute(period=NOVEMBER, actor=october.created_by)
    users = {"approver": october.created_by}
    for name, role in (
        ("analyst", "finance_analyst"),
        ("platform", "platform_admin"),
        ("member", "team_member"),
        ("nobody", None),
    ):
        users[name] = django_user_model.objects.create_user(username=name, password="x")
        if role:
            users[name].groups.add(Group.objects.get_or_create(name=role)[0])
    membership_grant(username="member", cost_center_code="CC-110")
    return {"october": october, "november": november, "users": users}


def _page(world: dict, who: str, **query):
    client = Client()
    client.force_login(world["users"][who])
    return client.get(reverse("home"), query)


def _chart(response, chart_id: str) -> dict:
    """A chart's figures as the page carries them for static/dashboard.js."""
    found = re.search(
        rf'<script id="{chart_id}-data" type="application/json">(.*?)</script>', response.content.decode(), re.S
    )
    assert found, f"no data for the chart {chart_id}"
    return json.loads(found.group(1))


def test_finance_sees_the_company_figures_that_tie_to_the_run(world):
    run: AllocationRun = world["november"]
    response = _page(world, "approver")
    assert response.status_code == 200
    text = page_text(response)
    assert "Finance dashboard" in text and "2026-11" in text  # opens on the latest month with a run
    assert run.invoice_total == run.allocated + run.unallocated == Decimal("13.00")
    assert run.unallocated > 0  # the untagged call
    words = " ".join(re.sub(r"<[^>]+>", " ", text).split())
    assert f"Run #{run.pk}: $13.00 invoiced = ${run.allocated} allocated + ${run.unallocated} unallocated" in words

    for chart_id in ("spend-by-modality", "spend-by-cost-center"):
        chart = _chart(response, chart_id)
        assert chart["months"] == ["2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]
        assert chart["runs"] == [None, None, None, None, world["october"].pk, run.pk]
        # Every month's total is its run's invoices: allocated plus unallocated, to the cent.
        assert chart["totals"][-2:] == [str(world["october"].invoice_total), "13.00"]
        assert chart["totals"][:4] == [None] * 4
        for month in (-2, -1):
            parts = sum(Decimal(series["amounts"][month]) for series in chart["series"])
            assert str(parts) == chart["totals"][month]
    centers = _chart(response, "spend-by-cost-center")
    unallocated = next(series for series in centers["series"] if series["key"] == UNALLOCATED)
    assert unallocated["amounts"][-1] == str(run.unallocated)

    reconciliation = {row[0]: row for row in table_rows(response) if row and row[0] in ("acme-ai", "All providers")}
    assert reconciliation["acme-ai"][1:4] == ["$13.00", f"${run.allocated}", f"${run.unallocated}"]
    assert reconciliation["All providers"][1:4] == ["$13.00", f"${run.allocated}", f"${run.unallocated}"]
    assert "Unallocated by reason" in text and "Untagged usage no rule maps" in text
    assert [row["reason"] for row in dashboard_unallocated(run=run)] == ["untagged"]


def test_the_platform_team_sees_the_company_dashboard_too(world):
    response = _page(world, "platform", period="2026-10")
    assert response.status_code == 200
    assert "Reconciliation by provider" in page_text(response)
    assert _chart(response, "spend-by-modality")["totals"][-1] == str(world["october"].invoice_total)


def test_a_team_member_sees_only_their_cost_centers_and_no_company_figures(world):
    response = _page(world, "member")
    assert response.status_code == 200
    text = page_text(response)
    assert "Your cost centers' spend" in text
    for company_only in ("Reconciliation by provider", "Unallocated by reason", "Allocation run", "Invoice total"):
        assert company_only not in text, company_only

    centers = _chart(response, "spend-by-cost-center")
    assert [series["key"] for series in centers["series"]] == ["CC-110"]
    for month, run in (("2026-10", world["october"]), ("2026-11", world["november"])):
        theirs = AllocationLine.objects.filter(run=run, cost_center__code="CC-110").aggregate(total=Sum("amount"))
        index = centers["months"].index(month)
        assert Decimal(centers["totals"][index]) == theirs["total"]
        assert _chart(response, "spend-by-modality")["totals"][index] == centers["totals"][index]
    # Their November: search's direct calls and its share of nothing else.
    assert centers["totals"][-1] == "10.00" != str(world["november"].invoice_total)
    assert "$10.00" in text
    assert all(series["key"] not in (UNALLOCATED, OTHER_COST_CENTERS) for series in centers["series"])


def test_the_charts_carry_the_selectors_figures(world):
    member = world["users"]["member"]
    for who, scope in (("analyst", EVERY_COST_CENTER), ("member", cost_center_scope(member))):
        response = _page(world, who, period="2026-10")
        assert _chart(response, "spend-by-modality") == dashboard_spend_by_modality(period=MONTH, scope=scope)
        assert _chart(response, "spend-by-cost-center") == dashboard_spend_by_cost_center(period=MONTH, scope=scope)
    # Money travels as decimal text to the cent, never as a float.
    chart = dashboard_spend_by_modality(period=MONTH, scope=EVERY_COST_CENTER)
    amounts = [a for series in chart["series"] for a in series["amounts"] if a is not None]
    assert amounts and all(re.fullmatch(r"-?\d+\.\d{2}", amount) for amount in amounts)


def test_cost_centers_past_the_top_are_summed_as_others(world):
    october = world["october"]
    per_center = dict(
        AllocationLine.objects.filter(run=october, cost_center__isnull=False)
        .values_list("cost_center__code")
        .annotate(total=Sum("amount"))
    )
    assert len(per_center) > 2
    chart = dashboard_spend_by_cost_center(period=MONTH, scope=EVERY_COST_CENTER, top=1)
    keys = [series["key"] for series in chart["series"]]
    largest = max(per_center, key=per_center.get)
    assert keys == [largest, OTHER_COST_CENTERS, UNALLOCATED]
    others = sum((amount for code, amount in per_center.items() if code != largest), Decimal(0))
    assert Decimal(chart["series"][1]["amounts"][-1]) == others
    assert chart["totals"][-1] == str(october.invoice_total)


def test_each_chart_has_its_figures_as_a_table_and_a_text_alternative(world):
    response = _page(world, "analyst", period="2026-10")
    html = response.content.decode()
    for chart_id in ("spend-by-modality", "spend-by-cost-center"):
        canvas = re.search(rf'<canvas id="{chart_id}"[^>]*>', html).group(0)
        assert 'role="img"' in canvas and 'aria-label="Stacked bar chart of spend by' in canvas
    october = world["october"]
    # Each table: a row per series, a column per month (a dash where no run), the months' totals below.
    months = [row for row in table_rows(response) if len(row) == 7]
    assert months[0] == ["Modality", "2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10"]
    totals = [row for row in months if row[0] == "Total"]
    assert totals == [["Total", "—", "—", "—", "—", "—", f"${october.invoice_total}"]] * 2
    assert ["Unallocated", "—", "—", "—", "—", "—", f"${october.unallocated}"] in months


def test_the_reconciliation_is_the_runs_check_per_provider(world):
    run = world["october"]
    rows = dashboard_reconciliation(run=run)
    check = run.reconciliation.get(provider="acme-ai", model="")
    assert [row["provider"] for row in rows] == ["acme-ai"]
    assert rows[0]["usage_rated"] == str(check.rated_cost.quantize(Decimal("0.01")))
    assert rows[0]["usage_invoiced"] == str(check.invoice_cost.quantize(Decimal("0.01")))
    assert rows[0]["within_tolerance"] is check.within_tolerance
    assert Decimal(rows[0]["invoiced"]) == run.invoice_total


def test_a_superseded_run_is_not_counted(world):
    again = allocation_run_execute(period=NOVEMBER, actor=world["users"]["approver"])
    assert AllocationRun.objects.filter(period=str(NOVEMBER)).count() == 2
    chart = _chart(_page(world, "analyst"), "spend-by-cost-center")
    assert chart["runs"][-1] == again.pk and chart["totals"][-1] == "13.00"


def test_a_month_without_a_run_shows_the_months_before_it(world):
    response = _page(world, "analyst", period="2026-12")
    assert response.status_code == 200
    text = page_text(response)
    assert "No allocation run of 2026-12 yet" in text
    chart = _chart(response, "spend-by-modality")
    assert chart["months"][-1] == "2026-12" and chart["totals"][-3:] == [
        str(world["october"].invoice_total),
        "13.00",
        None,
    ]


def test_a_running_allocation_shows_its_progress(world):
    progress_start(NOVEMBER, world["users"]["approver"], state="running", step="rating usage")
    text = page_text(_page(world, "analyst"))
    assert "Running" in text and "Rating usage; started by fiona" in text


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "9999-12"])
def test_a_period_that_is_no_month_is_a_400_naming_it(world, text):
    response = _page(world, "analyst", period=text)
    assert response.status_code == 400
    assert "The month could not be shown" in page_text(response)


def test_who_has_nothing_to_see_is_told_whom_to_ask(world, django_user_model):
    assert "no role yet" in page_text(_page(world, "nobody"))
    loner = django_user_model.objects.create_user(username="loner")
    loner.groups.add(Group.objects.get(name="team_member"))
    client = Client()
    client.force_login(loner)
    assert "not a member of any cost center" in page_text(client.get(reverse("home")))


def test_a_team_member_waits_until_a_month_is_allocated(tmp_path, django_user_model):
    from tests.allocation.runs_world import build_org

    build_org()
    member = django_user_model.objects.create_user(username="member")
    member.groups.add(Group.objects.get_or_create(name="team_member")[0])
    membership_grant(username="member", cost_center_code="CC-110")
    client = Client()
    client.force_login(member)
    assert "No allocation has run yet" in page_text(client.get(reverse("home")))


def test_the_chart_library_is_served_from_this_site(world):
    found = finders.find(CHART_LIBRARY)
    assert found and Path(found).read_text(encoding="utf-8").startswith("/*!\n * Chart.js v4.")
    assert finders.find("vendor/chartjs/LICENSE.md") and finders.find("dashboard.js")
    assert "chart.js" in (Path(settings.BASE_DIR) / "static" / "vendor" / "README.md").read_text().lower()

    for who in ("analyst", "member"):
        html = _page(world, who).content.decode()
        assert f'src="{static(CHART_LIBRARY)}"' in html and f'src="{static("dashboard.js")}"' in html
        # Every address the page loads or links to is on this site: no CDN, no other host.
        addresses = re.findall(r'\b(?:src|href|action)="([^"]*)"', html)
        assert addresses and all(re.match(r"(/(?!/)|\?|#)", address) for address in addresses), addresses
        assert not re.search(r"https?://|//cdn", html.replace("http://www.w3.org", ""))
    script = Path(finders.find("dashboard.js")).read_text(encoding="utf-8")
    assert "http" not in script
