"""Who may see and do what (allocation/access.py), URL by URL and role by role.

The matrix below is the specification written out by hand, apart from the rules in
`URL_RULES`: a change of either that the other does not share fails here.
"""

import json

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from allocation import access
from allocation.models import ApiToken, CostCenter, MappingRule, UsageBatch
from allocation.services.access import api_token_issue, api_token_revoke, membership_grant
from allocation.services.runs.run import allocation_run_execute
from chargeback.models import JournalEntry, Statement
from chargeback.services.disputes import dispute_file
from chargeback.services.statements import statement_approve, statement_submit, statements_build
from pricing.models import PriceBook

from .runs_world import (
    MONTH,
    SCENARIO_INVOICE,
    build_mapping,
    build_org,
    build_prices,
    load_invoice,
    load_usage,
    make_approver,
    scenario_events,
    usage,
)

pytestmark = pytest.mark.django_db

ACTORS = ("anonymous", "nobody", "member", "analyst", "approver", "platform", "gateway", "erp")
SESSION_USERS = {"nobody", "member", "analyst", "approver", "platform"}
FINANCE = {"analyst", "approver"}
COMPANY = FINANCE | {"platform"}
ROLES = COMPANY | {"member"}
FEEDERS = {"platform", "gateway"}
NOBODY: set[str] = set()

# url name -> (who may read, who may write); None: the URL takes no such method.
MATRIX: dict[str, tuple[set[str] | None, set[str] | None]] = {
    "home": (SESSION_USERS, None),
    "favicon": (set(ACTORS), None),
    "usage-overview": (COMPANY, None),
    "usage-batches": (COMPANY, {"platform"}),
    "usage-batch": (COMPANY, None),
    "usage-batch-rejections": (COMPANY, None),
    "organization": (ROLES, None),
    "unpriced-usage": (COMPANY, COMPANY),
    "price-books": (ROLES, None),
    "price-book": (ROLES, None),
    "price-book-diff": (ROLES, None),
    "price-book-export": (ROLES, None),
    "mapping-versions": (COMPANY, COMPANY),
    "mapping-version": (COMPANY, None),
    "mapping-version-preview": (COMPANY, None),
    "mapping-version-export": (COMPANY, None),
    "mapping-version-sign": (None, {"approver"}),
    "mapping-rule-add": (None, COMPANY),
    "mapping-rule-edit": (COMPANY, COMPANY),
    "mapping-rule-delete": (None, COMPANY),
    "mapping-rule-move": (None, COMPANY),
    "allocation-runs": (COMPANY, FINANCE),
    "allocation-run": (ROLES, None),
    "allocation-run-lines": (ROLES, None),
    "allocation-run-lines-csv": (ROLES, None),
    # the monthly close
    "statements": (ROLES, None),
    "statements-build": (None, FINANCE),
    "statements-submit": (None, FINANCE),
    "statements-approve": ({"approver"}, {"approver"}),
    "period-close": (None, {"approver"}),
    "period-reopen": (None, {"approver"}),
    "run-override": (None, {"approver"}),
    "statement": (ROLES, None),
    "statement-submit": (None, FINANCE),
    "statement-return": (None, FINANCE),
    "statement-approve": ({"approver"}, {"approver"}),
    "statement-reopen": ({"approver"}, {"approver"}),
    "statement-csv": (ROLES, None),
    "statement-xlsx": (ROLES, None),
    "statement-pdf": (ROLES, None),
    "statement-line": (ROLES, None),
    "statement-rollup": (ROLES, None),
    "pdf-verify": (SESSION_USERS, SESSION_USERS),
    "dispute-file": ({"member"}, {"member"}),
    "disputes": (ROLES, None),
    "dispute": (ROLES, FINANCE),
    "dispute-evidence": (ROLES, None),
    # the API
    "api-root": (ROLES | {"gateway", "erp"}, None),
    "api-schema": (ROLES | {"gateway", "erp"}, None),
    "api-docs": (ROLES | {"gateway", "erp"}, None),
    "costcenter-list": (ROLES, None),
    "costcenter-detail": (ROLES, None),
    "team-list": (ROLES, None),
    "team-detail": (ROLES, None),
    "feature-list": (ROLES, None),
    "feature-detail": (ROLES, None),
    "tenant-list": (COMPANY, None),
    "tenant-detail": (COMPANY, None),
    "usage-events": (None, FEEDERS),
    "usage-summary": (COMPANY, None),
    "usage-tag-coverage": (COMPANY, None),
    "api-usage-batch-list": (COMPANY | {"gateway"}, FEEDERS),
    "api-usage-batch-detail": (COMPANY | {"gateway"}, None),
    "api-usage-batch-rejections": (COMPANY | {"gateway"}, None),
    "api-allocation-run-list": (COMPANY, FINANCE),
    "api-allocation-run-detail": (COMPANY, None),
    "api-allocation-run-summary": (COMPANY, None),
    "api-allocation-run-progress": (COMPANY, None),
    "api-period-list": (ROLES, None),
    "api-period-detail": (ROLES, None),
    "api-period-close": (None, {"approver"}),
    "api-period-reopen": (None, {"approver"}),
    "api-statement-list": (ROLES, None),
    "api-statement-detail": (ROLES, None),
    "api-statement-lines": (ROLES, None),
    "api-statement-lines-csv": (ROLES, None),
    "api-statement-submit": (None, FINANCE),
    "api-statement-return": (None, FINANCE),
    "api-statement-approve": (None, {"approver"}),
    "api-statement-reopen": (None, {"approver"}),
    "api-dispute-list": (ROLES, {"member"}),
    "api-dispute-detail": (ROLES, None),
    "api-dispute-review": (None, FINANCE),
    "api-dispute-accept": (None, FINANCE),
    "api-dispute-reject": (None, FINANCE),
    # the ledger: company-wide, and the ERP's; the ERP alone acknowledges
    "api-journal-entry-list": (COMPANY | {"erp"}, None),
    "api-journal-entry-detail": (COMPANY | {"erp"}, None),
    "api-journal-entry-csv": (COMPANY | {"erp"}, None),
    "api-journal-entry-acknowledge": (None, {"erp"}),
}
OPEN_TO_ALL = {"login", "logout"}


