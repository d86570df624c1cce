"""Who belongs where, and the API tokens of users and service accounts.

What each may see and do is decided in `allocation/access.py`; these rows are its input.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from allocation.choices import ApiTokenScope, MembershipRole

__all__ = ["ApiToken", "CostCenterMembership"]


class CostCenterMembership(models.Model):
    """A user's membership of a cost center: a team member sees the spend of the cost
    centers they belong to, and an owner of a parent sees its whole roll-up."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cost_center_memberships")
    cost_center = models.ForeignKey("allocation.CostCenter", on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=MembershipRole.choices, default=MembershipRole.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cost_center__code", "user__username"]
        constraints = [models.UniqueConstraint(fields=["user", "cost_center"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} {self.get_role_display().lower()} of {self.cost_center.code}"


class ApiToken(models.Model):
    """A bearer token for the API. Only its SHA-256 is stored: the token itself is shown
    once, when it is issued. A revoked token stays, so what it sent keeps its sender."""

    name = models.CharField(max_length=100, help_text="Who or what holds it: 'gateway-prod', 'alice laptop'")
    scope = models.CharField(max_length=16, choices=ApiTokenScope.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="api_tokens",
        help_text="The user a user-scoped token acts as; empty for a service account",
    )
    prefix = models.CharField(max_length=16, unique=True, help_text="The token's first characters, to recognise it")
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the token, hex")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            # A user token acts as someone; a service account's token acts as no one.
            models.CheckConstraint(
                condition=(Q(scope=ApiTokenScope.USER) & Q(user__isnull=False))
                | (~Q(scope=ApiTokenScope.USER) & Q(user__isnull=True)),
                name="api_token_user_matches_scope",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
