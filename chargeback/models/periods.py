"""A month's close, and the overrides that let a flagged run's statements be approved."""

from django.conf import settings
from django.db import models

from allocation.models import AllocationRun
from chargeback.choices import PeriodStatus

__all__ = ["AccountingPeriod", "ReconciliationOverride"]


class AccountingPeriod(models.Model):
    """One month's close: open (no statement yet), closing (statements out for review and
    sign-off), closed (every statement signed off; nothing in it is rewritten again).

    A month without a row is open."""

    period = models.CharField(max_length=7, unique=True, help_text="YYYY-MM")
    status = models.CharField(max_length=16, choices=PeriodStatus.choices, default=PeriodStatus.OPEN)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period"]

    def __str__(self) -> str:
        return f"{self.period} ({self.get_status_display()})"


class ReconciliationOverride(models.Model):
    """A finance approver's written decision to sign off statements of a run whose
    reconciliation is beyond the tolerance."""

    run = models.OneToOneField(AllocationRun, on_delete=models.PROTECT, related_name="override")
    reason = models.TextField()
    overridden_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    overridden_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~models.Q(reason=""), name="reconciliation_override_has_reason"),
        ]

    def __str__(self) -> str:
        return f"override of run {self.run_id} by {self.overridden_by}"
