"""The existing pages in a real browser, each checked with axe: signing in, finance's usage,
allocation run and mapping versions pages, and a team member's home.

The world is runs_world's hand-computed scenario (invoice $174.56, allocated $170.12,
search's cost center CC-110 $68.00), allocated once per test.
"""

import re

import pytest
from playwright.sync_api import Page, expect

from allocation.access import FINANCE_APPROVER, TEAM_MEMBER
from allocation.choices import MembershipRole
from tests.allocation.runs_world import PERIOD, build_run
from tests.browser.browsing import axe_check, login


@pytest.fixture
def run(tmp_path, django_user_model):
    return build_run(tmp_path, django_user_model)


def heading(page: Page):
    return page.get_by_role("heading", level=1)


def section(page: Page, title: str):
    return page.locator("section").filter(has=page.get_by_role("heading", name=title, exact=True))


def test_finance_signs_in_and_sees_usage_the_run_and_the_mappings(page: Page, run, make_user):
    make_user("finance", FINANCE_APPROVER)

    page.goto("/login/")
    axe_check(page, "the sign-in page")

    login(page, "finance")
    expect(heading(page)).to_contain_text(f"Finance dashboard {PERIOD}")  # finance's home
    axe_check(page, "finance's home (the dashboard)")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Usage").click()
    expect(page).to_have_url(re.compile(r"/usage/"))
    expect(heading(page)).to_have_text(f"Usage in {PERIOD}")
    axe_check(page, "the usage overview")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Allocation").click()
    # The runs table's "Run #N" links start with a visually hidden word, whose 1px box is
    # where Playwright would click; the current run's own link has no such part.
    page.get_by_role("link", name=f"Review run #{run.pk}").click()
    expect(page).to_have_url(re.compile(rf"/allocation/runs/{run.pk}/$"))
    expect(heading(page)).to_contain_text(f"Allocation run #{run.pk} of {PERIOD}")
    expect(page.get_by_text("$174.56 invoiced = $170.12 allocated + $4.44 unallocated")).to_be_visible()
    axe_check(page, "the allocation run page")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mappings").click()
    expect(heading(page)).to_have_text("Mapping versions")
    versions = section(page, "Versions")
    expect(versions.get_by_role("row").filter(has_text="Hand-computed scenario")).to_contain_text("Signed off")
    axe_check(page, "the mapping versions page")


def test_a_team_member_starts_at_their_cost_centers_share(page: Page, run, make_user):
    make_user("sofia", TEAM_MEMBER, memberships={"CC-110": MembershipRole.OWNER})

    login(page, "sofia")
    expect(heading(page)).to_contain_text(f"Your cost centers' spend {PERIOD}")  # her home
    axe_check(page, "a team member's dashboard")

    page.get_by_role("link", name=f"See your cost centers' lines in run #{run.pk}").click()
    expect(page).to_have_url(re.compile(rf"/allocation/runs/{run.pk}/$"))
    expect(heading(page)).to_contain_text(f"Your cost centers in {PERIOD}")
    centers = section(page, "Cost centers")
    expect(centers.get_by_role("row").filter(has_text="CC-110")).to_contain_text("$68.00")
    expect(centers).not_to_contain_text("CC-120")  # support's cost center is not hers
    axe_check(page, "a team member's home (their share of the run)")


def test_a_failed_sign_in_says_so_on_an_accessible_page(page: Page, make_user):
    make_user("sofia", TEAM_MEMBER)

    page.goto("/login/")
    page.get_by_label("Username").fill("sofia")
    page.get_by_label("Password").fill("not her password")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("Sign-in failed")
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)
    axe_check(page, "the sign-in page after a wrong password")


# --- the check itself -------------------------------------------------------------


def test_axe_check_names_every_serious_violation_with_its_element(page: Page):
    """A page that breaks two rules: the failure lists both, with what to fix and where."""
    page.goto("/login/")
    page.evaluate(
        """() => {
            const main = document.querySelector("main");
            main.insertAdjacentHTML("beforeend",
                '<input id="nameless-field" type="text">' +
                '<p id="faint-text" style="color:#c8c8c8;background:#ffffff">Hard to read</p>');
        }"""
    )

    with pytest.raises(pytest.fail.Exception) as failure:
        axe_check(page, "a broken page")

    message = str(failure.value)
    assert message.startswith("axe: 2 serious or critical violations on a broken page (")
    assert "- label (critical): Form elements must have labels" in message
    assert "at #nameless-field:" in message
    assert "- color-contrast (serious): Elements must meet minimum color contrast ratio thresholds" in message
    assert "at #faint-text:" in message


def test_axe_check_leaves_a_known_violation_for_later_only_while_it_is_there(page: Page):
    page.goto("/login/")
    page.evaluate("""() => document.querySelector("main").insertAdjacentHTML("beforeend", '<input id="x">')""")

    violations = axe_check(page, "a page with a known gap", known={"label": "fixed by another change"})
    assert [v["id"] for v in violations] == ["label"]

    page.goto("/login/")
    with pytest.raises(pytest.fail.Exception, match="no longer violates label: take it off the known list"):
        axe_check(page, "the sign-in page", known={"label": "fixed by another change"})
