"""Cost objects: cost centers (with their GL accounts and roll-up), teams, features, tenants."""

from django.db import models
from django.db.models import F, Q

__all__ = ["CostCenter", "Team", "Feature", "Tenant"]


class CostCenter(models.Model):
    """A unit of the organization that carries cost in the general ledger.

    Its expense account is debited for AI spend it consumes; its recovery
    account is credited when it provides a shared service to others. `parent`
    rolls cost centers up for reporting.
    """

    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    owner = models.CharField(max_length=200, help_text="Person accountable for the spend")
    gl_expense_account = models.CharField("GL expense account", max_length=32)
    gl_recovery_account = models.CharField("GL recovery account", max_length=32)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    active_from = models.DateField()
    active_to = models.DateField(null=True, blank=True, help_text="Last day active; empty while active")

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(active_to__isnull=True) | Q(active_to__gte=F("active_from")),
                name="cost_center_active_range",
            ),
            models.CheckConstraint(condition=~Q(parent=F("id")), name="cost_center_not_own_parent"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class Team(models.Model):
    """A team whose AI usage is charged to its cost center."""

    code = models.CharField(max_length=64, unique=True, help_text="The `team` tag on usage")
    name = models.CharField(max_length=200)
    cost_center = models.ForeignKey(CostCenter, on_delete=models.PROTECT, related_name="teams")

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Feature(models.Model):
    """A product surface or use case that calls AI, owned by a team."""

    code = models.CharField(max_length=64, unique=True, help_text="The `feature` tag on usage")
    name = models.CharField(max_length=200)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="features")

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class Tenant(models.Model):
    """An end customer on whose behalf calls are made (for per-tenant cost)."""

    code = models.CharField(max_length=64, unique=True, help_text="The `tenant` tag on usage")
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name