def _url_names(resolver: URLResolver | None = None, namespace: str = "") -> set[tuple[str, str]]:
    """Every (namespace, name) the URL conf serves, however deep it is included."""
    names: set[tuple[str, str]] = set()
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            names |= _url_names(entry, entry.namespace or namespace)
        elif isinstance(entry, URLPattern):
            names.add((namespace, entry.name or f"<unnamed {entry.pattern}>"))
    return names


def test_every_url_declares_a_rule_and_every_rule_a_url():
    served = _url_names()
    missing = sorted(f"{ns}:{name}" if ns else name for ns, name in served if access.url_rule(name, ns) is None)
    assert not missing, f"URLs without an access rule in allocation/access.py URL_RULES: {missing}"
    names = {name for ns, name in served if not ns} | {f"{ns}:*" for ns, _ in served if ns}
    assert not set(access.URL_RULES) - names, "rules for URLs that no longer exist"


def test_the_matrix_covers_every_rule():
    assert set(MATRIX) | OPEN_TO_ALL | {"admin:*"} == set(access.URL_RULES)


@pytest.fixture
def world(tmp_path, django_user_model) -> dict:
    centers = build_org()
    centers["CC-110"].parent = centers["CC-100"]
    centers["CC-110"].save()
    centers["CC-120"].parent = centers["CC-100"]
    centers["CC-120"].save()
    build_prices()
    approver = make_approver(django_user_model)
    build_mapping(tmp_path, approver)
    load_usage(scenario_events())
    load_invoice(tmp_path, SCENARIO_INVOICE)
    run = allocation_run_execute(period=MONTH, actor=approver)
    users = {"approver": approver}
    for name, role in (("nobody", None), ("member", "team_member"), ("analyst", "finance_analyst")):
        users[name] = django_user_model.objects.create_user(username=name, password="x")
        if role:
            users[name].groups.add(Group.objects.get_or_create(name=role)[0])
    users["platform"] = django_user_model.objects.create_user(username="platform", password="x")
    users["platform"].groups.add(Group.objects.get_or_create(name="platform_admin")[0])
    membership_grant(username="member", cost_center_code="CC-110")
    statements_build(period=MONTH, actor=approver)
    statement = statement_submit(statement=Statement.objects.get(cost_center__code="CC-110"), actor=approver)
    line = statement.lines.order_by("-amount").first()
    dispute = dispute_file(line=line, actor=users["member"], amount=line.amount, reason="not ours")
    # Another cost center's statement signed off: its journal entries are written.
    signed = statement_submit(statement=Statement.objects.get(cost_center__code="CC-120"), actor=approver)
    statement_approve(statement=signed, actor=approver)
    assert JournalEntry.objects.filter(statement=signed).exists()
    tokens = {
        "gateway": api_token_issue(name="gateway", scope="gateway").secret,
        "erp": api_token_issue(name="erp", scope="erp").secret,
    }
    return {
        "run": run,
        "users": users,
        "tokens": tokens,
        "centers": centers,
        "statement": statement,
        "line": line,
        "dispute": dispute,
        "journal_entry": JournalEntry.objects.filter(statement=signed).order_by("id").first(),
    }


