"""The close's API as clients use it: DRF's APIClient sending real API tokens in the
Authorization header, through the token authentication, the URL rules and the one error
handler. October's statements are built (tests/chargeback/close_world.py): finance
sends them for review, signs them off and closes the month; a member of search's CC-110
disputes a line; finance decides. Writes are retried with an `Idempotency-Key`."""

import threading
import time
import uuid
from decimal import Decimal

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from allocation.models import IdempotencyKey
from allocation.services.access import api_token_issue
from chargeback.api import views as api_views
from chargeback.choices import DisputeStatus, StatementLineKind, StatementStatus
from chargeback.models import AuditEvent, Dispute, Statement
from chargeback.services.statements import statement_approve, statement_submit, statements_build
from tests.chargeback.close_world import MONTH, close_world

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"code", "message", "extra"}


@pytest.fixture
def world(db, tmp_path, django_user_model, settings):
    """October's statements built (drafts), and an API token for each actor."""
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    world = close_world(tmp_path, django_user_model)
    statements_build(period=MONTH, actor=world["analyst"])
    world["tokens"] = {
        name: api_token_issue(name=name, scope="user", username=world[name].username).secret
        for name in ("approver", "analyst", "member", "owner", "other_member")
    }
    world["tokens"]["erp"] = api_token_issue(name="erp", scope="erp").secret
    world["tokens"]["gateway"] = api_token_issue(name="gateway", scope="gateway").secret
    return world


def client_of(world, who: str) -> APIClient:
    return APIClient(headers={"Authorization": f"Bearer {world['tokens'][who]}"})


def statement_of(code: str) -> Statement:
    return Statement.objects.get(period=str(MONTH), cost_center__code=code)


def in_review(world, code: str = "CC-110") -> Statement:
    return statement_submit(statement=statement_of(code), actor=world["analyst"])


def web_line(code: str = "CC-110"):
    """Search's own web calls, input tokens: 10.10 on October's statement."""
    return statement_of(code).lines.get(
        kind=StatementLineKind.CHARGE, feature="web", unit="input_token", category="usage"
    )


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == ERROR_KEYS and body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"] and isinstance(body["extra"], dict)
    return body


# --- periods ----------------------------------------------------------------------------


def test_periods_list_their_status_statements_and_open_disputes_scoped_to_the_reader(world):
    finance = client_of(world, "analyst")
    [october] = finance.get("/api/v1/periods").json()["results"]
    assert october["period"] == "2026-10" and october["status"] == "closing"
    everyone = Statement.objects.filter(period="2026-10").count()
    assert october["statements"] == everyone == october["statements_by_status"]["draft"]
    assert october["disputes_open"] == 0

    in_review(world)
    client_of(world, "member").post(
        "/api/v1/disputes", {"line": web_line().pk, "amount": "1.00", "reason": "not ours"}, format="json"
    )
    detail = finance.get("/api/v1/periods/2026-10").json()
    assert detail["statements_by_status"]["in_review"] == 1 and detail["disputes_open"] == 1
    # A member counts their own cost center's statement only.
    mine = client_of(world, "member").get("/api/v1/periods/2026-10").json()
    assert (mine["statements"], mine["statements_by_status"]["in_review"], mine["disputes_open"]) == (1, 1, 1)
    assert mine["total"] == str(statement_of("CC-110").total)
    # A month with nothing in it is open and empty; a malformed one is a 400 in the one shape.
    empty = finance.get("/api/v1/periods/2027-03").json()
    assert (empty["status"], empty["statements"], empty["total"]) == ("open", 0, "0.00")
    assert_error(finance.get("/api/v1/periods/2026-13"), 400, "invalid_period")


def test_closing_and_reopening_a_month_go_through_the_services_for_an_approver_only(world):
    approver, analyst = client_of(world, "approver"), client_of(world, "analyst")
    refused = assert_error(
        approver.post("/api/v1/periods/2026-10/close", {}, format="json"), 409, "statements_not_signed_off"
    )
    assert "CC-110" in refused["extra"]["cost_centers"]
    for statement in Statement.objects.filter(period="2026-10"):
        statement_approve(
            statement=statement_submit(statement=statement, actor=world["analyst"]), actor=world["approver"]
        )
    assert_error(analyst.post("/api/v1/periods/2026-10/close", {}, format="json"), 403, "not_allowed")

    closed = approver.post("/api/v1/periods/2026-10/close", {}, format="json")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert closed.json()["closed_by"] == "fiona" and closed.json()["statements_by_status"]["approved"] > 0

    assert_error(approver.post("/api/v1/periods/2026-10/reopen", {}, format="json"), 400, "validation_failed")
    assert_error(
        approver.post("/api/v1/periods/2026-10/reopen", {"reason": "  "}, format="json"), 400, "validation_failed"
    )
    reopened = approver.post("/api/v1/periods/2026-10/reopen", {"reason": "CC-140 was missing"}, format="json")
    assert reopened.status_code == 200 and reopened.json()["status"] == "closing"
    assert AuditEvent.objects.filter(subject="period", action="reopen", reason="CC-140 was missing").count() == 1


