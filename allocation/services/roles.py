"""The roles of DESIGN.md, as Django groups, and the one check every service uses."""

from pricing.errors import NotAllowed

__all__ = [
    "FINANCE_ANALYST",
    "FINANCE_APPROVER",
    "PLATFORM_ADMIN",
    "TEAM_MEMBER",
    "has_role",
    "require_role",
]

FINANCE_APPROVER = "finance_approver"
FINANCE_ANALYST = "finance_analyst"
PLATFORM_ADMIN = "platform_admin"
TEAM_MEMBER = "team_member"


def has_role(actor, roles: tuple[str, ...]) -> bool:
    """Whether an active user holds one of the roles. Roles are groups only: a superuser
    (an administrator of the site) signs off nothing without being a finance approver."""
    if actor is None or not getattr(actor, "is_authenticated", False) or not actor.is_active:
        return False
    return actor.groups.filter(name__in=roles).exists()


def require_role(
    actor, roles: tuple[str, ...], *, doing: str, code: str = NotAllowed.code, message: str | None = None
) -> None:
    """Refuse a user without one of the roles (`NotAllowed`), naming what they tried and who
    may; `code` and `message` word a refusal its pages and tests know by name."""
    if not has_role(actor, roles):
        who = getattr(actor, "username", None) or "anonymous"
        raise NotAllowed(
            message or f"{who} may not {doing}: it takes the role {' or '.join(roles)}",
            code=code,
            extra={"roles": list(roles), "actor": who},
        )