def _paths(world: dict) -> dict[str, str]:
    run = world["run"]
    batch = UsageBatch.objects.first()
    rule = MappingRule.objects.filter(version__number=1).first()
    book = PriceBook.objects.get(code="LIST-ACME")
    center = world["centers"]["CC-110"]
    statement = world["statement"]
    team, feature = center.teams.first(), None
    paths = {
        "home": reverse("home"),
        "favicon": reverse("favicon"),
        "usage-overview": reverse("usage-overview"),
        "usage-batches": reverse("usage-batches"),
        "usage-batch": reverse("usage-batch", args=[batch.pk]),
        "usage-batch-rejections": reverse("usage-batch-rejections", args=[batch.pk]),
        "organization": reverse("organization"),
        "unpriced-usage": reverse("unpriced-usage"),
        "price-books": reverse("price-books"),
        "price-book": reverse("price-book", args=[book.code]),
        "price-book-diff": reverse("price-book-diff", args=[book.code]),
        "price-book-export": reverse("price-book-export", args=[book.code, 1, "csv"]),
        "mapping-versions": reverse("mapping-versions"),
        "mapping-version": reverse("mapping-version", args=[1]),
        "mapping-version-preview": reverse("mapping-version-preview", args=[1]),
        "mapping-version-export": reverse("mapping-version-export", args=[1]),
        "mapping-version-sign": reverse("mapping-version-sign", args=[1]),
        "mapping-rule-add": reverse("mapping-rule-add", args=[1]),
        "mapping-rule-edit": reverse("mapping-rule-edit", args=[1, rule.pk]),
        "mapping-rule-delete": reverse("mapping-rule-delete", args=[1, rule.pk]),
        "mapping-rule-move": reverse("mapping-rule-move", args=[1, rule.pk]),
        "allocation-runs": reverse("allocation-runs"),
        "allocation-run": reverse("allocation-run", args=[run.pk]),
        "allocation-run-lines": reverse("allocation-run-lines", args=[run.pk]),
        "allocation-run-lines-csv": reverse("allocation-run-lines-csv", args=[run.pk]),
        "statements": reverse("statements") + f"?period={MONTH}",
        "statements-build": reverse("statements-build"),
        "statements-submit": reverse("statements-submit"),
        "statements-approve": reverse("statements-approve") + f"?period={MONTH}",
        "period-close": reverse("period-close"),
        "period-reopen": reverse("period-reopen"),
        "run-override": reverse("run-override", args=[run.pk]),
        "statement": reverse("statement", args=[statement.pk]),
        "statement-submit": reverse("statement-submit", args=[statement.pk]),
        "statement-return": reverse("statement-return", args=[statement.pk]),
        "statement-approve": reverse("statement-approve", args=[statement.pk]),
        "statement-reopen": reverse("statement-reopen", args=[statement.pk]),
        "statement-csv": reverse("statement-csv", args=[statement.pk]),
        "statement-xlsx": reverse("statement-xlsx", args=[statement.pk]),
        "statement-pdf": reverse("statement-pdf", args=[statement.pk]),
        "statement-line": reverse("statement-line", args=[statement.pk, world["line"].pk]),
        "statement-rollup": reverse("statement-rollup", args=["CC-110"]) + f"?period={MONTH}",
        "pdf-verify": reverse("pdf-verify"),
        "dispute-file": reverse("dispute-file", args=[statement.pk, world["line"].pk]),
        "disputes": reverse("disputes"),
        "dispute": reverse("dispute", args=[world["dispute"].pk]),
        "dispute-evidence": reverse("dispute-evidence", args=[world["dispute"].pk]),
        "api-root": reverse("api-root"),
        "api-schema": reverse("api-schema"),
        "api-docs": reverse("api-docs"),
        "costcenter-list": reverse("costcenter-list"),
        "costcenter-detail": reverse("costcenter-detail", args=[center.pk]),
        "team-list": reverse("team-list"),
        "team-detail": reverse("team-detail", args=[team.pk]),
        "feature-list": reverse("feature-list"),
        "feature-detail": reverse("feature-detail", args=[feature.pk if feature else 1]),
        "tenant-list": reverse("tenant-list"),
        "tenant-detail": reverse("tenant-detail", args=[1]),
        "usage-events": reverse("usage-events"),
        "usage-summary": reverse("usage-summary") + f"?period={MONTH}",
        "usage-tag-coverage": reverse("usage-tag-coverage") + f"?period={MONTH}",
        "api-usage-batch-list": reverse("api-usage-batch-list"),
        "api-usage-batch-detail": reverse("api-usage-batch-detail", args=[batch.pk]),
        "api-usage-batch-rejections": reverse("api-usage-batch-rejections", args=[batch.pk]),
        "api-allocation-run-list": reverse("api-allocation-run-list"),
        "api-allocation-run-detail": reverse("api-allocation-run-detail", args=[run.pk]),
        "api-allocation-run-summary": reverse("api-allocation-run-summary", args=[run.pk]),
        "api-allocation-run-progress": reverse("api-allocation-run-progress") + f"?period={MONTH}",
        "api-period-list": reverse("api-period-list"),
        "api-period-detail": reverse("api-period-detail", args=[MONTH]),
        "api-period-close": reverse("api-period-close", args=[MONTH]),
        "api-period-reopen": reverse("api-period-reopen", args=[MONTH]),
        "api-statement-list": reverse("api-statement-list"),
        "api-statement-detail": reverse("api-statement-detail", args=[statement.pk]),
        "api-statement-lines": reverse("api-statement-lines", args=[statement.pk]),
        "api-statement-lines-csv": reverse("api-statement-lines-csv", args=[statement.pk]),
        "api-statement-submit": reverse("api-statement-submit", args=[statement.pk]),
        "api-statement-return": reverse("api-statement-return", args=[statement.pk]),
        "api-statement-approve": reverse("api-statement-approve", args=[statement.pk]),
        "api-statement-reopen": reverse("api-statement-reopen", args=[statement.pk]),
        "api-dispute-list": reverse("api-dispute-list"),
        "api-dispute-detail": reverse("api-dispute-detail", args=[world["dispute"].pk]),
        "api-dispute-review": reverse("api-dispute-review", args=[world["dispute"].pk]),
        "api-dispute-accept": reverse("api-dispute-accept", args=[world["dispute"].pk]),
        "api-dispute-reject": reverse("api-dispute-reject", args=[world["dispute"].pk]),
        "api-journal-entry-list": reverse("api-journal-entry-list"),
        "api-journal-entry-detail": reverse("api-journal-entry-detail", args=[world["journal_entry"].pk]),
        "api-journal-entry-csv": reverse("api-journal-entry-csv"),
        "api-journal-entry-acknowledge": reverse("api-journal-entry-acknowledge", args=[world["journal_entry"].pk]),
    }
    assert set(paths) == set(MATRIX)
    return paths


