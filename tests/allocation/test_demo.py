"""`python manage.py demo`: the organization, three months of usage in every unit, idempotent."""

import csv
import datetime
import io
import json
from decimal import Decimal

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.db.models import Count, Max, Min, Q, Sum

from allocation.models import CostCenter, Feature, Team, Tenant, UsageBatch, UsageLine
from allocation.services.demo import (
    DEMO_DATA,
    TRACE_FILES,
    WORKLOADS,
    demo_load,
    demo_month_events,
    demo_months,
)
from allocation.services.org import org_parse

pytestmark = pytest.mark.django_db

TODAY = datetime.date(2025, 4, 10)  # the demo covers January to March 2025
SCALE = 0.05


@pytest.fixture
def demo():
    return demo_load(scale=SCALE, today=TODAY, rate=False)


def test_demo_months_are_the_three_full_months_before_this_one():
    assert demo_months(today=TODAY) == [datetime.date(2025, 1, 1), datetime.date(2025, 2, 1), datetime.date(2025, 3, 1)]
    assert demo_months(today=datetime.date(2026, 1, 1)) == [
        datetime.date(2025, 10, 1),
        datetime.date(2025, 11, 1),
        datetime.date(2025, 12, 1),
    ]


def test_demo_loads_the_organization_through_org_load(demo):
    assert demo.org.as_dict()["created"] == 100
    assert (CostCenter.objects.count(), Team.objects.count(), Feature.objects.count(), Tenant.objects.count()) == (
        17,
        26,
        49,
        8,
    )
    # A parent roll-up: Search and Discovery under Product Engineering under Technology.
    search = CostCenter.objects.get(code="CC-1210")
    assert (search.parent.code, search.parent.parent.code, search.parent.parent.parent) == ("CC-1200", "CC-1000", None)
    assert CostCenter.objects.filter(parent__isnull=True).count() == 3
    assert CostCenter.objects.get(code="CC-1240").active_to == datetime.date(2025, 12, 31)
    # Every workload's feature and team is in the organization, with the feature under that team.
    features = dict(Feature.objects.values_list("code", "team__code"))
    assert {w.feature: w.team for w in WORKLOADS}.items() <= features.items()


def test_demo_usage_covers_every_unit_environment_and_tag(demo):
    assert demo.events == 2232
    assert demo.events_by_month == {"2025-01": 680, "2025-02": 707, "2025-03": 845}
    assert demo.events_inserted == 2232
    assert demo.rejected == 0
    assert demo.lines_inserted == UsageLine.objects.count() == 3892
    assert UsageBatch.objects.filter(source_name__startswith="demo ").count() == demo.batches == 3

    units = dict(UsageLine.objects.values_list("unit").annotate(n=Count("*")))
    assert units == {
        "input_token": 931,
        "cached_input_token": 436,
        "cache_write_token": 82,
        "cache_write_1h_token": 24,
        "output_token": 1088,
        "reasoning_token": 122,
        "image_input_token": 65,
        "image": 28,
        "transcription_second": 56,
        "realtime_second": 48,
        "embedding_token": 484,
        "vector_query": 473,
        "gpu_second": 55,
    }
    # Cache writes of both kinds and cache reads on Anthropic; reasoning only on o-series models.
    anthropic_units = set(UsageLine.objects.filter(provider="anthropic").values_list("unit", flat=True))
    assert {"cached_input_token", "cache_write_token", "cache_write_1h_token"} <= anthropic_units
    assert set(UsageLine.objects.filter(unit="reasoning_token").values_list("model", flat=True)) == {"o3", "o4-mini"}
    assert set(UsageLine.objects.filter(unit="realtime_second").values_list("tier", flat=True)) == {
        "voice",
        "transcript",
    }
    assert set(UsageLine.objects.filter(unit="image").values_list("tier", flat=True)) == {
        "hd:1024x1792",
        "hd:1792x1024",
        "standard:1024x1024",
        "low:1024x1024",
        "medium:1024x1024",
        "high:1024x1536",
    }
    # Image input tokens are derived from dimensions: at least the 85-token base per image.
    assert UsageLine.objects.filter(unit="image_input_token", quantity__lt=75).count() == 0

    environments = dict(UsageLine.objects.values_list("environment").annotate(n=Count("*")))
    assert environments == {"production": 1951, "internal": 1132, "eval": 612, "staging": 160, "": 37}

    untagged = UsageLine.objects.filter(is_untagged=True)
    assert untagged.count() == 137  # 3.5 % of lines
    assert untagged.filter(team="").count() == 55
    assert untagged.filter(feature="").count() == 45
    assert untagged.filter(environment="").count() == 37
    # Every line carries the per-call tags; customer-facing features also a tenant.
    for tag in ("end_user", "session_id", "trace_id", "request_id"):
        assert UsageLine.objects.filter(**{tag: ""}).count() == 0, tag
    assert UsageLine.objects.exclude(tenant="").count() == 2231
    assert set(UsageLine.objects.exclude(tenant="").values_list("tenant", flat=True)) <= set(
        Tenant.objects.values_list("code", flat=True)
    )
    # A session keeps its user, tenant and environment across its traces.
    mixed = (
        UsageLine.objects.exclude(environment="")
        .values("session_id")
        .annotate(
            users=Count("end_user", distinct=True),
            tenants=Count("tenant", distinct=True),
            environments=Count("environment", distinct=True),
        )
        .filter(Q(users__gt=1) | Q(tenants__gt=1) | Q(environments__gt=1))
    )
    assert not mixed.exists()
    sessions = UsageLine.objects.values("session_id").distinct().count()
    assert sessions < UsageLine.objects.values("trace_id").distinct().count()
    span = UsageLine.objects.aggregate(first=Min("occurred_at"), last=Max("occurred_at"))
    assert span["first"] >= datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    assert span["last"] < datetime.datetime(2025, 4, 1, tzinfo=datetime.UTC)


