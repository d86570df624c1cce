"""The whole close through Django's test client: finance builds, overrides, signs off
and closes; a team member reads their statement, drills down to the calls, downloads
it and files a dispute; finance decides it."""

import io
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from openpyxl import load_workbook

from chargeback.choices import DisputeStatus, PeriodStatus, StatementStatus
from chargeback.models import AccountingPeriod, Dispute, Statement
from chargeback.services.statements import statements_build
from chargeback.views import statements as statement_pages
from pricing.csv_export import csv_cell_restore
from tests.chargeback.close_world import MONTH, close_world


@pytest.fixture
def world(db, tmp_path, django_user_model, settings):
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    settings.MEDIA_ROOT = tmp_path / "media"
    return close_world(tmp_path, django_user_model)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def follow(client: Client, url: str, data: dict | None = None) -> str:
    response = client.post(url, data or {}, follow=True)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_finance_closes_the_month_in_the_web_ui(world):
    run = world["run"]
    run.is_flagged = True
    run.save(update_fields=["is_flagged"])
    finance = signed_in(world["approver"])
    close_url = reverse("statements") + f"?period={MONTH}"
    assert "No statements for 2026-10 yet" in finance.get(close_url).content.decode()
    body = follow(finance, reverse("statements-build"), {"period": str(MONTH)})
    assert "are up to date with its current allocation run" in body
    assert Statement.objects.filter(period=str(MONTH), status=StatementStatus.DRAFT).count() == 4
    follow(finance, reverse("statements-submit"), {"period": str(MONTH)})
    assert not Statement.objects.filter(status=StatementStatus.DRAFT).exists()

    # The flagged run blocks sign-off until an override with a reason.
    statement = Statement.objects.get(cost_center__code="CC-110")
    confirm = finance.get(reverse("statement-approve", args=[statement.pk])).content.decode()
    assert "needs an override first" in confirm
    body = follow(finance, reverse("statement-approve", args=[statement.pk]))
    assert "a finance approver must override it" in body
    assert f"Run #{run.pk} is flagged" in finance.get(close_url).content.decode()
    body = follow(finance, reverse("run-override", args=[run.pk]), {"reason": "VAT is invoiced, not rated"})
    assert "is overridden" in body

    confirm = finance.get(reverse("statements-approve") + f"?period={MONTH}").content.decode()
    assert "You are about to sign off 4 statements" in confirm
    follow(finance, reverse("statements-approve"), {"period": str(MONTH)})
    assert Statement.objects.filter(status=StatementStatus.APPROVED).count() == 4
    page = finance.get(reverse("statement", args=[statement.pk])).content.decode()
    statement.refresh_from_db()
    assert statement.content_hash in page and "matches the content" in page and "fiona" in page.lower()
    dashboard = finance.get(reverse("home") + f"?period={MONTH}").content.decode()
    assert "Close of 2026-10" in dashboard and "Go to the close of 2026-10" in dashboard
    follow(finance, reverse("period-close"), {"period": str(MONTH)})
    assert AccountingPeriod.objects.get(period=str(MONTH)).status == PeriodStatus.CLOSED
    follow(finance, reverse("period-reopen"), {"period": str(MONTH), "reason": ""})
    assert AccountingPeriod.objects.get(period=str(MONTH)).status == PeriodStatus.CLOSED  # no reason, no reopen