def _client(world: dict, actor: str, *, api: bool):
    """A session for a user; a token in the Authorization header for a service account."""
    headers = {"Authorization": f"Bearer {world['tokens'][actor]}"} if actor in world["tokens"] else {}
    client = APIClient(headers=headers) if api else Client(headers=headers)
    if actor in SESSION_USERS:
        client.force_login(world["users"][actor])
    return client


def _refused(response) -> bool:
    """Refused by the access rule: a 401/403, or a page sending the visitor to sign in."""
    if response.status_code in (401, 403):
        return True
    return response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("actor", ACTORS)
def test_each_role_reaches_exactly_the_urls_the_matrix_gives_it(world, actor):
    """Reads first, then writes (an empty form or body, so an allowed write is a 400 or a
    redirect, never a change), URL by URL: pages, downloads and the API alike."""
    paths = _paths(world)
    wrong = []
    for name, (readers, writers) in MATRIX.items():
        api = paths[name].startswith("/api/")
        client = _client(world, actor, api=api)
        for method, audience in (("get", readers), ("post", writers)):
            response = getattr(client, method)(paths[name], {}, **({"format": "json"} if api else {}))
            if audience is None:
                expected = "405 or refused"
                ok = response.status_code == 405 or _refused(response)
            else:
                expected = "allowed" if actor in audience else "refused"
                ok = _refused(response) != (actor in audience)
            if not ok:
                wrong.append(f"{method.upper()} {paths[name]} ({name}): {response.status_code}, expected {expected}")
    assert not wrong, "\n".join(wrong)