# --- statements ---------------------------------------------------------------------------


def test_statements_filter_by_period_status_and_cost_center_with_the_pages_filterset(world):
    in_review(world)
    finance = client_of(world, "analyst")
    every = finance.get("/api/v1/statements", {"period": "2026-10"}).json()
    assert every["count"] == Statement.objects.filter(period="2026-10").count()
    [reviewed] = finance.get("/api/v1/statements", {"status": "in_review"}).json()["results"]
    assert (reviewed["cost_center"], reviewed["status"], reviewed["lines_url"]) == (
        "CC-110",
        "in_review",
        f"/api/v1/statements/{reviewed['id']}/lines",
    )
    assert reviewed["total"] == str(statement_of("CC-110").total)  # money as a decimal string
    [one] = finance.get("/api/v1/statements", {"cost_center": "CC-120"}).json()["results"]
    assert one["cost_center"] == "CC-120"
    assert finance.get("/api/v1/statements", {"period": "2026-09"}).json()["count"] == 0
    bad = assert_error(finance.get("/api/v1/statements", {"status": "lost"}), 400, "validation_failed")
    assert "status" in bad["extra"]["fields"]
    assert_error(finance.get("/api/v1/statements", {"period": "10/2026"}), 400, "validation_failed")


def test_a_team_member_sees_only_their_cost_centers_statements_as_on_the_pages(world):
    member = client_of(world, "member")
    listed = member.get("/api/v1/statements").json()
    assert [s["cost_center"] for s in listed["results"]] == ["CC-110"]
    other = statement_of("CC-120")
    assert_error(member.get(f"/api/v1/statements/{other.pk}"), 404, "not_found")
    assert_error(member.get(f"/api/v1/statements/{other.pk}/lines"), 404, "not_found")
    assert member.get("/api/v1/statements", {"cost_center": "CC-120"}).json()["count"] == 0
    # The page shows the same rows, through the same FilterSet.
    page = APIClient()
    page.force_login(world["member"])
    html = page.get(reverse("statements"), {"period": "2026-10"}).content.decode()
    assert "CC-110" in html and "CC-120" not in html


def test_a_statements_lines_are_paged_and_filter_by_kind(world):
    statement = statement_of("CC-110")
    finance = client_of(world, "analyst")
    first = finance.get(f"/api/v1/statements/{statement.pk}/lines", {"limit": 2}).json()
    assert first["count"] == statement.lines.count() > 2 and len(first["results"]) == 2
    assert first["next"] and "offset=2" in first["next"]
    second = finance.get(first["next"]).json()
    assert not {line["id"] for line in first["results"]} & {line["id"] for line in second["results"]}
    line = first["results"][0]
    assert set(line) >= {"kind", "provider", "model", "team", "feature", "amount", "quantity", "line_count"}
    assert isinstance(line["amount"], str)
    charges = finance.get(f"/api/v1/statements/{statement.pk}/lines", {"kind": "charge", "limit": 1000}).json()
    assert {line["kind"] for line in charges["results"]} == {"charge"}
    assert charges["count"] == statement.lines.filter(kind="charge").count()
    assert_error(finance.get(f"/api/v1/statements/{statement.pk}/lines", {"kind": "tea"}), 400, "validation_failed")
    assert_error(finance.get(f"/api/v1/statements/{statement.pk}/lines", {"limit": 10**6}), 400, "invalid_pagination")


