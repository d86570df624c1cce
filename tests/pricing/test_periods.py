"""The months a user may name, at every interface, and the month the pages open on."""

import io
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from allocation.models import UsageBatch, UsageLine
from allocation.selectors.ledger import usage_latest_period
from pricing.errors import ValidationFailed
from pricing.periods import FIRST_PERIOD, LAST_PERIOD, Period

OUT_OF_RANGE = ("9999-12", "9999-11", "0000-01", "0001-02", "1999-12", "2100-01")
RANGE = "months from 2000-01 to 2099-12"


def test_the_range_is_named_once_and_its_ends_parse():
    assert (str(FIRST_PERIOD), str(LAST_PERIOD)) == ("2000-01", "2099-12")
    assert Period.parse("2000-01") == FIRST_PERIOD
    assert Period.parse("2099-12") == LAST_PERIOD


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_a_month_out_of_range_is_refused_naming_the_range(text):
    with pytest.raises(ValidationFailed) as refused:
        Period.parse(text)
    assert refused.value.code == "invalid_period"
    assert RANGE in refused.value.message


@pytest.fixture
def finance(client, user):
    client.force_login(user)  # a finance analyst on the platform team (tests/conftest.py)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["9999-12", "0000-01", "2100-01"])
@pytest.mark.parametrize("page", ["/usage/", "/allocation/", "/pricing/unpriced/"])
def test_pages_answer_a_period_out_of_range_with_400(finance, page, text):
    response = finance.get(page, {"period": text})
    assert response.status_code == 400
    assert RANGE in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/usage/summary?period={}",
        "/api/v1/usage/tag-coverage?period={}",
        "/api/v1/allocation-runs/progress?period={}",
    ],
)
@pytest.mark.parametrize("text", ["9999-12", "0000-01"])
def test_the_api_answers_a_period_out_of_range_with_invalid_period(api_client, url, text):
    response = api_client.get(url.format(text))
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_period",
        "message": f"period {text} is out of range: {RANGE}",
        "extra": {"period": text, "first": "2000-01", "last": "2099-12"},
    }


@pytest.mark.django_db
def test_starting_a_run_out_of_range_is_refused(api_client):
    response = api_client.post("/api/v1/allocation-runs", {"period": "9999-12"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_period"


@pytest.mark.django_db
@pytest.mark.parametrize("command", ["usage_summary", "rate_usage", "run_allocation"])
def test_commands_refuse_a_period_out_of_range(command):
    with pytest.raises(CommandError, match=RANGE):
        call_command(command, "--period", "9999-12", stdout=io.StringIO(), stderr=io.StringIO())


def _usage_line(occurred_at: datetime) -> UsageLine:
    batch = UsageBatch.objects.create(source_format="api", source_name="hostile")
    return UsageLine.objects.create(
        event_key=uuid.uuid4(),
        batch=batch,
        source_line=1,
        event_id=f"e-{occurred_at:%Y%m%d}",
        occurred_at=occurred_at,
        provider="openai",
        model="gpt-4o",
        unit="input_token",
        quantity=Decimal(1000),
        is_untagged=True,
    )


@pytest.mark.django_db
def test_one_event_dated_9999_does_not_take_the_pages_down(finance):
    _usage_line(datetime(2025, 5, 2, 10, tzinfo=UTC))
    # Written straight to the ledger: whatever ingestion lets in, the pages must stand.
    _usage_line(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))

    assert usage_latest_period() == Period(2025, 5)
    for page in ("/", "/usage/", "/allocation/", "/pricing/unpriced/", "/mappings/"):
        response = finance.get(page)
        assert response.status_code == 200, page
    assert "2025-05" in finance.get("/usage/").content.decode()


@pytest.mark.django_db
def test_the_pages_open_on_this_month_when_all_usage_is_outside_the_range(finance):
    _usage_line(datetime(9999, 12, 31, tzinfo=UTC))
    _usage_line(datetime(1970, 1, 1, tzinfo=UTC))
    assert usage_latest_period() == Period.current()
    assert finance.get("/usage/").status_code == 200


@pytest.mark.django_db
def test_the_run_list_filter_refuses_a_period_out_of_range(api_client):
    refused = api_client.get("/api/v1/allocation-runs?period=9999-12")
    taken = api_client.get("/api/v1/allocation-runs?period=2026-10")

    assert refused.status_code == 400
    assert refused.json()["extra"]["fields"]["period"] == [f"period 9999-12 is out of range: {RANGE}"]
    assert taken.status_code == 200 and taken.json()["results"] == []