def test_a_team_member_sees_only_their_cost_centers_and_an_owner_the_roll_up(world, django_user_model):
    run = world["run"]
    member = _client(world, "member", api=True)
    assert [c["code"] for c in member.get("/api/v1/cost-centers").json()["results"]] == ["CC-110"]
    assert [t["code"] for t in member.get("/api/v1/teams").json()["results"]] == ["search"]
    other = world["centers"]["CC-120"]
    assert member.get(f"/api/v1/cost-centers/{other.pk}").status_code == 404

    owner = django_user_model.objects.create_user(username="olga")
    owner.groups.add(Group.objects.get_or_create(name="team_member")[0])
    membership_grant(username="olga", cost_center_code="CC-100", role="owner")
    client = Client()
    client.force_login(owner)
    body = client.get(reverse("allocation-run", args=[run.pk])).content.decode()
    for code in ("CC-100", "CC-110", "CC-120"):
        assert f">{code}</code>" in body
    assert ">CC-130</code>" not in body
    assert "Providers" not in body and "Reconciliation by model" not in body  # finance's view of the run

    page = Client()
    page.force_login(world["users"]["member"])
    csv_text = b"".join(page.get(reverse("allocation-run-lines-csv", args=[run.pk])).streaming_content).decode()
    centers = {row.split(",")[4] for row in csv_text.splitlines()[1:]}
    assert centers == {"CC-110"}, centers
    assert page.get(reverse("allocation-run-lines", args=[run.pk]) + "?cost_center=CC-130").status_code == 404
    assert page.get(reverse("allocation-run-lines", args=[run.pk]) + "?reason=unallocated").status_code == 200
    unallocated = page.get(reverse("allocation-run-lines-csv", args=[run.pk]) + "?reason=unallocated")
    assert (
        len(b"".join(unallocated.streaming_content).decode().splitlines()) == 1
    )  # the header: no one's lines but theirs
    home = page.get(reverse("home"))  # their cost centers' dashboard, linking to the run
    assert home.status_code == 200 and reverse("allocation-run", args=[run.pk]) in home.content.decode()


def test_the_gateway_feeds_the_ledger_and_sees_only_its_own_batches(world):
    gateway = _client(world, "gateway", api=True)
    answer = gateway.post(
        "/api/v1/usage/events", {"events": [usage("gw-1", "input_token", 10, team="search")]}, format="json"
    )
    assert answer.status_code == 200, answer.content
    batch = UsageBatch.objects.get(pk=answer.json()["batch_id"])
    assert batch.api_token.name == "gateway" and batch.created_by is None
    assert batch.sent_by == "Gateway token gateway"
    listed = gateway.get("/api/v1/usage/batches").json()["results"]
    assert [b["id"] for b in listed] == [batch.pk]
    assert listed[0]["sent_by"] == "Gateway token gateway"
    someone_elses = UsageBatch.objects.exclude(pk=batch.pk).first()
    assert gateway.get(f"/api/v1/usage/batches/{someone_elses.pk}").status_code == 404
    token = ApiToken.objects.get(name="gateway")
    assert token.last_used_at is not None


def test_a_user_sending_events_is_recorded_as_the_sender(world):
    platform = _client(world, "platform", api=True)
    answer = platform.post("/api/v1/usage/events", {"events": [usage("u-1", "input_token", 1)]}, format="json")
    batch = UsageBatch.objects.get(pk=answer.json()["batch_id"])
    assert batch.created_by == world["users"]["platform"] and batch.api_token is None


