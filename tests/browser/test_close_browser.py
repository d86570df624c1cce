"""The monthly close in a real browser (issue 11): finance overrides a flagged run and signs
a statement off; a member of its cost center files a dispute on one of its lines. The
dashboard, the statement and the dispute form are each checked with axe.

The world is close_world's October 2026 (run #1, flagged here), its statements built and
sent for review before the browser opens. Every page is kept as a screenshot in
/tmp/close-shots/ for a person to look at.
"""

import re
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from chargeback.choices import DisputeStatus, StatementStatus
from chargeback.models import Dispute, Statement
from chargeback.services.statements import statement_content_hash, statements_build, statements_submit_period
from tests.browser.browsing import axe_check, login
from tests.chargeback.close_world import MONTH, close_world

SHOTS = Path("/tmp/close-shots")
PASSWORD = "x"  # close_world's people all have it


@pytest.fixture
def world(tmp_path, django_user_model, settings) -> dict:
    """October allocated by a run beyond the reconciliation's tolerance, its four
    statements in review."""
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    settings.MEDIA_ROOT = tmp_path / "media"
    world = close_world(tmp_path, django_user_model)
    world["run"].is_flagged = True
    world["run"].save(update_fields=["is_flagged"])
    statements_build(period=MONTH, actor=world["approver"])
    statements_submit_period(period=MONTH, actor=world["approver"])
    return world


def heading(page: Page):
    return page.get_by_role("heading", level=1)


def shoot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def log_out(page: Page) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()


