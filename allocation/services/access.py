"""Granting access: API tokens (issued, shown once, revoked) and cost center memberships.

What a token or a membership allows is decided in `allocation/access.py`.
"""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from allocation.access import api_token_new
from allocation.choices import ApiTokenScope, MembershipRole
from allocation.models import ApiToken, CostCenter, CostCenterMembership
from pricing.errors import Conflict, NotFound, ValidationFailed

__all__ = [
    "IssuedToken",
    "api_token_issue",
    "api_token_revoke",
    "membership_grant",
    "membership_revoke",
]


@dataclass(frozen=True)
class IssuedToken:
    """A new token and the one moment its secret is known: show `secret` once, then forget it."""

    token: ApiToken
    secret: str


@transaction.atomic
def api_token_issue(*, name: str, scope: str, username: str | None = None, issued_by=None) -> IssuedToken:
    """A new API token: a user's (it acts as them) or a service account's (gateway, ERP)."""
    name = name.strip()
    if not name or len(name) > ApiToken._meta.get_field("name").max_length:
        raise ValidationFailed("a token needs a name of 1 to 100 characters", code="invalid_token_name")
    if scope not in ApiTokenScope.values:
        raise ValidationFailed(
            f"unknown token scope {scope!r}: use one of {', '.join(ApiTokenScope.values)}",
            code="invalid_token_scope",
        )
    user = None
    if scope == ApiTokenScope.USER:
        if not username:
            raise ValidationFailed("a user token names its user", code="invalid_token_user")
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise NotFound(f"no active user {username!r}", code="user_not_found")
    elif username:
        raise ValidationFailed(f"a {scope} token is a service account's and acts as no user", code="invalid_token_user")
    secret, prefix, digest = api_token_new()
    token = ApiToken.objects.create(
        name=name, scope=scope, user=user, prefix=prefix, digest=digest, created_by=issued_by
    )
    return IssuedToken(token=token, secret=secret)


@transaction.atomic
def api_token_revoke(*, prefix: str, revoked_by=None) -> ApiToken:
    """Revoke a token at once; it stays on record so what it sent keeps its sender."""
    token = ApiToken.objects.select_for_update().filter(prefix=prefix).first()
    if token is None:
        raise NotFound(f"no API token with prefix {prefix!r}", code="token_not_found")
    if token.revoked_at is not None:
        raise Conflict(f"token {token} was revoked on {token.revoked_at:%Y-%m-%d %H:%M}", code="token_revoked")
    token.revoked_at = timezone.now()
    token.revoked_by = revoked_by
    token.save(update_fields=["revoked_at", "revoked_by"])
    return token


@transaction.atomic
def membership_grant(
    *, username: str, cost_center_code: str, role: str = MembershipRole.MEMBER
) -> CostCenterMembership:
    """Make a user a member (or owner) of a cost center; granting again changes the role."""
    if role not in MembershipRole.values:
        raise ValidationFailed(
            f"unknown membership role {role!r}: use one of {', '.join(MembershipRole.values)}",
            code="invalid_membership_role",
        )
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"no user {username!r}", code="user_not_found")
    cost_center = CostCenter.objects.filter(code=cost_center_code).first()
    if cost_center is None:
        raise NotFound(f"no cost center {cost_center_code!r}", code="cost_center_not_found")
    membership, _ = CostCenterMembership.objects.update_or_create(
        user=user, cost_center=cost_center, defaults={"role": role}
    )
    return membership


@transaction.atomic
def membership_revoke(*, username: str, cost_center_code: str) -> None:
    deleted, _ = CostCenterMembership.objects.filter(
        user__username=username, cost_center__code=cost_center_code
    ).delete()
    if not deleted:
        raise NotFound(f"{username} is not a member of {cost_center_code}", code="membership_not_found")