def test_a_team_member_reads_drills_down_downloads_and_disputes(world):
    finance = signed_in(world["approver"])
    follow(finance, reverse("statements-build"), {"period": str(MONTH)})
    follow(finance, reverse("statements-submit"), {"period": str(MONTH)})
    mine = Statement.objects.get(cost_center__code="CC-110")
    theirs = Statement.objects.get(cost_center__code="CC-120")
    member = signed_in(world["member"])

    listing = member.get(reverse("statements") + f"?period={MONTH}").content.decode()
    assert "CC-110" in listing and "CC-120" not in listing and "Actions" not in listing
    assert member.get(reverse("statement", args=[theirs.pk])).status_code == 404
    page = member.get(reverse("statement", args=[mine.pk])).content.decode()
    assert "By modality" in page and "Cost per request and per trace" in page and "Sign off" not in page

    line = mine.lines.filter(feature="web").order_by("-amount").first()
    drill = member.get(reverse("statement-line", args=[mine.pk, line.pk])).content.decode()
    assert "The calls behind it" in drill and "web-1" in drill  # the scenario's call behind search's line

    csv_text = b"".join(member.get(reverse("statement-csv", args=[mine.pk])).streaming_content).decode()
    rows = [row.split(",") for row in csv_text.strip().splitlines()]
    assert rows[0][0] == "period" and len(rows) - 1 == mine.lines.count()
    assert sum(Decimal(csv_cell_restore(row[-2])) for row in rows[1:]) == mine.total
    book = load_workbook(io.BytesIO(member.get(reverse("statement-xlsx", args=[mine.pk])).content))
    lines = list(book["Lines"].iter_rows(min_row=2, values_only=True))
    assert len(lines) == mine.lines.count()
    assert sum(Decimal(str(row[-2])) for row in lines) == mine.total

    assert member.get(reverse("dispute-file", args=[theirs.pk, theirs.lines.first().pk])).status_code == 404
    form = reverse("dispute-file", args=[mine.pk, line.pk])
    refused = member.post(form, {"amount": str(line.amount + 1), "reason": "too much"})
    assert refused.status_code == 400 and "at most the line" in refused.content.decode()
    evidence = SimpleUploadedFile("trace.txt", b"trace abc shows the eval job", content_type="text/plain")
    body = follow(
        member,
        form,
        {
            "amount": "1.00",
            "reason": "an eval job billed as production",
            "evidence_ids": "abc",
            "evidence_file": evidence,
        },
    )
    dispute = Dispute.objects.get()
    assert f"Dispute #{dispute.pk}" in body and dispute.filed_by == world["member"]
    assert member.get(reverse("dispute-evidence", args=[dispute.pk])).status_code == 200

    # Finance sees it in the queue and accepts it, charging it to research.
    queue = finance.get(reverse("disputes")).content.decode()
    assert f"#{dispute.pk}" in queue
    assert member.post(reverse("dispute", args=[dispute.pk]), {"decision": "reject", "reason": "no"}).status_code == 403
    follow(finance, reverse("dispute", args=[dispute.pk]), {"action": "review"})
    follow(
        finance,
        reverse("dispute", args=[dispute.pk]),
        {"decision": "accept", "reason": "the job was an eval", "counterpart": "CC-130"},
    )
    dispute.refresh_from_db()
    assert dispute.status == DisputeStatus.ACCEPTED
    assert sorted(dispute.adjustments.values_list("cost_center__code", "amount", "period")) == [
        ("CC-110", Decimal("-1.00"), "2026-11"),
        ("CC-130", Decimal("1.00"), "2026-11"),
    ]
    home = member.get(reverse("home") + f"?period={MONTH}").content.decode()
    assert "Your statements of 2026-10" in home
    assert "the job was an eval" in member.get(reverse("dispute", args=[dispute.pk])).content.decode()


def test_an_owner_sees_the_roll_up_of_the_cost_centers_below(world):
    centers = world["centers"]
    centers["CC-120"].parent = centers["CC-110"]
    centers["CC-120"].save()
    finance = signed_in(world["approver"])
    follow(finance, reverse("statements-build"), {"period": str(MONTH)})
    owner = signed_in(world["owner"])
    page = owner.get(reverse("statement-rollup", args=["CC-110"]) + f"?period={MONTH}").content.decode()
    both = Statement.objects.filter(cost_center__code__in=["CC-110", "CC-120"])
    assert "CC-110" in page and "CC-120" in page and "CC-130" not in page
    total = sum(both.values_list("total", flat=True), Decimal(0))
    assert f"${total:,.2f}" in page


def test_a_statement_page_opens_with_its_largest_features_and_shows_all_on_request(world, monkeypatch):
    statements_build(period=MONTH, actor=world["analyst"])
    search = Statement.objects.get(period=str(MONTH), cost_center__code="CC-110")
    every = {(f.team, f.feature) for f in search.features.all()}
    assert len(every) > 2
    monkeypatch.setattr(statement_pages, "UNIT_COSTS_SHOWN", 2)
    member = signed_in(world["member"])

    opened = member.get(reverse("statement", args=[search.pk]))
    assert len(opened.context["unit_costs"]) == 2 and opened.context["unit_costs_count"] > 2
    amounts = [row["amount"] for row in opened.context["unit_costs"]]
    assert amounts == sorted(amounts, reverse=True)
    assert "?features=all#unit-heading" in opened.content.decode()
    everything = member.get(reverse("statement", args=[search.pk]) + "?features=all")
    assert len(everything.context["unit_costs"]) == everything.context["unit_costs_count"]
    assert "?features=all#unit-heading" not in everything.content.decode()
