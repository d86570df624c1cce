"""The hand-computed company of tests/allocation/runs_world.py, allocated for October 2026,
with the people of the close: a finance approver (fiona), an analyst (alex), a member of
search's cost center CC-110 (sam) and its owner (olivia), and a member of support's CC-120
(uma). Support's lines are disputed in the dispute tests."""

from pathlib import Path

from django.contrib.auth.models import Group

from allocation.choices import MembershipRole
from allocation.models import ActivityCount, AllocationRun, CostCenterMembership
from allocation.services.runs.run import allocation_run_execute
from tests.allocation.runs_world import (
    MONTH,
    SCENARIO_INVOICE,
    build_mapping,
    build_org,
    build_prices,
    load_invoice,
    load_usage,
    make_approver,
    scenario_events,
)

__all__ = ["MONTH", "close_world"]


def _person(django_user_model, username: str, role: str, email: str = ""):
    person = django_user_model.objects.create_user(
        username=username, password="x", email=email or f"{username}@example.com", first_name=username.title()
    )
    person.groups.add(Group.objects.get_or_create(name=role)[0])
    return person


def close_world(tmp_path: Path, django_user_model) -> dict:
    """October allocated (run #1), and everyone who takes part in its close."""
    centers = build_org()
    build_prices()
    approver = make_approver(django_user_model)
    approver.email = "fiona@example.com"
    approver.save()
    build_mapping(tmp_path, approver)
    load_usage(scenario_events())
    load_invoice(tmp_path, SCENARIO_INVOICE)
    ActivityCount.objects.create(period=MONTH, driver="jobs_run", cost_center=centers["CC-110"], count=3)
    ActivityCount.objects.create(period=MONTH, driver="jobs_run", cost_center=centers["CC-130"], count=1)
    run: AllocationRun = allocation_run_execute(period=MONTH, actor=approver)
    member = _person(django_user_model, "sam", "team_member")
    owner = _person(django_user_model, "olivia", "team_member")
    other = _person(django_user_model, "uma", "team_member")
    CostCenterMembership.objects.create(user=member, cost_center=centers["CC-110"], role=MembershipRole.MEMBER)
    CostCenterMembership.objects.create(user=owner, cost_center=centers["CC-110"], role=MembershipRole.OWNER)
    CostCenterMembership.objects.create(user=other, cost_center=centers["CC-120"], role=MembershipRole.MEMBER)
    return {
        "centers": centers,
        "run": run,
        "approver": approver,
        "analyst": _person(django_user_model, "alex", "finance_analyst"),
        "member": member,
        "owner": owner,
        "other_member": other,
    }
