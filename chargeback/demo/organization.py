"""The demo organization, its login and the teams and tenants its usage is tagged with.

The organization is `data/org.yaml` (Larkspur Software), loaded through `org_load_file`
like any other, so it is also a worked example of the file format. The constants
here name teams and tenants of that file; the usage generator draws from them.
"""

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from allocation.access import FINANCE_ANALYST, FINANCE_APPROVER, PLATFORM_ADMIN, TEAM_MEMBER
from allocation.choices import MembershipRole
from allocation.services.access import membership_grant
from allocation.services.org import OrgLoadResult, org_load_file

__all__ = [
    "CORPUS_OWNERS",
    "DEMO_DATA",
    "DEMO_EMAIL_DOMAIN",
    "DEMO_MEMBERSHIPS",
    "DEMO_ROLE_USERS",
    "DEMO_PASSWORD",
    "DEMO_USERNAME",
    "PRODUCT_TEAMS",
    "TENANTS",
    "demo_org_load",
    "demo_user_ensure",
]

# The demo's input files, with their sources in data/README.md.
DEMO_DATA = Path(__file__).resolve().parent / "data"
ORG_FILE = DEMO_DATA / "org.yaml"
DEMO_USERNAME = "finance"
DEMO_PASSWORD = "chargeback-demo"
# Every login's address is <username>@demo.example (a domain reserved for examples), so
# the dispute mail the console prints names people, and none of it can reach anyone.
DEMO_EMAIL_DOMAIN = "demo.example"
# A login per role, so the demo shows each what they may see (README: the demo logins).
DEMO_ROLE_USERS = (
    ("analyst", "Nadia Haddad", FINANCE_ANALYST),
    ("platform", "Omar Castillo", PLATFORM_ADMIN),
    ("sofia", "Sofia Lindqvist", TEAM_MEMBER),
    ("mei", "Mei Tanaka", TEAM_MEMBER),
    ("arjun", "Arjun Mehta", TEAM_MEMBER),
    ("grace", "Grace Holloway", TEAM_MEMBER),
    ("lucas", "Lucas Moreau", TEAM_MEMBER),
)
# Two cost centers with an owner and a member each (Search and Discovery, Customer
# Experience Engineering), under Product Engineering, whose owner sees both.
DEMO_MEMBERSHIPS = (
    ("sofia", "CC-1200", MembershipRole.OWNER),
    ("mei", "CC-1210", MembershipRole.OWNER),
    ("arjun", "CC-1210", MembershipRole.MEMBER),
    ("grace", "CC-1220", MembershipRole.OWNER),
    ("lucas", "CC-1220", MembershipRole.MEMBER),
)
# Customer tenants by share of traffic: a few large accounts carry most of it.
TENANTS = (
    ("acme-retail", 30),
    ("globex", 20),
    ("initech", 14),
    ("umbrella-health", 11),
    ("stark-logistics", 9),
    ("wonka-foods", 7),
    ("tyrell-systems", 5),
    ("hooli", 4),
)
PRODUCT_TEAMS = ("search", "support-ai", "help-center", "mobile", "recommendations", "catalog", "voice")
# Teams whose documents the embedding service indexes for retrieval, by corpus size.
CORPUS_OWNERS = (
    ("search", 30),
    ("support-ai", 20),
    ("help-center", 15),
    ("recommendations", 10),
    ("devex", 8),
    ("it-helpdesk", 7),
    ("people-ops", 5),
    ("onboarding", 5),
)


def demo_org_load() -> OrgLoadResult:
    """The demo organization from `org.yaml`, through the service a user's file goes through."""
    return org_load_file(path=ORG_FILE)


def demo_user_ensure() -> tuple[Any, bool]:
    """The demo logins, created unless they exist, one per role, all with the demo password:
    `finance` (a superuser and the finance approver who signs the demo's mapping off),
    `analyst`, `platform`, and team members: `sofia`, owner of CC-1200 Product
    Engineering and so of everything under it; `mei`, owner of CC-1210, and `arjun`, a
    member of it alone; `grace`, owner of CC-1220, and `lucas`, a member of it alone.
    Returns the finance user and whether it was created."""
    User = get_user_model()
    user = User.objects.filter(username=DEMO_USERNAME).first()
    created = user is None
    if created:
        user = User.objects.create_superuser(
            username=DEMO_USERNAME, email=_email(DEMO_USERNAME), password=DEMO_PASSWORD
        )
    _email_ensure(user)
    user.groups.add(Group.objects.get_or_create(name=FINANCE_APPROVER)[0])
    for username, name, role in DEMO_ROLE_USERS:
        other = User.objects.filter(username=username).first()
        if other is None:
            first, last = name.split(" ", 1)
            other = User.objects.create_user(
                username=username,
                email=_email(username),
                password=DEMO_PASSWORD,
                first_name=first,
                last_name=last,
            )
        _email_ensure(other)
        other.groups.add(Group.objects.get_or_create(name=role)[0])
    for username, cost_center, role in DEMO_MEMBERSHIPS:
        membership_grant(username=username, cost_center_code=cost_center, role=role)
    return user, created


def _email(username: str) -> str:
    return f"{username}@{DEMO_EMAIL_DOMAIN}"


def _email_ensure(user) -> None:
    """The demo address, also on a login an older demo made with another one."""
    if user.email != _email(user.get_username()):
        user.email = _email(user.get_username())
        user.save(update_fields=["email"])
