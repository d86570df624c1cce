"""Fixtures for the browser tests: Debian's chromium, driven by Playwright (pytest-playwright),
against pytest-django's live server.

- Every test here is marked `browser` (tests/conftest.py) and runs only when asked for:
  `make test-browser`.
- The browser is chromium at CHROMIUM_PATH (default /usr/bin/chromium), never Playwright's
  own download. Without it the tests skip, except under CI (`CI=true`), where they fail.
- `page` (pytest-playwright's) opens paths on the live server: `page.goto("/login/")`; a
  second user side by side gets their own `new_context()` (pytest-playwright's fixture).
- Each test has a transactional test database, so the live server's thread sees what the
  test wrote; it is restored to the migrations' data (the unit catalog) before each test.
- `make_user(username, *roles, memberships={code: role})` makes a user with role groups and
  cost-center memberships; `login(page, username)` and `axe_check(page, name)` are in
  tests/browser/browsing.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from tests.browser.browsing import BROWSER_PASSWORD
from tests.conftest import running_under_ci

DEFAULT_CHROMIUM = "/usr/bin/chromium"
# No sandbox: CI runs as root, where chromium refuses its sandbox. The rest keep a test
# run off the network (the machine has none) and free of first-run and update work.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

ACTION_TIMEOUT_MS = 10_000


def chromium_path() -> str:
    return os.environ.get("CHROMIUM_PATH") or DEFAULT_CHROMIUM


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright's launch arguments (--headed, --slowmo) with Debian's chromium."""
    path = Path(chromium_path())
    if not (path.is_file() and os.access(path, os.X_OK)):
        reason = (
            f"no chromium at {path} for the browser tests: install Debian's (apt-get install chromium) "
            "or point CHROMIUM_PATH at one"
        )
        if running_under_ci():  # as a missing PostgreSQL or broker: a pass of skips would prove nothing
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return {**browser_type_launch_args, "executable_path": str(path), "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def migrated_data(django_db_setup) -> dict[str, str]:
    """The migrations' data (the unit catalog) as Django serialized it when it made the test
    database, for each database, read before Playwright starts (see `playwright`)."""
    from django.db import connections

    return {
        alias: connections[alias]._test_serialized_contents
        for alias in connections
        if hasattr(connections[alias], "_test_serialized_contents")
    }


@pytest.fixture(scope="session")
def playwright(migrated_data, playwright):
    """pytest-playwright's, started after the test database, and made to suit Django.

    Its sync API keeps an asyncio loop running on the test's thread. Django then takes the
    thread for async code: it would refuse every ORM call a test makes (Django's documented
    switch lets these synchronous calls through), and it gives the test new database
    connections, which lack the serialized migrations' data a transactional test restores
    before it starts: they are handed it here.
    """
    from django.db import connections

    for alias, contents in migrated_data.items():
        connections[alias]._test_serialized_contents = contents
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield playwright


@pytest.fixture(scope="session")
def base_url(live_server) -> str:
    """Pages are opened by path on the live server (pytest-playwright's browser_context_args use this)."""
    return live_server.url


@pytest.fixture
def context(context):
    """pytest-playwright's context, failing a stuck action in 10 s rather than 30 (expect waits 5)."""
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    return context


@pytest.fixture(autouse=True)
def browser_database(transactional_db, django_db_serialized_rollback) -> None:
    """A transactional database (the live server's thread must see the test's rows), restored
    to the migrations' data before each test: its flush would otherwise empty the unit catalog."""


@pytest.fixture
def make_user(django_user_model) -> Callable[..., object]:
    """Makes a user with the given role groups (allocation/access.py ROLES) and cost-center
    memberships ({"CC-110": MembershipRole.OWNER}); its password is BROWSER_PASSWORD."""
    from django.contrib.auth.models import Group

    from allocation.access import ROLES
    from allocation.services.access import membership_grant

    def make(username: str, *roles: str, memberships: Mapping[str, str] | None = None, **fields):
        unknown = set(roles) - set(ROLES)
        assert not unknown, f"make_user: {sorted(unknown)} are no roles; roles are {ROLES}"
        user = django_user_model.objects.create_user(username=username, password=BROWSER_PASSWORD, **fields)
        for role in roles:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        for code, membership_role in (memberships or {}).items():
            membership_grant(username=username, cost_center_code=code, role=membership_role)
        return user

    return make
