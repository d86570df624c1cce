"""The usage API as a gateway and a script use it, over a real HTTP client."""

import io
import json
from datetime import date

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from allocation.models import CostCenter, Team, UsageLine

pytestmark = pytest.mark.django_db
# Before a period is rated, every line is unpriced and no group has a cost.
UNRATED = {"cost": None, "unpriced_line_count": 1}


def event(event_id: str, **fields) -> dict:
    return {
        "event_id": event_id,
        "occurred_at": "2026-10-14T09:30:00Z",
        "provider": "openai",
        "model": "gpt-4o",
        "team": "search",
        "feature": "answers",
        "environment": "production",
        "quantities": {"input_token": 1000, "output_token": 200},
        **fields,
    }


def test_gateway_events_are_answered_one_by_one_and_idempotent(api_client):
    events = [
        event("e-1"),
        event("e-2", quantities={"input_token": 10, "bogus_token": 5}),
        event("e-3", team=None, feature=None, environment=None, tenant="acme"),
        "not an object",
    ]
    response = api_client.post("/api/v1/usage/events", {"events": events}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (2, 0, 2)
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "accepted", "rejected"]
    assert body["results"][1] == {
        "index": 2,
        "event_id": "e-2",
        "status": "rejected",
        "field": "unit",
        "reason": "unknown unit 'bogus_token'",
    }
    assert UsageLine.objects.count() == 4
    assert UsageLine.objects.filter(event_id="e-3", is_untagged=True, tenant="acme").count() == 2

    again = api_client.post("/api/v1/usage/events", {"events": [event("e-1"), event("e-4")]}, format="json").json()
    assert [r["status"] for r in again["results"]] == ["duplicate", "accepted"]
    assert (again["accepted"], again["duplicate"]) == (1, 1)
    assert UsageLine.objects.count() == 6


def test_an_empty_or_malformed_envelope_is_a_clear_400(api_client):
    response = api_client.post("/api/v1/usage/events", {"events": []}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_failed" and "events" in response.json()["extra"]["fields"]


def test_usage_summary_groups_by_any_tag(api_client):
    api_client.post(
        "/api/v1/usage/events",
        {"events": [event("e-1"), event("e-2", team="vision"), event("e-3", occurred_at="2026-11-01T00:00:00Z")]},
        format="json",
    )
    response = api_client.get("/api/v1/usage/summary", {"period": "2026-10", "group_by": "team,unit"})
    assert response.status_code == 200
    assert response.json() == [
        {"team": "search", "unit": "input_token", "quantity": "1000", "line_count": 1, **UNRATED},
        {"team": "search", "unit": "output_token", "quantity": "200", "line_count": 1, **UNRATED},
        {"team": "vision", "unit": "input_token", "quantity": "1000", "line_count": 1, **UNRATED},
        {"team": "vision", "unit": "output_token", "quantity": "200", "line_count": 1, **UNRATED},
    ]
    bad = api_client.get("/api/v1/usage/summary", {"period": "2026-10", "group_by": "colour"})
    assert bad.status_code == 400 and "unknown group key(s) colour" in bad.json()["message"]
    assert api_client.get("/api/v1/usage/summary", {"period": "October"}).status_code == 400


def test_usage_summary_command_prints_the_same_groups():
    from allocation.services.ledger import usage_ingest_events

    usage_ingest_events(
        events=[event("e-1"), event("e-2", provider="anthropic", model="claude-haiku-4-5")], source_name="test"
    )
    out = io.StringIO()
    call_command("usage_summary", "--period", "2026-10", "--group-by", "provider,unit", stdout=out)
    assert json.loads(out.getvalue()) == [
        {"provider": "anthropic", "unit": "input_token", "quantity": "1000", "line_count": 1, **UNRATED},
        {"provider": "anthropic", "unit": "output_token", "quantity": "200", "line_count": 1, **UNRATED},
        {"provider": "openai", "unit": "input_token", "quantity": "1000", "line_count": 1, **UNRATED},
        {"provider": "openai", "unit": "output_token", "quantity": "200", "line_count": 1, **UNRATED},
    ]
    with pytest.raises(CommandError, match="not YYYY-MM"):
        call_command("usage_summary", "--period", "2026/10", stdout=io.StringIO())


def test_tag_coverage_per_source(api_client):
    api_client.post(
        "/api/v1/usage/events",
        {"events": [event("e-1"), event("e-2"), event("e-3", feature=None), event("e-4", team=None, feature=None)]},
        format="json",
    )
    report = api_client.get("/api/v1/usage/tag-coverage", {"period": "2026-10"}).json()
    assert len(report) == 1
    row = report[0]
    assert (row["source"], row["lines"], row["untagged_lines"]) == ("api", 8, 4)
    assert row["team_line_share"] == "0.75" and row["feature_line_share"] == "0.5"
    assert row["environment_line_share"] == "1" and row["untagged_line_share"] == "0.5"


def test_cost_objects_are_readable_and_the_api_needs_a_login(api_client):
    center = CostCenter.objects.create(
        code="CC-100",
        name="Search",
        owner="Ada Lovelace",
        gl_expense_account="6100-100",
        gl_recovery_account="4900-100",
        active_from=date(2026, 1, 1),
    )
    Team.objects.create(code="search", name="Search", cost_center=center)
    teams = api_client.get("/api/v1/teams").json()
    assert teams["results"] == [
        {"id": teams["results"][0]["id"], "code": "search", "name": "Search", "cost_center": "CC-100"}
    ]
    assert api_client.get("/api/v1/cost-centers", {"code": "CC-100"}).json()["count"] == 1
    anonymous = APIClient()
    assert anonymous.get("/api/v1/teams").status_code in (401, 403)
    assert anonymous.post("/api/v1/usage/events", {"events": [event("x")]}, format="json").status_code in (401, 403)


def test_openapi_schema_is_served(api_client):
    response = api_client.get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/usage/events" in response.content and b"/api/v1/usage/summary" in response.content