def test_request_sizes_come_from_the_azure_traces(demo):
    with open(TRACE_FILES["conv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    contexts = {int(r["ContextTokens"]) for r in rows}
    generated = {int(r["GeneratedTokens"]) for r in rows}

    triage = UsageLine.objects.filter(feature="ticket-triage")
    assert set(triage.values_list("context_tokens", flat=True)) <= contexts
    assert set(triage.filter(unit="output_token").values_list("quantity", flat=True)) <= {Decimal(g) for g in generated}
    # Input, cache reads and cache writes of a call add up to its context, with nothing counted twice.
    for event_id, context in triage.values_list("event_id", "context_tokens").distinct()[:50]:
        prompt = triage.filter(event_id=event_id).exclude(unit="output_token").aggregate(total=Sum("quantity"))
        assert prompt["total"] == context
    # The traces are shipped with the app, never read from elsewhere.
    assert all(path.parent == DEMO_DATA and path.is_file() for path in TRACE_FILES.values())


def test_a_second_run_inserts_nothing(demo):
    lines = UsageLine.objects.count()

    again = demo_load(scale=SCALE, today=TODAY, rate=False)

    assert again.events == 2232
    assert again.events_inserted == 0
    assert again.lines_inserted == 0
    assert again.duplicates == 2232
    assert again.org.as_dict()["created"] == 0
    assert again.org.as_dict()["unchanged"] == 100
    assert again.user_created is False
    assert UsageLine.objects.count() == lines


def test_events_are_deterministic():
    month = datetime.date(2025, 2, 1)

    first = demo_month_events(month=month, scale=SCALE, index=1)
    second = demo_month_events(month=month, scale=SCALE, index=1)

    assert first == second
    assert first[0]["event_id"] == "demo-x0.05-2025-02-0000001"
    assert len({e["event_id"] for e in first}) == len(first) == 707


def test_the_command_prints_a_summary_and_the_login():
    out = io.StringIO()

    call_command("demo", "--scale", "0.02", stdout=out)

    summary = json.loads(out.getvalue())
    assert summary["org"]["cost_centers"] == {"created": 17, "updated": 0, "unchanged": 0}
    assert summary["rejected"] == 0
    assert summary["lines_inserted"] == UsageLine.objects.count() > 1000
    assert summary["login"] == {"username": "finance", "password": "chargeback-demo", "created": True}
    # The demo opens with costs: list prices loaded and each month rated, every line accounted for.
    runs = summary["rating_runs"]
    assert len(runs) == 3 and all(Decimal(run["cost"]) > 0 for run in runs)
    assert sum(run["lines_rated"] for run in runs) == UsageLine.objects.count()
    assert all(0 < run["lines_unpriced"] < run["lines_rated"] for run in runs)
    user = authenticate(username="finance", password="chargeback-demo")
    assert user is not None and user.is_superuser and user.is_staff


def test_the_demo_org_file_parses_with_line_numbers():
    document, lines = org_parse(text=(DEMO_DATA / "org.yaml").read_text(), source="org.yaml")

    assert len(document["cost_centers"]) == 17
    assert lines[("teams", 0, None)] > lines[("cost_centers", 16, None)]


def test_admin_pages_of_the_demo_render_and_are_read_only_for_the_ledger(demo, admin_client):
    batch = UsageBatch.objects.first()
    line = UsageLine.objects.filter(unit="image").first()
    pages = [
        "/admin/allocation/costcenter/?q=search",
        "/admin/allocation/team/",
        "/admin/allocation/feature/",
        "/admin/allocation/tenant/",
        "/admin/allocation/usagebatch/?status=completed",
        f"/admin/allocation/usagebatch/{batch.pk}/change/",
        f"/admin/allocation/usagerejection/?batch__id__exact={batch.pk}",
        "/admin/allocation/usageline/?provider=openai&unit=image&environment=internal&is_untagged__exact=0",
        "/admin/allocation/usageline/?environment=__none__",
        f"/admin/allocation/usageline/{line.pk}/change/",
    ]
    for page in pages:
        assert admin_client.get(page).status_code == 200, page

    untagged = admin_client.get("/admin/allocation/usageline/?environment=__none__").content.decode()
    assert "37 usage lines" in untagged
    assert "CC-1210" in admin_client.get("/admin/allocation/costcenter/?q=search").content.decode()
    assert admin_client.get("/admin/allocation/usageline/add/").status_code == 403
    assert admin_client.post(f"/admin/allocation/usageline/{line.pk}/delete/").status_code == 403
    assert UsageLine.objects.filter(pk=line.pk).exists()
