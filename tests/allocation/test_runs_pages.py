"""The allocation pages over HTTP, on the hand-computed scenario of runs_world.

Figures are the scenario's (test_allocation_run.py works them out): invoice 174.56,
allocated 170.12 (chargeback 157.89, showback 12.23), unallocated 4.44 = untagged
3.33 + failed calls 1.11, platform's cost center -8.47.
"""

import csv
import io
import re
import uuid
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from allocation.models import ActivityCount, AllocationLine, AllocationRun
from allocation.services.access import membership_grant
from allocation.services.invoices.ingest import invoice_ingest_file
from allocation.services.runs.run import allocation_run_close, allocation_run_execute, allocation_run_queue
from tests.page_reading import page_text, table_rows

from .runs_world import (
    MONTH,
    PERIOD,
    SCENARIO_INVOICE,
    build_mapping,
    build_org,
    build_prices,
    build_run,
    invoice_csv,
    load_invoice,
    load_usage,
    make_approver,
    scenario_events,
    usage,
)

MINUS = "\u2212"
RUNS_URL = reverse("allocation-runs")


@pytest.fixture(autouse=True)
def own_cache(settings):
    """A cache of this test's own: a run's progress lives there, and must not leak between tests."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"pages-{uuid.uuid4()}"}
    }


@pytest.fixture(autouse=True)
def user_runs_allocations(request):
    """The logged-in user is a finance analyst, who may run allocations (one test says otherwise)."""
    if "django_db" not in {m.name for m in request.node.iter_markers()} and "db" not in request.fixturenames:
        return
    from django.contrib.auth.models import Group

    user = request.getfixturevalue("user")
    user.groups.add(Group.objects.get_or_create(name="finance_analyst")[0])


def build_world(tmp_path, django_user_model, *, mapping: bool = True) -> dict:
    centers = build_org()
    build_prices()
    approver = make_approver(django_user_model)
    if mapping:
        build_mapping(tmp_path, approver)
    load_usage(scenario_events())
    load_invoice(tmp_path, SCENARIO_INVOICE)
    ActivityCount.objects.create(period=MONTH, driver="jobs_run", cost_center=centers["CC-110"], count=3)
    ActivityCount.objects.create(period=MONTH, driver="jobs_run", cost_center=centers["CC-130"], count=1)
    return {"centers": centers, "approver": approver}


@pytest.fixture
def world(db, tmp_path, django_user_model) -> dict:
    return build_world(tmp_path, django_user_model)


@pytest.fixture
def run(world) -> AllocationRun:
    return allocation_run_execute(period=MONTH, actor=world["approver"])


def page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def csv_rows(response) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


# --- access ----------------------------------------------------------------------


@pytest.mark.django_db
def test_every_allocation_page_needs_a_login(client, run):
    for url in (
        RUNS_URL,
        reverse("allocation-run", args=[run.pk]),
        reverse("allocation-run-lines", args=[run.pk]),
        reverse("allocation-run-lines-csv", args=[run.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(f"{reverse('login')}?next=")
    assert client.post(RUNS_URL, {"period": PERIOD}).status_code == 302
    assert AllocationRun.objects.count() == 1


@pytest.mark.django_db
def test_an_unknown_run_is_not_found(client_logged_in):
    assert client_logged_in.get(reverse("allocation-run", args=[999])).status_code == 404
    assert client_logged_in.get(reverse("allocation-run-lines-csv", args=[999])).status_code == 404


# --- the period page -------------------------------------------------------------


@pytest.mark.django_db
def test_period_page_opens_on_the_latest_month_with_usage_and_offers_a_run(client_logged_in, world):
    html = page(client_logged_in, RUNS_URL)
    assert "<title>Allocation 2026-10 · AI spend chargeback</title>" in html
    assert 'value="2026-10"' in html
    assert "Run allocation for 2026-10" in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert "No allocation run of 2026-10 yet." in html
    assert "data-poll=" not in html


@pytest.mark.django_db
def test_period_page_shows_the_current_run_headline(client_logged_in, run):
    html = page(client_logged_in, f"{RUNS_URL}?period={PERIOD}")
    for figure in ("$174.56", "$157.89", "$12.23", "$4.44", "Within tolerance"):
        assert figure in html
    assert "$174.56 invoiced = $170.12 allocated + $4.44 unallocated" in html
    assert reverse("allocation-run", args=[run.pk]) in html
    assert run.fingerprint[:12] in html
    assert "<td>fiona</td>" in html


@pytest.mark.django_db
def test_a_malformed_period_is_refused_with_the_selectors_message(client_logged_in, world):
    response = client_logged_in.get(f"{RUNS_URL}?period=2026-13")
    assert response.status_code == 400
    assert "period &#x27;2026-13&#x27; is not YYYY-MM" in response.content.decode()


# --- running it --------------------------------------------------------------------
# transaction=True: the service queues the task on commit, so the run (eager without a
# broker) happens inside the POST only when the request really commits. serialized_rollback
# restores the unit catalog the migrations seed, which the flush after such a test empties.


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_button_runs_the_allocation_and_the_run_appears(client_logged_in, user, tmp_path, django_user_model):
    build_world(tmp_path, django_user_model)

    response = client_logged_in.post(RUNS_URL, {"period": PERIOD})

    assert response.status_code == 302
    assert response["Location"] == f"{RUNS_URL}?period={PERIOD}"
    run = AllocationRun.objects.get()
    assert (run.period, run.status, run.created_by, run.invoice_total) == (
        PERIOD,
        "completed",
        user,
        Decimal("174.56"),
    )
    html = page(client_logged_in, response["Location"])
    assert f"Allocated 2026-10 as run #{run.pk}: $174.56 invoiced, $170.12 on cost centers, $4.44 unallocated." in html
    assert f'href="{reverse("allocation-run", args=[run.pk])}"' in html
    assert "Test User" in html


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_without_a_signed_mapping_version_the_run_is_refused_with_the_services_message(
    client_logged_in, tmp_path, django_user_model
):
    build_world(tmp_path, django_user_model, mapping=False)

    response = client_logged_in.post(RUNS_URL, {"period": PERIOD}, follow=True)

    html = response.content.decode()
    assert "The allocation of 2026-10 did not run. No signed mapping version is in force for 2026-10" in html
    assert html.count("signed mapping version is in force") == 1  # the message, not also a failure box
    assert "message--error" in html
    assert not AllocationRun.objects.exists()


@pytest.mark.django_db
def test_a_closed_period_offers_no_run_and_refuses_one(client_logged_in, run):
    allocation_run_close(run=run)
    html = page(client_logged_in, f"{RUNS_URL}?period={PERIOD}")
    assert "2026-10 is closed" in html
    assert "Run allocation for 2026-10" not in html

    response = client_logged_in.post(RUNS_URL, {"period": PERIOD}, follow=True)
    assert f"2026-10 is closed: a statement from allocation run #{run.pk} was approved" in response.content.decode()
    assert AllocationRun.objects.count() == 1


@pytest.mark.django_db
def test_a_queued_run_shows_its_progress_and_the_poll_gets_the_partial(client_logged_in, world):
    # In a test's transaction the queued task never starts: the run stays queued.
    allocation_run_queue(period=MONTH, actor=world["approver"])

    html = page(client_logged_in, f"{RUNS_URL}?period={PERIOD}")
    assert 'id="allocation-period" data-poll="3000"' in html
    assert "Waiting for a worker; started by fiona" in html
    assert '<progress value="0" max="100"' in html
    assert 'http-equiv="refresh"' in html  # without JavaScript the page reloads itself

    poll = client_logged_in.get(f"{RUNS_URL}?period={PERIOD}", headers={"X-Requested-With": "fetch"})
    fragment = poll.content.decode()
    assert "<html" not in fragment
    assert fragment.lstrip().startswith('<div id="allocation-period" data-poll="3000">')
    assert "X-Requested-With" in poll["Vary"]

    response = client_logged_in.post(RUNS_URL, {"period": PERIOD}, follow=True)
    assert "did not run. An allocation run of 2026-10 is already queued" in response.content.decode()


@pytest.mark.django_db
def test_a_later_run_supersedes_and_the_old_one_links_to_it(client_logged_in, run, world):
    newer = allocation_run_execute(period=MONTH, actor=world["approver"])

    html = page(client_logged_in, f"{RUNS_URL}?period={PERIOD}")
    assert html.count("Superseded</span>") == 1
    assert html.count("Current</span>") == 1
    html = page(client_logged_in, reverse("allocation-run", args=[run.pk]))
    assert "This run is superseded" in html
    assert f'<a href="{reverse("allocation-run", args=[newer.pk])}">#{newer.pk}</a>' in html


# --- one run -----------------------------------------------------------------------


@pytest.mark.django_db
def test_run_page_shows_providers_reasons_cost_centers_and_inputs(client_logged_in, run):
    html = page(client_logged_in, reverse("allocation-run", args=[run.pk]))

    assert f"<title>Allocation run #{run.pk} 2026-10 · AI spend chargeback</title>" in html
    # Provider acme-ai: invoice 174.56, usage invoiced 69.69 against 69.00 rated.
    for figure in ("$174.56", "$69.69", "$69.00", f"{MINUS}$0.69", f"{MINUS}0.99%", "$170.12", "$4.44"):
        assert figure in html, figure
    # The unallocated bucket, by reason, in plain words.
    assert "Untagged usage no rule maps" in html
    assert "$3.33" in html
    assert "Failed or moderated calls of a shared service" in html
    assert "$1.11" in html
    assert "the provider bills them, but the service does not charge its callers" in html
    # Cost centers, the platform's margin and spreads a credit, each linking to its lines.
    assert f'class="num negative">{MINUS}$8.47</td>' in html
    for code, total in (("CC-110", "$68.00"), ("CC-120", "$63.86"), ("CC-130", "$46.73")):
        assert f"{reverse('allocation-run-lines', args=[run.pk])}?cost_center={code}" in html
        assert total in html
    # Inputs and fingerprint.
    for text in ("LIST-ACME v1", "RC-PLATFORM v1", "acme-ai ACME-2026-10", "2.00%", run.fingerprint):
        assert text in html, text
    assert '<table class="data">' in html and "<caption>" in html and 'scope="row"' in html


@pytest.mark.django_db
def test_lines_csv_has_every_line_and_adds_up_to_the_invoice(client_logged_in, run):
    response = client_logged_in.get(reverse("allocation-run-lines-csv", args=[run.pk]))

    assert f'filename="allocation-run-{run.pk}-2026-10-lines.csv"' in response["Content-Disposition"]
    header, *rows = csv_rows(response)
    assert header[:5] == ["run", "period", "provider", "invoice_id", "cost_center"]
    assert header[-1] == "amount"
    assert len(rows) == AllocationLine.objects.filter(run=run).count()
    assert sum(Decimal(row[-1]) for row in rows) == Decimal("174.56")
    unallocated = [row for row in rows if not row[header.index("cost_center")]]
    assert sum(Decimal(row[-1]) for row in unallocated) == Decimal("4.44")
    direct = next(
        row
        for row in rows
        if row[header.index("cost_center")] == "CC-110"
        and row[header.index("method")] == "direct"
        and row[header.index("category")] == "usage"
        and row[header.index("unit")] == "input_token"
    )
    team, quantity = direct[header.index("team")], direct[header.index("quantity")]
    assert (team, quantity, direct[-1]) == ("search", "10000000", "10.10")


@pytest.mark.django_db
def test_a_cost_centers_lines_page_and_csv_hold_only_its_lines(client_logged_in, run):
    url = reverse("allocation-run-lines", args=[run.pk])
    html = page(client_logged_in, f"{url}?cost_center=CC-100")
    count = AllocationLine.objects.filter(run=run, cost_center__code="CC-100").count()
    assert "Lines of CC-100 Platform" in html
    assert f"{count} lines of run #{run.pk} match the filters, adding up to" in html
    assert f"{MINUS}$8.47" in html
    assert "?cost_center=CC-100" in html  # the filtered download

    rows = csv_rows(client_logged_in.get(f"{reverse('allocation-run-lines-csv', args=[run.pk])}?cost_center=CC-100"))
    assert len(rows) == count + 1
    assert {row[4] for row in rows[1:]} == {"CC-100"}
    assert sum(Decimal(row[-1]) for row in rows[1:]) == Decimal("-8.47")

    html = page(client_logged_in, f"{url}?reason=untagged")
    assert "Unallocated lines: untagged usage no rule maps" in html
    assert "$3.33" in html
    assert client_logged_in.get(f"{url}?reason=nonsense").status_code == 404
    assert client_logged_in.get(f"{url}?cost_center=CC-999").status_code == 404


@pytest.mark.django_db
def test_the_platform_team_sees_no_run_button_and_a_post_is_refused(client, world, django_user_model):
    from django.contrib.auth.models import Group

    platform = django_user_model.objects.create_user(username="pat", password="x")
    platform.groups.add(Group.objects.get_or_create(name="platform_admin")[0])
    client.force_login(platform)
    body = page(client, f"{RUNS_URL}?period={PERIOD}")
    assert "Run allocation for" not in body
    response = client.post(RUNS_URL, {"period": PERIOD})
    assert response.status_code == 403
    assert "pat may not do this: only finance (approvers and analysts) may" in page_text(response)
    assert not AllocationRun.objects.exists()


def test_a_nul_byte_in_the_lines_filter_is_a_400_not_a_lookup(client_logged_in, run):
    # The lines page looks ?cost_center= up as given; PostgreSQL refused the NUL with a 500.
    response = client_logged_in.get(f"/allocation/runs/{run.pk}/lines/?cost_center=it-platform%00")
    assert response.status_code == 400
    assert "nul_in_request" in response.content.decode()


@pytest.mark.django_db
def test_a_provider_whose_invoice_bills_no_usage_is_not_shown_as_without_invoice(client_logged_in, world, tmp_path):
    """A provider whose invoice lines all go to a shared-cost pool has no invoiced usage to rate
    against, so its variance share is empty; the page once read that as "no invoice"."""
    pooled = (
        "VS-2026-10,vecstore,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,usage,hosting,Hosted vector store,"
        ",,12.00,12.00,,USD\n"
    )
    invoice_ingest_file(path=invoice_csv(tmp_path, pooled, "vecstore.csv"), source_format="csv", provider="vecstore")
    run = allocation_run_execute(period=MONTH, actor=world["approver"])
    assert run.reconciliation.get(provider="vecstore", model="").variance_share is None

    response = client_logged_in.get(reverse("allocation-run", args=[run.pk]))
    rows = {row[0]: row for row in table_rows(response) if row and row[0] in ("acme-ai", "vecstore")}
    vecstore = rows["vecstore"]
    assert "$12.00" in vecstore  # its invoice total
    assert "no invoice" not in vecstore and "no usage invoiced" in vecstore
    assert f"{MINUS}0.99%" in rows["acme-ai"]
    assert "VS-2026-10" in page_text(response)


# --- the lines page's filters --------------------------------------------------------

# An amount with its decimals as a page shows it ("$0" in a sentence is prose, not an amount).
MONEY = re.compile(r"[<>]?\u2212?[$][\d,]+\.\d+")


def _shown_amount(text: str) -> Decimal:
    """'−$8.47' as shown on a page, back to a Decimal."""
    return Decimal(text.replace(MINUS, "-").replace("$", "").replace(",", ""))


def _lines_csv(client, run: AllocationRun, query: str) -> list[list[str]]:
    return csv_rows(client.get(f"{reverse('allocation-run-lines-csv', args=[run.pk])}?{query}"))


@pytest.mark.django_db
def test_the_lines_page_offers_a_filter_of_each_key_with_the_values_the_run_holds(client_logged_in, run):
    response = client_logged_in.get(reverse("allocation-run-lines", args=[run.pk]))
    html = response.content.decode()
    for name in ("cost_center", "reason", "provider", "modality", "team", "feature", "environment", "treatment"):
        assert f'name="{name}"' in html, name
    assert '<option value="CC-110">CC-110 Search</option>' in html
    assert '<option value="eval">Evaluation</option>' in html
    assert '<option value="showback">Showback</option>' in html
    assert '<option value="-">(blank)</option>' in html  # the untagged usage's team
    assert '<option value="staging">' not in html  # no line of the run is in staging


@pytest.mark.django_db
def test_filtering_narrows_the_lines_and_the_csv_holds_the_same_lines(client_logged_in, run):
    url = reverse("allocation-run-lines", args=[run.pk])
    everything = AllocationLine.objects.filter(run=run)
    cases = {
        "environment=eval": everything.filter(environment="eval"),
        "treatment=showback": everything.filter(treatment="showback"),
        "team=platform&treatment=chargeback": everything.filter(team="platform", treatment="chargeback"),
        "team=-": everything.filter(team=""),
        "provider=acme-ai&reason=untagged": everything.filter(cost_center__isnull=True, reason="untagged"),
        "cost_center=CC-110&feature=web": everything.filter(cost_center__code="CC-110", feature="web"),
    }
    for query, expected in cases.items():
        assert 0 < expected.count() < everything.count(), query
        total = sum(line.amount for line in expected)
        response = client_logged_in.get(f"{url}?{query}")
        assert response.status_code == 200, query
        text = page_text(response)
        assert f"{expected.count()} line{'s' if expected.count() != 1 else ''} of run #{run.pk} match" in text, query
        body_rows = [row for row in table_rows(response) if len(row) >= 8][1:]  # less the head; the total spans
        assert len(body_rows) == expected.count(), query
        assert sum(_shown_amount(row[-1]) for row in body_rows) == sum(round(line.amount, 2) for line in expected)
        # The page's download link carries its filters, and the CSV holds the page's lines.
        link = re.search(r'href="([^"]*lines\.csv[^"]*)"', response.content.decode()).group(1).replace("&amp;", "&")
        assert parse_qs(urlsplit(link).query) == parse_qs(query), query
        header, *rows = _lines_csv(client_logged_in, run, query)
        assert len(rows) == expected.count(), query
        assert sum(Decimal(row[-1]) for row in rows) == total, query
        keys = [(row[header.index("team")], row[header.index("feature")], row[-1]) for row in rows]
        assert sorted(keys) == sorted((line.team, line.feature, f"{line.amount:.2f}") for line in expected), query


@pytest.mark.django_db
def test_an_unknown_filter_value_is_refused_beside_its_field(client_logged_in, run):
    url = reverse("allocation-run-lines", args=[run.pk])
    response = client_logged_in.get(f"{url}?environment=moon")
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert "No lines of run" not in response.content.decode()
    refused = client_logged_in.get(f"{reverse('allocation-run-lines-csv', args=[run.pk])}?environment=moon")
    assert refused.status_code == 400 and b"environment" in refused.content
    assert client_logged_in.get(f"{url}?cost_center=CC-999").status_code == 404


# --- money to the cent ---------------------------------------------------------------


@pytest.mark.django_db
def test_amounts_on_the_run_pages_are_to_the_cent_even_for_sub_cent_rated_costs(
    client_logged_in, tmp_path, django_user_model
):
    # 1,234 tokens at $1 per 1M: a rated cost of $0.001234, on a line and in the provider's rated usage.
    tiny = usage("tiny-1", "input_token", 1_234, team="search", feature="autocomplete", environment="production")
    run = build_run(tmp_path, django_user_model, extra_events=(tiny,))
    line = AllocationLine.objects.get(run=run, feature="autocomplete")
    assert line.rated_cost == Decimal("0.001234")
    assert run.reconciliation.get(model="").rated_cost == Decimal("69.001234")
    pages = {
        "run": reverse("allocation-run", args=[run.pk]),
        "lines": reverse("allocation-run-lines", args=[run.pk]) + "?cost_center=CC-110",
        "period": f"{RUNS_URL}?period={PERIOD}",
        "usage": reverse("usage-overview") + f"?period={PERIOD}",
        "unpriced": reverse("unpriced-usage") + f"?period={PERIOD}",
    }
    for name, url in pages.items():
        response = client_logged_in.get(url)
        assert response.status_code == 200, name
        text = page_text(response).replace("&lt;", "<")
        figures = MONEY.findall(text)
        assert figures, name
        wrong = [figure for figure in figures if not re.fullmatch(r"[<>]?\u2212?\$[\d,]+\.\d\d", figure)]
        assert not wrong, (name, wrong)
    lines = page_text(client_logged_in.get(pages["lines"])).replace("&lt;", "<")
    assert "<$0.01" in lines and "$0.001234" not in lines and "$0.0012" not in lines
    run_page = page_text(client_logged_in.get(pages["run"]))
    assert "$69.00" in run_page and "69.001234" not in run_page


@pytest.mark.django_db
def test_a_team_member_filters_only_their_own_lines(client, run, django_user_model):
    member = django_user_model.objects.create_user(username="sam", password="x")
    member.groups.add(Group.objects.get_or_create(name="team_member")[0])
    membership_grant(username="sam", cost_center_code="CC-110")
    client.force_login(member)
    url = reverse("allocation-run-lines", args=[run.pk])
    response = client.get(url)
    html = response.content.decode()
    assert "<h1>Your lines</h1>" in html
    assert '<option value="CC-110">CC-110 Search</option>' in html and "CC-120" not in html
    assert 'name="reason"' not in html  # their lines are never unallocated
    assert '<option value="research">' not in html  # another cost center's team is not offered
    assert client.get(f"{url}?team=research").status_code == 400
    own = AllocationLine.objects.filter(run=run, cost_center__code="CC-110", feature="web")
    rows = csv_rows(client.get(f"{reverse('allocation-run-lines-csv', args=[run.pk])}?feature=web"))
    assert len(rows) - 1 == own.count() > 0
