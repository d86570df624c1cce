"""No 500 on any input: huge page sizes, NUL bytes, long file names, each a 400 in the
one error shape, on the pages and the API, on SQLite and PostgreSQL."""

import datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from allocation.models import CostCenter, UsageBatch
from chargeback.api.pagination import MAX_LIMIT

pytestmark = pytest.mark.django_db

TWENTY_DIGITS = "9" * 20


@pytest.fixture
def cost_centers():
    start = datetime.date(2025, 1, 1)
    root = CostCenter.objects.create(
        code="cc-root", name="Root", owner="o", gl_expense_account="6000", gl_recovery_account="7000", active_from=start
    )
    CostCenter.objects.create(
        code="cc-child",
        name="Child",
        owner="o",
        gl_expense_account="6001",
        gl_recovery_account="7001",
        active_from=start,
        parent=root,
    )


@pytest.fixture
def finance(client, user):
    client.force_login(user)  # a finance analyst on the platform team (tests/conftest.py)
    return client


# --- limit and offset -------------------------------------------------------------


@pytest.mark.parametrize(
    "query, parameter",
    [
        (f"limit={TWENTY_DIGITS}", "limit"),
        (f"limit={MAX_LIMIT + 1}", "limit"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        (f"offset={TWENTY_DIGITS}", "offset"),
        ("offset=-5", "offset"),
        ("offset=1e3", "offset"),
    ],
)
def test_a_limit_or_offset_no_database_can_take_is_a_400(api_client, cost_centers, query, parameter):
    response = api_client.get(f"/api/v1/cost-centers?{query}")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_pagination"
    assert body["extra"]["parameter"] == parameter
    assert body["message"].startswith(f"{parameter} must be a whole number from ")


def test_limits_in_range_page_as_before(api_client, cost_centers):
    first = api_client.get(f"/api/v1/cost-centers?limit={MAX_LIMIT}").json()
    page = api_client.get("/api/v1/cost-centers?limit=1&offset=1").json()
    beyond = api_client.get("/api/v1/cost-centers?limit=1&offset=50").json()

    assert [row["code"] for row in first["results"]] == ["cc-child", "cc-root"]  # by code
    assert page["count"] == 2 and [row["code"] for row in page["results"]] == ["cc-root"]
    assert beyond["results"] == []


def test_the_schema_states_the_bounds(api_client):
    schema = api_client.get("/api/v1/schema/?format=json").json()
    parameters = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/cost-centers"]["get"]["parameters"]}
    assert parameters["limit"] == {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}
    assert parameters["offset"]["minimum"] == 0


# --- NUL bytes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, where",
    [
        ("/api/v1/cost-centers?code=cc%00", {"where": "query", "parameter": "code"}),
        ("/api/v1/usage/summary?period=2025-05%00", {"where": "query", "parameter": "period"}),
        ("/api/v1/cost-centers?x%00=1", {"where": "query", "parameter": "x%00"}),
        ("/api/v1/cost-centers/1%00", {"where": "path"}),
        ("/api/v1/usage/batches%00", {"where": "path"}),
    ],
)
def test_a_nul_byte_in_an_api_request_is_a_400_in_the_one_shape(api_client, cost_centers, url, where):
    response = api_client.get(url)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "nul_in_request"
    assert "NUL byte (%00)" in body["message"]
    assert body["extra"] == where


@pytest.mark.parametrize(
    "url",
    [
        "/usage/?period=2025-05%00",
        "/usage/batches/?status=%00",
        "/usage/batches/1%00/",
        "/pricing/?provider=%00",
        "/allocation/runs/1/lines/?cost_center=%00",
        "/mappings/new/?from=%00",
        "/login/?next=%00",
    ],
)
def test_a_nul_byte_in_a_page_request_is_a_400_error_page(finance, url):
    response = finance.get(url)

    assert response.status_code == 400
    html = response.content.decode()
    assert "NUL byte (%00)" in html
    assert "nul_in_request" in html


# --- file names ---------------------------------------------------------------------


def _upload(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"event_id,occurred_at\n", content_type="text/csv")


@pytest.mark.parametrize("name", ["a" * 600 + ".csv", "é" * 120 + ".csv"])
def test_the_api_refuses_a_file_name_too_long_to_keep(api_client, name):
    response = api_client.post("/api/v1/usage/batches", {"file": _upload(name), "format": "csv"}, format="multipart")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_failed"
    [message] = body["extra"]["fields"]["file"]
    assert "rename the file to at most 200 bytes" in message
    assert not UsageBatch.objects.exists()


def test_the_upload_page_refuses_a_file_name_too_long_to_keep(finance):
    response = finance.post("/usage/batches/", {"file": _upload("a" * 600 + ".csv"), "source_format": "csv"})

    assert response.status_code == 400
    assert "rename the file to at most 200 bytes" in response.content.decode()
    assert not UsageBatch.objects.exists()


def test_a_file_name_at_the_limit_is_taken(api_client):
    response = api_client.post(
        "/api/v1/usage/batches", {"file": _upload("a" * 196 + ".csv"), "format": "csv"}, format="multipart"
    )
    assert response.status_code == 202


# --- responses match the schema -------------------------------------------------------


def test_a_top_level_cost_center_has_a_null_parent_and_the_schema_allows_it(api_client, cost_centers):
    rows = {row["code"]: row for row in api_client.get("/api/v1/cost-centers").json()["results"]}
    schema = api_client.get("/api/v1/schema/?format=json").json()

    assert rows["cc-root"]["parent"] is None
    assert rows["cc-child"]["parent"] == "cc-root"
    assert schema["components"]["schemas"]["CostCenter"]["properties"]["parent"]["nullable"] is True


def test_every_operation_documents_its_errors_in_the_one_shape(api_client):
    schema = api_client.get("/api/v1/schema/?format=json").json()

    assert schema["components"]["schemas"]["Error"]["required"] == ["code", "message", "extra"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            default = operation["responses"]["default"]["content"]["application/json"]["schema"]
            assert default == {"$ref": "#/components/schemas/Error"}, (method, path)


def test_the_usage_answers_are_documented(api_client):
    paths = api_client.get("/api/v1/schema/?format=json").json()["paths"]

    summary = paths["/api/v1/usage/summary"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    coverage = paths["/api/v1/usage/tag-coverage"]["get"]
    events = paths["/api/v1/usage/events"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert summary["items"] == {"$ref": "#/components/schemas/UsageSummaryGroup"}
    assert [p["name"] for p in coverage["parameters"]] == ["period"]
    assert events == {"$ref": "#/components/schemas/UsageEventsResult"}