def test_finance_overrides_and_signs_off_then_a_member_disputes_a_line(page: Page, world):
    run = world["run"]
    mine = Statement.objects.get(period=str(MONTH), cost_center__code="CC-110")
    theirs = Statement.objects.get(period=str(MONTH), cost_center__code="CC-120")
    assert mine.status == StatementStatus.IN_REVIEW

    # Finance: the dashboard, then the close page with the flagged run's banner.
    login(page, "fiona", PASSWORD)
    page.goto(f"/?period={MONTH}")
    expect(heading(page)).to_contain_text(f"Finance dashboard {MONTH}")
    shoot(page, "01-finance-dashboard")
    axe_check(page, "finance's dashboard")

    page.goto(f"/close/?period={MONTH}")
    expect(heading(page)).to_contain_text(f"Monthly close {MONTH}")
    banner = page.get_by_role("note").filter(has_text=f"Run #{run.pk} is flagged")
    expect(banner).to_be_visible()
    shoot(page, "02-close-flagged")
    axe_check(page, "the close page with a flagged run")

    banner.get_by_label("Reason for the override").fill("VAT is invoiced, not rated")
    with page.expect_navigation():
        banner.get_by_role("button", name=f"Override run #{run.pk}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Run #{run.pk}'s reconciliation is overridden")
    expect(page.get_by_role("note")).to_have_count(0)
    expect(page.get_by_role("region", name="Actions")).to_contain_text(f"#{run.pk} (flagged, overridden)")
    shoot(page, "03-close-overridden")

    # CC-110's statement, and its sign-off through the confirmation page.
    page.get_by_role("link", name="CC-110", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/statements/{mine.pk}/$"))
    expect(heading(page)).to_contain_text(f"CC-110 Search {MONTH}")
    expect(page.locator(".page-head")).to_contain_text("In review")
    shoot(page, "04-statement-in-review")
    axe_check(page, "a statement in review (finance)")

    page.get_by_role("link", name="Sign off…").click()
    expect(page).to_have_url(re.compile(rf"/statements/{mine.pk}/approve/$"))
    expect(heading(page)).to_have_text(f"Sign off CC-110's statement for {MONTH}")
    expect(page.get_by_role("alert")).to_have_count(0)  # the override lifted the block
    expected_hash = statement_content_hash(mine)
    expect(page.get_by_text(expected_hash)).to_be_visible()
    shoot(page, "05-sign-off-confirmation")
    axe_check(page, "the sign-off confirmation")

    with page.expect_navigation():
        page.get_by_role("button", name=re.compile(r"^Sign off \$")).click()
    expect(page).to_have_url(re.compile(rf"/statements/{mine.pk}/$"))
    expect(page.get_by_role("status")).to_contain_text("signed off")
    expect(page.locator(".page-head")).to_contain_text("Approved")
    signoff = page.get_by_role("region", name="Sign-off")
    expect(signoff).to_contain_text("Approved byfiona")
    expect(signoff).to_contain_text(expected_hash)
    expect(signoff).to_contain_text("matches the content")
    expect(signoff).to_contain_text("VAT is invoiced, not rated")
    expect(page.get_by_role("link", name="Sign off…")).to_have_count(0)
    shoot(page, "06-statement-approved")

    mine.refresh_from_db()
    assert mine.status == StatementStatus.APPROVED
    assert mine.approved_by == world["approver"] and mine.approved_at is not None
    assert mine.content_hash == expected_hash == statement_content_hash(mine)
    theirs.refresh_from_db()
    assert theirs.status == StatementStatus.IN_REVIEW  # only the one statement was signed off

    # Sam, a member of CC-110: the same statement, a dispute on its largest web line.
    log_out(page)
    login(page, "sam", PASSWORD)
    page.goto(f"/close/?period={MONTH}")
    expect(heading(page)).to_contain_text(f"Your statements {MONTH}")
    statements = page.get_by_role("region", name="Statements")
    expect(statements).not_to_contain_text("CC-120")
    shoot(page, "07-member-statements")
    statements.get_by_role("link", name="CC-110", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/statements/{mine.pk}/$"))
    expect(page.get_by_role("link", name="Sign off…")).to_have_count(0)
    shoot(page, "08-member-statement")
    axe_check(page, "a signed-off statement (team member)")

    line = mine.lines.filter(feature="web").order_by("-amount").first()
    page.get_by_role("link", name=f"Dispute line {line.pk}", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/statements/{mine.pk}/lines/{line.pk}/dispute/$"))
    expect(heading(page)).to_have_text(f"Dispute a line of CC-110's statement for {MONTH}")
    expect(page.get_by_label("Amount")).to_have_value(f"{line.amount}")  # what is left of it: all, undisputed
    shoot(page, "09-dispute-form")
    axe_check(page, "the dispute form")

    page.get_by_label("Amount").fill("1.00")
    page.get_by_label("Reason").fill("An eval job was billed as production")
    page.get_by_label("Evidence ids").fill("trace-abc\ntrace-def")
    with page.expect_navigation():
        page.get_by_role("button", name="File the dispute").click()

    dispute = Dispute.objects.get()
    expect(page).to_have_url(re.compile(rf"/disputes/{dispute.pk}/$"))
    expect(page.get_by_role("status")).to_contain_text(f"Dispute #{dispute.pk} is filed")
    expect(heading(page)).to_contain_text(f"Dispute #{dispute.pk} CC-110 {MONTH}")
    expect(page.locator(".page-head")).to_contain_text("Open")
    expect(page.get_by_text("An eval job was billed as production")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("$1.00")
    expect(page.locator("dl.facts")).to_contain_text("trace-def")
    expect(page.get_by_role("link", name=f"CC-110 {MONTH}")).to_have_attribute("href", f"/statements/{mine.pk}/")
    shoot(page, "10-dispute-filed")
    axe_check(page, "a filed dispute")
    assert dispute.amount == Decimal("1.00")
    assert dispute.line == line and dispute.statement == mine
    assert dispute.filed_by == world["member"] and dispute.status == DisputeStatus.OPEN
    assert dispute.evidence_ids.splitlines() == ["trace-abc", "trace-def"]

    # The statement lists it; support's statement stays out of sam's reach.
    page.get_by_role("link", name=f"CC-110 {MONTH}").click()
    expect(page).to_have_url(re.compile(rf"/statements/{mine.pk}/$"))
    disputes = page.get_by_role("region", name="Disputes")
    expect(disputes.get_by_role("link", name=f"#{dispute.pk}")).to_be_visible()
    expect(disputes).to_contain_text("sam")

    response = page.goto(f"/statements/{theirs.pk}/")
    assert response is not None and response.status == 404
    expect(heading(page)).to_have_text("Page not found")
    expect(page.get_by_text("CC-120")).to_have_count(0)
    shoot(page, "11-other-statement-refused")
    axe_check(page, "the page for a statement that is not sam's")
