"""Using the site as a person does, in a real browser: signing in, and checking a page with axe.

axe-core comes inside axe-playwright-python (its axe.min.js), so the check needs no network.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

__all__ = ["AXE_FAILING_IMPACTS", "BROWSER_PASSWORD", "axe_check", "axe_report", "login"]

BROWSER_PASSWORD = "browser-test-password-1"
# The impacts a page may not have (issue 11); minor and moderate ones are reported, not failed.
AXE_FAILING_IMPACTS = frozenset({"serious", "critical"})

_axe = Axe()


def login(page: Page, username: str, password: str = BROWSER_PASSWORD) -> None:
    """Sign in through the /login/ form, as a person does; fails with the form's own error."""
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    errors = page.locator("#login-errors")
    if errors.count():
        pytest.fail(f"{username} could not sign in: {' '.join(errors.inner_text().split())}", pytrace=False)


def axe_report(violations: list[dict]) -> str:
    """Each violation as a reader needs it: rule, impact, what it asks, and each element's selector."""
    lines = []
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
        lines.append(f"    {violation['helpUrl']}")
        for node in violation["nodes"]:
            target = " ".join(str(part) for part in node["target"])
            summary = " ".join((node.get("failureSummary") or "").split())
            lines.append(f"    at {target}" + (f": {summary}" if summary else ""))
    return "\n".join(lines)


def axe_check(page: Page, name: str, *, known: Mapping[str, str] | None = None) -> list[dict]:
    """Run axe on the page as it is now; fail with every serious or critical violation.

    `known` names rules whose violations are left for later, each with the reason (where
    the fix belongs); such a rule must still be violated, so a fixed one is removed from
    the list rather than forgotten. Returns every violation found, of any impact.
    """
    violations = _axe.run(page).response["violations"]
    known = dict(known or {})
    failing = [v for v in violations if v["impact"] in AXE_FAILING_IMPACTS and v["id"] not in known]
    if failing:
        pytest.fail(
            f"axe: {len(failing)} serious or critical violations on {name} ({page.url}):\n{axe_report(failing)}",
            pytrace=False,
        )
    found = {v["id"] for v in violations}
    gone = sorted(rule for rule in known if rule not in found)
    if gone:
        pytest.fail(f"axe: {name} no longer violates {', '.join(gone)}: take it off the known list", pytrace=False)
    return violations