def test_a_statements_lines_download_as_csv_through_the_one_writer(world):
    import csv
    import io

    statement = statement_of("CC-110")
    response = client_of(world, "member").get(f"/api/v1/statements/{statement.pk}/lines.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert 'filename="statement-CC-110-2026-10.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["period", "cost_center", "statement_status"] and len(rows) == statement.lines.count() + 1
    assert {row[1] for row in rows[1:]} == {"CC-110"}
    assert sum(Decimal(row[rows[0].index("amount")]) for row in rows[1:]) == sum(
        line.amount for line in statement.lines.all()
    )
    other = statement_of("CC-120")
    assert_error(client_of(world, "member").get(f"/api/v1/statements/{other.pk}/lines.csv"), 404, "not_found")


def test_statement_actions_go_through_the_services_with_their_roles(world):
    statement = statement_of("CC-110")
    base = f"/api/v1/statements/{statement.pk}"
    analyst, approver, member = (client_of(world, who) for who in ("analyst", "approver", "member"))
    assert_error(member.post(f"{base}/submit", {}, format="json"), 403, "not_allowed")
    submitted = analyst.post(f"{base}/submit", {}, format="json")
    assert submitted.status_code == 200 and submitted.json()["status"] == StatementStatus.IN_REVIEW
    assert_error(analyst.post(f"{base}/submit", {}, format="json"), 409, "statement_status")
    assert_error(analyst.post(f"{base}/return", {}, format="json"), 400, "validation_failed")
    returned = analyst.post(f"{base}/return", {"reason": "the support split is off"}, format="json")
    assert returned.status_code == 200 and returned.json()["status"] == StatementStatus.DRAFT
    analyst.post(f"{base}/submit", {}, format="json")
    assert_error(analyst.post(f"{base}/approve", {}, format="json"), 403, "not_allowed")
    approved = approver.post(f"{base}/approve", {}, format="json").json()
    assert (approved["status"], approved["approved_by"]) == ("approved", "fiona") and len(
        approved["content_hash"]
    ) == 64
    actions = list(
        AuditEvent.objects.filter(subject="statement", subject_id=str(statement.pk)).values_list("action", flat=True)
    )
    assert sorted(actions) == ["approve", "build", "return", "submit", "submit"]


# --- disputes -------------------------------------------------------------------------


def test_a_member_files_a_dispute_and_finance_reviews_rejects_and_accepts(world):
    in_review(world)
    member, analyst = client_of(world, "member"), client_of(world, "analyst")
    line = web_line()
    body = {"line": line.pk, "amount": "2.50", "reason": "support's calls", "evidence_ids": ["tr-77", "req-901"]}
    filed = member.post("/api/v1/disputes", {**body, "counterpart": "CC-120"}, format="json")
    assert filed.status_code == 201, filed.content
    dispute = filed.json()
    assert (dispute["status"], dispute["amount"], dispute["cost_center"], dispute["line"]) == (
        "open",
        "2.50",
        "CC-110",
        line.pk,
    )
    assert dispute["evidence_ids"] == ["tr-77", "req-901"] and dispute["counterpart"] == "CC-120"
    assert dispute["filed_by"] == "sam" and dispute["overdue"] is False

    # Money is a decimal string; more than the line, or a line of another cost center, is refused.
    assert_error(member.post("/api/v1/disputes", {**body, "amount": 2.5}, format="json"), 400, "validation_failed")
    assert_error(
        member.post("/api/v1/disputes", {**body, "amount": "999999"}, format="json"), 400, "dispute_amount_exceeds_line"
    )
    other = statement_of("CC-120").lines.first()
    assert_error(member.post("/api/v1/disputes", {**body, "line": other.pk}, format="json"), 404, "not_found")
    assert_error(analyst.post("/api/v1/disputes", body, format="json"), 403, "not_allowed")

    base = f"/api/v1/disputes/{dispute['id']}"
    assert_error(member.post(f"{base}/review", {}, format="json"), 403, "not_allowed")
    assert analyst.post(f"{base}/review", {}, format="json").json()["status"] == DisputeStatus.UNDER_REVIEW
    assert_error(analyst.post(f"{base}/reject", {}, format="json"), 400, "validation_failed")
    rejected = analyst.post(f"{base}/reject", {"reason": "the gateway log shows search's key"}, format="json").json()
    assert (rejected["status"], rejected["decided_by"]) == ("rejected", "alex")
    assert_error(analyst.post(f"{base}/accept", {"reason": "changed my mind"}, format="json"), 409, "dispute_decided")

    second = member.post("/api/v1/disputes", {**body, "amount": "1.00"}, format="json").json()
    # Accepting waits for the review: an open dispute is taken up first.
    assert_error(
        analyst.post(f"/api/v1/disputes/{second['id']}/accept", {"reason": "x"}, format="json"),
        409,
        "dispute_not_under_review",
    )
    assert analyst.post(f"/api/v1/disputes/{second['id']}/review", format="json").status_code == 200
    accepted = analyst.post(
        f"/api/v1/disputes/{second['id']}/accept", {"reason": "confirmed", "counterpart": "CC-120"}, format="json"
    ).json()
    assert (accepted["status"], accepted["counterpart"]) == ("accepted", "CC-120")
    assert Dispute.objects.get(pk=second["id"]).adjustments.count() == 2

    # The queue: finance's undecided, filtered as the page filters it; members see their own.
    assert analyst.get("/api/v1/disputes", {"status": "undecided"}).json()["count"] == 0
    assert analyst.get("/api/v1/disputes", {"status": "all", "cost_center": "CC-110"}).json()["count"] == 2
    assert client_of(world, "other_member").get("/api/v1/disputes").json()["count"] == 0
    assert_error(client_of(world, "other_member").get(base), 404, "not_found")
    assert_error(analyst.get("/api/v1/disputes", {"status": "lost"}), 400, "validation_failed")


# --- Idempotency-Key ------------------------------------------------------------------


def test_the_same_key_and_body_answers_as_the_first_did_and_another_body_is_a_409(world):
    in_review(world)
    member = client_of(world, "member")
    key = str(uuid.uuid4())
    body = {"line": web_line().pk, "amount": "2.50", "reason": "support's calls"}
    first = member.post("/api/v1/disputes", body, format="json", headers={"Idempotency-Key": key})
    again = member.post("/api/v1/disputes", body, format="json", headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Dispute.objects.count() == 1

    other = assert_error(
        member.post("/api/v1/disputes", {**body, "amount": "3.00"}, format="json", headers={"Idempotency-Key": key}),
        409,
        "idempotency_key_reused",
    )
    assert other["extra"]["path"] == "/api/v1/disputes"
    # Keys are per actor: the owner's same key is a key of their own.
    owner = client_of(world, "owner").post("/api/v1/disputes", body, format="json", headers={"Idempotency-Key": key})
    assert owner.status_code == 201 and owner.json()["id"] != first.json()["id"]
    assert Dispute.objects.count() == 2
    assert IdempotencyKey.objects.filter(key=key).count() == 2

    # A refusal is an answer too: retried, it is repeated, not redone.
    dispute = first.json()["id"]
    analyst = client_of(world, "analyst")
    reject = {"reason": "no"}
    refused = analyst.post(f"/api/v1/disputes/{dispute}/reject", {}, format="json", headers={"Idempotency-Key": "r-1"})
    assert_error(refused, 400, "validation_failed")
    done = analyst.post(f"/api/v1/disputes/{dispute}/reject", reject, format="json", headers={"Idempotency-Key": "r-2"})
    retried = analyst.post(
        f"/api/v1/disputes/{dispute}/reject", reject, format="json", headers={"Idempotency-Key": "r-2"}
    )
    assert done.status_code == retried.status_code == 200 and retried.json() == done.json()
    assert AuditEvent.objects.filter(subject="dispute", action="reject").count() == 1
    assert_error(
        analyst.post(f"/api/v1/disputes/{dispute}/review", {}, format="json", headers={"Idempotency-Key": "bad key"}),
        400,
        "idempotency_key_invalid",
    )


# transaction=True: each thread's request commits on its own connection; serialized_rollback
# brings back the migration-seeded unit catalog for the tests that follow.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_identical_posts_racing_file_one_dispute_on_postgresql(world, monkeypatch):
    """The first request holds its transaction open after filing; the second, sent then
    with the same key and body, waits on the key's row and answers with the first's
    answer once it commits."""
    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("two connections writing at once: PostgreSQL (SQLite serializes the whole database)")
    in_review(world)
    body = {"line": web_line().pk, "amount": "2.50", "reason": "support's calls"}
    filed, real_file = threading.Event(), api_views.dispute_file

    def file_then_hold(**kwargs):
        dispute = real_file(**kwargs)
        filed.set()
        time.sleep(1.5)  # the second request arrives while this transaction is open
        return dispute

    monkeypatch.setattr(api_views, "dispute_file", file_then_hold)
    answers: dict[str, object] = {}

    def post(name: str) -> None:
        try:
            answers[name] = client_of(world, "member").post(
                "/api/v1/disputes", body, format="json", headers={"Idempotency-Key": "race-1"}
            )
        except Exception as exc:  # reported below
            answers[name] = exc
        finally:
            connections.close_all()

    first = threading.Thread(target=post, args=("first",))
    first.start()
    assert filed.wait(30)
    started = time.monotonic()
    post("second")
    waited = time.monotonic() - started
    first.join(30)
    assert answers["first"].status_code == answers["second"].status_code == 201, answers
    assert answers["second"].json() == answers["first"].json()
    assert answers["second"]["Idempotent-Replayed"] == "true"
    assert waited > 0.5  # it waited on the first's row rather than filing its own
    assert Dispute.objects.count() == 1 and IdempotencyKey.objects.count() == 1


# --- errors and access ------------------------------------------------------------------


def test_every_kind_of_error_answers_in_the_one_shape(world, settings):
    finance = client_of(world, "analyst")
    assert_error(finance.get("/api/v1/statements/987654"), 404, "not_found")
    assert_error(finance.get("/api/v1/disputes/99999999999999999999999"), 404, "not_found")
    assert_error(
        finance.put(f"/api/v1/statements/{statement_of('CC-110').pk}", {}, format="json"), 405, "method_not_allowed"
    )
    assert_error(finance.get("/api/v1/periods/2026-10/close"), 405, "method_not_allowed")
    assert_error(APIClient().get("/api/v1/statements"), 401, "not_authenticated")
    assert_error(
        APIClient(headers={"Authorization": "Bearer cbk_nope"}).get("/api/v1/statements"), 401, "authentication_failed"
    )
    assert_error(finance.get("/api/v1/no-such-thing"), 404, "not_found")
    assert_error(finance.get("/api/v1/statements/"), 404, "not_found")  # no trailing slashes in the API
    malformed = finance.post(f"/api/v1/disputes/{1}/reject", "{not json", content_type="application/json")
    assert_error(malformed, 400, "parse_error")


def _api_routes() -> list[tuple[str, str]]:
    """Every URL under /api/v1 by name, with any path parameter filled in."""
    api = next(p for p in get_resolver().url_patterns if isinstance(p, URLResolver) and str(p.pattern) == "api/v1/")
    found: list[tuple[str, str]] = []

    def walk(patterns) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns)
            elif isinstance(entry, URLPattern) and entry.name:
                groups = set(entry.pattern.regex.groupindex) - {"format"}
                if "format" in entry.pattern.regex.groupindex:
                    continue  # the same view as its suffix-free twin
                kwargs = {g: ("2026-10" if g == "period" else "1") for g in groups}
                found.append((entry.name, reverse(entry.name, kwargs=kwargs)))

    walk(api.url_patterns)
    return sorted(set(found))


API_ROUTES = _api_routes()
# What the service tokens may reach besides the docs: the ERP reads journal entries and
# acknowledges them; the gateway feeds usage.
DOCS = {"api-root", "api-schema", "api-docs"}
ERP_ALLOWED = DOCS | {
    "api-journal-entry-list",
    "api-journal-entry-detail",
    "api-journal-entry-csv",
    "api-journal-entry-acknowledge",
}
GATEWAY_ALLOWED = DOCS | {
    "usage-events",
    "api-usage-batch-list",
    "api-usage-batch-detail",
    "api-usage-batch-rejections",
}


def test_the_route_list_covers_the_close_api():
    names = {name for name, _ in API_ROUTES}
    assert {
        "api-period-list",
        "api-statement-lines",
        "api-statement-lines-csv",
        "api-dispute-accept",
        "costcenter-list",
    } <= names
    assert names >= ERP_ALLOWED | GATEWAY_ALLOWED


@pytest.mark.parametrize("token", ["erp", "gateway"])
@pytest.mark.parametrize(("name", "path"), API_ROUTES, ids=[name for name, _ in API_ROUTES])
def test_a_service_token_is_refused_by_every_endpoint_but_its_own(db, token, name, path):
    """Endpoint by endpoint: reads and writes alike answer 403 in the one shape, unless the
    token's job is that endpoint (journal entries are the ERP's, ingestion the gateway's)."""
    allowed = ERP_ALLOWED if token == "erp" else GATEWAY_ALLOWED
    # The rule is checked before any row is looked up: no world is needed, only the token.
    client = APIClient(headers={"Authorization": f"Bearer {api_token_issue(name=token, scope=token).secret}"})
    for method in ("get", "post"):
        response = getattr(client, method)(path, {}, format="json")
        if name in allowed:
            assert response.status_code != 403, (method, path, response.content)
        elif response.status_code != 405:
            assert_error(response, 403, "not_allowed")


def test_throttling_answers_in_the_one_shape_with_the_wait():
    from rest_framework.exceptions import Throttled

    from chargeback.api.exceptions import application_exception_handler

    response = application_exception_handler(Throttled(wait=12), {})
    assert response.status_code == 429
    assert response.data == {
        "code": "throttled",
        "message": "Request was throttled. Expected available in 12 seconds.",
        "extra": {"wait_seconds": 12},
    }
