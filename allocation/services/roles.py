"""The roles of DESIGN.md, as Django groups, and the one check every service uses."""

from pricing.errors import ApplicationError

__all__ = [
    "FINANCE_ANALYST",
    "FINANCE_APPROVER",
    "PLATFORM_ADMIN",
    "TEAM_MEMBER",
    "NotAllowed",
    "has_role",
    "require_role",
]

FINANCE_APPROVER = "finance_approver"
FINANCE_ANALYST = "finance_analyst"
PLATFORM_ADMIN = "platform_admin"
TEAM_MEMBER = "team_member"


class NotAllowed(ApplicationError):
    code = "not_allowed"
    http_status = 403


def has_role(actor, roles: tuple[str, ...]) -> bool:
    """Whether an active user holds one of the roles. Roles are groups only: a superuser
    (an administrator of the site) signs off nothing without being a finance approver."""
    if actor is None or not getattr(actor, "is_authenticated", False) or not actor.is_active:
        return False
    return actor.groups.filter(name__in=roles).exists()


def require_role(actor, roles: tuple[str, ...], *, doing: str) -> None:
    """Refuse a user without one of the roles, naming what they tried and who may."""
    if not has_role(actor, roles):
        who = getattr(actor, "username", None) or "anonymous"
        raise NotAllowed(
            f"{who} may not {doing}: it takes the role {' or '.join(roles)}",
            extra={"roles": list(roles)},
        )
