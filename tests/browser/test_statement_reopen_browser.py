"""Reopening a signed statement in a real browser (issue 13): finance opens the signed
statement, confirms the reopening with a reason, lands on the new draft revision; the old
revision says it is superseded. A member of the cost center reads both and is offered no
reopening. Each page is checked with axe and kept as a screenshot in /tmp/reopen-shots/.
"""

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from chargeback.choices import StatementStatus
from chargeback.models import Statement
from chargeback.services.statements import statements_approve_period, statements_build, statements_submit_period
from tests.browser.browsing import axe_check, login
from tests.chargeback.close_world import MONTH, close_world

SHOTS = Path("/tmp/reopen-shots")
PASSWORD = "x"  # close_world's people all have it
REASON = "The platform fee pool used September's driver."


@pytest.fixture
def world(tmp_path, django_user_model, settings) -> dict:
    """October's statements signed off."""
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    settings.MEDIA_ROOT = tmp_path / "media"
    world = close_world(tmp_path, django_user_model)
    statements_build(period=MONTH, actor=world["approver"])
    statements_submit_period(period=MONTH, actor=world["approver"])
    statements_approve_period(period=MONTH, actor=world["approver"])
    return world


def shoot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def test_finance_reopens_a_signed_statement_and_a_member_reads_both_revisions(page: Page, browser, world):
    old = Statement.objects.get(period=str(MONTH), cost_center__code="CC-110")
    login(page, "fiona", PASSWORD)
    page.goto(f"/statements/{old.pk}/")
    page.get_by_role("link", name="Reopen…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Reopen CC-110's statement for {MONTH}")
    axe_check(page, "statement reopen form")
    shoot(page, "1-reopen-form")
    page.get_by_label("Why it is reopened").fill(REASON)
    with page.expect_navigation():
        page.get_by_role("button", name="Reopen as revision 2").click()
    revision = Statement.objects.get(replaces=old)
    assert page.url.endswith(f"/statements/{revision.pk}/")
    expect(page.locator(".revision")).to_contain_text("Revision 2 — replaces revision 1")
    axe_check(page, "statement revision 2")
    shoot(page, "2-revision-2")
    page.get_by_role("link", name="revision 1").click()
    expect(page.get_by_role("status").filter(has_text="Superseded by")).to_contain_text("revision 2")
    axe_check(page, "superseded statement")
    shoot(page, "3-superseded")
    assert Statement.objects.get(pk=old.pk).status == StatementStatus.SUPERSEDED

    member = browser.new_context(base_url=page.url.split("/statements/")[0]).new_page()
    login(member, "sam", PASSWORD)
    for statement in (old, revision):
        member.goto(f"/statements/{statement.pk}/")
        expect(member.get_by_role("link", name="Reopen…")).to_have_count(0)
    shoot(member, "4-member-sees-revision-2")