def test_tokens_are_stored_hashed_shown_once_and_revocable(world):
    issued = api_token_issue(name="ci", scope="gateway")
    token = issued.token
    assert issued.secret.startswith("cbk_") and issued.secret not in (token.digest, token.prefix)
    assert token.digest == access.api_token_digest(issued.secret)
    assert not ApiToken.objects.filter(digest=issued.secret).exists()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert client.get("/api/v1/usage/batches").status_code == 200
    api_token_revoke(prefix=token.prefix)
    refused = client.get("/api/v1/usage/batches")
    assert refused.status_code == 401 and refused.json()["code"] == "authentication_failed"
    client.credentials(HTTP_AUTHORIZATION="Bearer cbk_not-a-token")
    assert client.get("/api/v1/usage/batches").status_code == 401


def test_a_user_token_acts_as_its_user(world):
    secret = api_token_issue(name="laptop", scope="user", username="member").secret
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert [c["code"] for c in client.get("/api/v1/cost-centers").json()["results"]] == ["CC-110"]
    assert client.get(f"/api/v1/usage/summary?period={MONTH}").status_code == 403


def test_the_token_command_prints_the_token_once_and_lists_without_it(world, capsys):
    call_command("api_token", "issue", "--name", "gateway-prod", "--scope", "gateway")
    issued = json.loads(capsys.readouterr().out)
    assert issued["token"].startswith("cbk_") and issued["scope"] == "gateway"
    call_command("api_token", "list")
    listed = capsys.readouterr().out
    assert issued["prefix"] in listed and issued["token"] not in listed
    call_command("api_token", "revoke", issued["prefix"])
    assert json.loads(capsys.readouterr().out)["revoked_at"]


def test_a_url_without_a_rule_is_refused_to_everyone(world, monkeypatch):
    monkeypatch.delitem(access.URL_RULES, "usage-overview")
    monkeypatch.delitem(access.URL_RULES, "usage-summary")
    page = _client(world, "approver", api=False).get(reverse("usage-overview"))
    assert page.status_code == 404 and b"declares no access rule" in page.content
    api = _client(world, "approver", api=True).get(reverse("usage-summary") + f"?period={MONTH}")
    assert api.status_code == 403 and api.json()["code"] == "no_access_rule"


def test_services_refuse_a_role_the_page_would_refuse(world):
    """A queued action goes through the same check: the service refuses, whoever calls it."""
    from allocation.services.ledger import usage_ingest_events
    from pricing.errors import NotAllowed

    with pytest.raises(NotAllowed):
        usage_ingest_events(events=[], source_name="x", actor=world["users"]["analyst"])
    with pytest.raises(NotAllowed):
        allocation_run_execute(period=MONTH, actor=world["users"]["platform"])


def test_failed_logins_are_throttled(world, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(2):
        assert client.post(reverse("login"), {"username": "analyst", "password": "wrong"}).status_code == 200
    # The third failure locks the account out (django-axes answers 429 Too Many Requests) ...
    assert client.post(reverse("login"), {"username": "analyst", "password": "wrong"}).status_code == 429
    # ... and then even the right password is refused.
    locked = client.post(reverse("login"), {"username": "analyst", "password": "x"})
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    other = Client().post(reverse("login"), {"username": "platform", "password": "x"})
    assert other.status_code == 302  # one user's lock is not another's


def test_memberships_are_unique_and_change_role_when_granted_again(world):
    membership_grant(username="member", cost_center_code="CC-110", role="owner")
    assert CostCenter.objects.get(code="CC-110").memberships.get().role == "owner"


def _manage(*args: str, **env: str):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=root, env={**clean, **env}, capture_output=True, text=True
    )


def test_debug_is_off_unless_asked_for():
    show = "from django.conf import settings; print(settings.DEBUG)"
    assert _manage("shell", "-c", show).stdout.strip().endswith("False")
    assert _manage("shell", "-c", show, DJANGO_DEBUG="true").stdout.strip().endswith("True")


def test_the_production_settings_pass_the_deploy_checks():
    import secrets

    checked = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SETTINGS_MODULE="chargeback.production_settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    weak = _manage("check", DJANGO_SETTINGS_MODULE="chargeback.production_settings", DJANGO_SECRET_KEY="short")
    assert weak.returncode != 0 and "DJANGO_SECRET_KEY must be set" in weak.stderr
