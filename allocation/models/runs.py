"""Allocation runs: one period's invoices on cost centers (DESIGN.md "Allocation run")."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from allocation.choices import (
    AllocationMethod,
    AllocationRunStatus,
    ChargeCategory,
    Treatment,
    UnallocatedReason,
)
from pricing.money import QUANTITY_DECIMAL_PLACES, QUANTITY_MAX_DIGITS

from .invoices import ProviderInvoice
from .ledger import UsageBatch
from .mapping import MappingRule, MappingVersion, SharedCostPool
from .org import CostCenter
from .rating import RatingRun

__all__ = ["ActivityCount", "AllocationRun", "AllocationLine", "ReconciliationLine"]


ALLOCATED_MAX_DIGITS = 20
ALLOCATED_DECIMAL_PLACES = 2
RATED_MAX_DIGITS = 30
RATED_DECIMAL_PLACES = 12


class ActivityCount(models.Model):
    """A proxy count of activity (jobs run, documents indexed) per cost center and period:
    the driver of an activity-based shared-cost pool."""

    period = models.CharField(max_length=7, help_text="YYYY-MM")
    driver = models.CharField(max_length=64, help_text="The activity proxy's name, as pools name it")
    cost_center = models.ForeignKey(CostCenter, on_delete=models.PROTECT, related_name="activity_counts")
    count = models.DecimalField(max_digits=QUANTITY_MAX_DIGITS, decimal_places=QUANTITY_DECIMAL_PLACES)
    source = models.CharField(max_length=500, blank=True, help_text="File it was loaded from")

    class Meta:
        ordering = ["period", "driver", "cost_center__code"]
        constraints = [
            models.UniqueConstraint(fields=["period", "driver", "cost_center"], name="activity_count_unique"),
            models.CheckConstraint(condition=Q(count__gte=0), name="activity_count_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.period} {self.driver} {self.cost_center.code}: {self.count}"


class AllocationRun(models.Model):
    """One period's allocation: every invoice cent on a cost center or in a named
    unallocated bucket, with the inputs it used and a fingerprint of its result.

    Written whole in one transaction. A later run of the period supersedes it
    (kept for audit) unless the period was closed by an approved statement.

    A correction (status `correction`) is what late data changed in a closed period's
    allocation: its lines are the differences, per key, between the period allocated
    now and its closed run plus the corrections booked before; `period` is the
    corrected month, `booked_in` the open month whose statements carry it.
    """

    period = models.CharField(max_length=7, help_text="YYYY-MM")
    status = models.CharField(max_length=16, choices=AllocationRunStatus.choices, default=AllocationRunStatus.COMPLETED)
    mapping_version = models.ForeignKey(MappingVersion, on_delete=models.PROTECT, related_name="allocation_runs")
    rating_run = models.ForeignKey(RatingRun, on_delete=models.PROTECT, related_name="allocation_runs")
    rate_card_versions = models.ManyToManyField("pricing.PriceBookVersion", blank=True, related_name="+")
    invoices = models.ManyToManyField(ProviderInvoice, blank=True, related_name="allocation_runs")
    usage_batches = models.ManyToManyField(UsageBatch, blank=True, related_name="allocation_runs")
    inputs = models.JSONField(default=dict, help_text="What the run read, as ids and checksums")
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the inputs and every allocated cent")
    tolerance = models.DecimalField(max_digits=6, decimal_places=4, help_text="Reconciliation tolerance (0.02 = 2%)")
    is_flagged = models.BooleanField(default=False, help_text="A provider's variance is beyond the tolerance")
    invoice_total = models.DecimalField(max_digits=ALLOCATED_MAX_DIGITS, decimal_places=ALLOCATED_DECIMAL_PLACES)
    allocated = models.DecimalField(max_digits=ALLOCATED_MAX_DIGITS, decimal_places=ALLOCATED_DECIMAL_PLACES)
    unallocated = models.DecimalField(max_digits=ALLOCATED_MAX_DIGITS, decimal_places=ALLOCATED_DECIMAL_PLACES)
    superseded_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="supersedes"
    )
    closed_at = models.DateTimeField(
        null=True, blank=True, help_text="When a statement from this run was approved: the period is closed"
    )
    corrects = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="corrections",
        help_text="A correction's closed run: the period it corrects",
    )
    # Null on a run, as `corrects` is: a correction is told by both, and "" would be a period.
    booked_in = models.CharField(  # noqa: DJ001
        max_length=7, null=True, blank=True, help_text="A correction's YYYY-MM: the period whose statements carry it"
    )
    late_data_checked = models.JSONField(
        null=True,
        blank=True,
        help_text="A closed run's: the late data its period's corrections account for (newest usage batch looked "
        "through, invoice line counts, activity counts), so that a booking reads only what came since",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    seconds = models.DecimalField(max_digits=10, decimal_places=3, default=0, help_text="Wall time of the run")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Nothing lost: the run's own identity, which the service also asserts. Amounts are
            # whole cents, so half a cent of slack only absorbs SQLite's float arithmetic.
            models.CheckConstraint(
                condition=Q(invoice_total__gte=F("allocated") + F("unallocated") - Decimal("0.005"))
                & Q(invoice_total__lte=F("allocated") + F("unallocated") + Decimal("0.005")),
                name="allocation_run_ties_out",
            ),
            models.UniqueConstraint(
                fields=["period"],
                condition=Q(status=AllocationRunStatus.COMPLETED),
                name="allocation_run_one_current_per_period",
            ),
            # A correction names its closed run and a later period to be booked in; a run names neither.
            models.CheckConstraint(
                condition=(
                    Q(status=AllocationRunStatus.CORRECTION)
                    & Q(corrects__isnull=False, booked_in__isnull=False)
                    & Q(booked_in__gt=F("period"))
                )
                | (~Q(status=AllocationRunStatus.CORRECTION) & Q(corrects__isnull=True, booked_in__isnull=True)),
                name="allocation_run_correction_booked_later",
            ),
        ]
        indexes = [models.Index(fields=["booked_in"], name="allocation_run_booked_in")]

    def __str__(self) -> str:
        return f"Allocation run #{self.pk} {self.period} ({self.status})"


class AllocationLine(models.Model):
    """Money of one invoice on one cost center (or in the unallocated bucket), keyed by
    team, feature, environment, modality, provider, model, category and method.

    The tags keep the link to the ledger lines (and their traces) behind it.
    Lines of an internal transfer (a fixed fee) carry no invoice and net to zero.
    """

    run = models.ForeignKey(AllocationRun, on_delete=models.CASCADE, related_name="lines")
    invoice = models.ForeignKey(
        ProviderInvoice, null=True, blank=True, on_delete=models.PROTECT, related_name="allocation_lines"
    )
    provider = models.CharField(max_length=64)
    cost_center = models.ForeignKey(
        CostCenter, null=True, blank=True, on_delete=models.PROTECT, related_name="allocation_lines"
    )
    reason = models.CharField(max_length=24, blank=True, choices=UnallocatedReason.choices)
    team = models.CharField(max_length=128, blank=True)
    feature = models.CharField(max_length=128, blank=True)
    environment = models.CharField(max_length=32, blank=True)
    modality = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=128, blank=True)
    unit = models.CharField(max_length=64, blank=True, help_text="Ledger unit of the usage behind it")
    category = models.CharField(max_length=16, choices=ChargeCategory.choices, help_text="Invoice charge category")
    method = models.CharField(max_length=20, choices=AllocationMethod.choices)
    treatment = models.CharField(max_length=16, choices=Treatment.choices, blank=True)
    rule = models.ForeignKey(MappingRule, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    pool = models.ForeignKey(SharedCostPool, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    line_count = models.BigIntegerField(default=0, help_text="Ledger lines behind it")
    quantity = models.DecimalField(
        max_digits=QUANTITY_MAX_DIGITS, decimal_places=QUANTITY_DECIMAL_PLACES, default=0, help_text="In `unit`"
    )
    rated_cost = models.DecimalField(
        max_digits=RATED_MAX_DIGITS, decimal_places=RATED_DECIMAL_PLACES, default=0, help_text="Before the true-up"
    )
    amount = models.DecimalField(max_digits=ALLOCATED_MAX_DIGITS, decimal_places=ALLOCATED_DECIMAL_PLACES)

    class Meta:
        ordering = ["run", "cost_center", "provider", "team", "feature", "id"]
        indexes = [models.Index(fields=["run", "cost_center"], name="allocation_line_run_center")]
        constraints = [
            models.CheckConstraint(
                condition=(Q(cost_center__isnull=True) & ~Q(reason="")) | (Q(cost_center__isnull=False) & Q(reason="")),
                name="allocation_line_reason_iff_unallocated",
            ),
        ]

    def __str__(self) -> str:
        where = self.cost_center.code if self.cost_center_id else f"unallocated ({self.reason})"
        return f"run {self.run_id} {self.provider} -> {where}: {self.amount}"


class ReconciliationLine(models.Model):
    """Rated usage against the invoice for one provider and model (or the provider as a whole)."""

    run = models.ForeignKey(AllocationRun, on_delete=models.CASCADE, related_name="reconciliation")
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128, blank=True, help_text="Empty: the provider's total")
    invoice_cost = models.DecimalField(max_digits=RATED_MAX_DIGITS, decimal_places=RATED_DECIMAL_PLACES)
    rated_cost = models.DecimalField(max_digits=RATED_MAX_DIGITS, decimal_places=RATED_DECIMAL_PLACES)
    variance = models.DecimalField(max_digits=RATED_MAX_DIGITS, decimal_places=RATED_DECIMAL_PLACES)
    variance_share = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, help_text="Variance / invoice; empty if no invoice"
    )
    within_tolerance = models.BooleanField()

    class Meta:
        ordering = ["run", "provider", "model"]
        constraints = [
            models.UniqueConstraint(fields=["run", "provider", "model"], name="reconciliation_line_unique"),
        ]

    def __str__(self) -> str:
        return f"run {self.run_id} {self.provider} {self.model or 'total'}: {self.variance}"
