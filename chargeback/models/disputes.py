"""Disputes of statement lines, and the adjustments an accepted one books."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from allocation.models import CostCenter
from allocation.models.runs import ALLOCATED_DECIMAL_PLACES, ALLOCATED_MAX_DIGITS
from chargeback.choices import DisputeStatus

__all__ = ["Adjustment", "Dispute"]


class Dispute(models.Model):
    """A cost center's challenge of one line of its statement: how much, why, and the
    evidence (trace, request or session ids, a file). Finance accepts or rejects it with
    a reason; it is due by `due_at` (the SLA)."""

    statement = models.ForeignKey("chargeback.Statement", on_delete=models.PROTECT, related_name="disputes")
    line = models.ForeignKey("chargeback.StatementLine", on_delete=models.PROTECT, related_name="disputes")
    cost_center = models.ForeignKey(CostCenter, on_delete=models.PROTECT, related_name="disputes")
    status = models.CharField(max_length=16, choices=DisputeStatus.choices, default=DisputeStatus.OPEN)
    amount = models.DecimalField(max_digits=ALLOCATED_MAX_DIGITS, decimal_places=ALLOCATED_DECIMAL_PLACES)
    reason = models.TextField()
    evidence_ids = models.TextField(blank=True, help_text="Trace, request or session ids, one per line")
    evidence_file = models.FileField(upload_to="disputes/%Y/%m/", blank=True)
    counterpart = models.ForeignKey(
        CostCenter,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The cost center that should bear the amount, as the filer suggests or finance decides",
    )
    filed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    filed_at = models.DateTimeField(auto_now_add=True)
    due_at = models.DateTimeField(help_text="Decided by then (the SLA)")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-filed_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="dispute_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=[DisputeStatus.OPEN, DisputeStatus.UNDER_REVIEW])
                | (Q(decided_at__isnull=False) & ~Q(decision_reason="")),
                name="dispute_decided_has_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"dispute #{self.pk} {self.cost_center.code} {self.amount} ({self.get_status_display()})"


class Adjustment(models.Model):
    """Money moved by an accepted dispute, booked in the next open period: a credit on
    the disputing cost center and the same amount charged to the counterpart (or left
    unallocated when finance names none)."""

    dispute = models.ForeignKey(Dispute, on_delete=models.PROTECT, related_name="adjustments")
    period = models.CharField(max_length=7, help_text="The period whose statements carry it (YYYY-MM)")
    source_period = models.CharField(max_length=7, help_text="The disputed statement's period")
    cost_center = models.ForeignKey(
        CostCenter, null=True, blank=True, on_delete=models.PROTECT, related_name="adjustments"
    )
    amount = models.DecimalField(max_digits=ALLOCATED_MAX_DIGITS, decimal_places=ALLOCATED_DECIMAL_PLACES)
    treatment = models.CharField(max_length=16, blank=True)
    description = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["period", "id"]

    def __str__(self) -> str:
        where = self.cost_center.code if self.cost_center_id else "unallocated"
        return f"{self.period} {where}: {self.amount} (dispute #{self.dispute_id})"
