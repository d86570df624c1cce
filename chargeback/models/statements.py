"""Statements: what one cost center is charged for one month, from one allocation run."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from allocation.choices import Treatment
from allocation.models import AllocationLine, AllocationRun, CostCenter
from allocation.models.runs import ALLOCATED_DECIMAL_PLACES, ALLOCATED_MAX_DIGITS
from chargeback.choices import StatementLineKind, StatementStatus
from pricing.money import QUANTITY_DECIMAL_PLACES, QUANTITY_MAX_DIGITS

__all__ = [
    "CHARGEBACK_LINES",
    "LIVE_STATEMENTS",
    "STATEMENT_LINE_CONTENT",
    "LedgerFeatureCount",
    "LedgerFeatureCountMark",
    "Statement",
    "StatementFeature",
    "StatementLine",
]

# The lines of a statement charged to its cost center, whose sum is its `chargeback` and
# from which journal entries follow: not an unallocated bucket it owns, not showback.
# `StatementLine.is_chargeback` says the same of one line.
CHARGEBACK_LINES = ~Q(kind=StatementLineKind.UNALLOCATED) & Q(reason="") & ~Q(treatment=Treatment.SHOWBACK)

# A month's live statements: a reopened (superseded) revision is history, which lists,
# counts and the close leave out.
LIVE_STATEMENTS = ~Q(status=StatementStatus.SUPERSEDED)


# A line's content, in order: what the statement's content hash covers, a build writes
# and the API shows of it.
STATEMENT_LINE_CONTENT = (
    "kind",
    "source_period",
    "provider",
    "model",
    "modality",
    "team",
    "feature",
    "environment",
    "treatment",
    "category",
    "method",
    "reason",
    "description",
    "unit",
    "quantity",
    "line_count",
    "amount",
)


def _money(**kwargs) -> models.DecimalField:
    return models.DecimalField(
        max_digits=ALLOCATED_MAX_DIGITS, decimal_places=ALLOCATED_DECIMAL_PLACES, default=0, **kwargs
    )


class Statement(models.Model):
    """One cost center's charges for one period: its lines, their totals and its sign-off.

    Built from the stored lines of the run being closed (never from live prices). Once
    approved its content never changes (the database refuses it on PostgreSQL); what
    comes later lands on the next period's statement. Finance may reopen a signed
    statement of a month still open: it becomes history (superseded, its journal entries
    reversed) and a new revision, `replaces` pointing back at it, takes its place."""

    period = models.CharField(max_length=7, help_text="YYYY-MM")
    cost_center = models.ForeignKey(CostCenter, on_delete=models.PROTECT, related_name="statements")
    run = models.ForeignKey(AllocationRun, on_delete=models.PROTECT, related_name="statements")
    status = models.CharField(max_length=16, choices=StatementStatus.choices, default=StatementStatus.DRAFT)
    currency = models.CharField(max_length=3, default="USD")
    total = _money(help_text="Everything on the statement: charges, owned unallocated, corrections, adjustments")
    chargeback = _money(help_text="Charged to the cost center (journal entries follow)")
    showback = _money(help_text="Reported only")
    unallocated = _money(help_text="Unallocated buckets this cost center owns")
    corrections = _money(help_text="Prior-period corrections booked here")
    adjustments = _money(help_text="Accepted disputes booked here")
    previous_total = _money(null=True, blank=True, help_text="The month before's total; empty without one")
    line_count = models.IntegerField(default=0)
    content_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the content, set at sign-off")
    built_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    posted_at = models.DateTimeField(null=True, blank=True)
    revision = models.PositiveIntegerField(default=1, help_text="1 at first; one more each time it is reopened")
    replaces = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="replaced_by",
        help_text="The reopened revision this one takes the place of",
    )
    reopened_at = models.DateTimeField(null=True, blank=True)
    reopened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reopen_reason = models.TextField(blank=True, help_text="Why finance reopened it, as written then")

    class Meta:
        ordering = ["-period", "cost_center__code", "-revision"]
        constraints = [
            models.UniqueConstraint(
                fields=["period", "cost_center", "revision"], name="statement_one_per_center_period_revision"
            ),
            # Older revisions are history; one statement per cost center and month is live.
            models.UniqueConstraint(
                fields=["period", "cost_center"],
                condition=LIVE_STATEMENTS,
                name="statement_one_live_per_center_and_period",
            ),
            models.CheckConstraint(
                condition=~Q(status=StatementStatus.SUPERSEDED)
                | (Q(reopened_at__isnull=False) & Q(reopened_by__isnull=False) & ~Q(reopen_reason="")),
                name="statement_superseded_has_reopen",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[StatementStatus.DRAFT, StatementStatus.IN_REVIEW])
                | (Q(approved_at__isnull=False) & Q(approved_by__isnull=False) & ~Q(content_hash="")),
                name="statement_signed_off_has_sign_off",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cost_center.code} {self.period} ({self.get_status_display()})"

    @property
    def change(self):
        """The change against the month before, or None without one."""
        return None if self.previous_total is None else self.total - self.previous_total


class StatementLine(models.Model):
    """One line of a statement: a charge with the tags that lead back to the calls
    behind it, an owned unallocated bucket, a prior-period correction or an adjustment."""

    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="lines")
    kind = models.CharField(max_length=16, choices=StatementLineKind.choices)
    source_period = models.CharField(max_length=7, help_text="The month the money belongs to (YYYY-MM)")
    allocation_line = models.ForeignKey(
        AllocationLine, null=True, blank=True, on_delete=models.PROTECT, related_name="statement_lines"
    )
    adjustment = models.ForeignKey(
        "chargeback.Adjustment", null=True, blank=True, on_delete=models.PROTECT, related_name="statement_lines"
    )
    provider = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=128, blank=True)
    modality = models.CharField(max_length=32, blank=True)
    team = models.CharField(max_length=128, blank=True)
    feature = models.CharField(max_length=128, blank=True)
    environment = models.CharField(max_length=32, blank=True)
    treatment = models.CharField(max_length=16, blank=True)
    category = models.CharField(max_length=16, blank=True)
    method = models.CharField(max_length=20, blank=True)
    reason = models.CharField(max_length=24, blank=True, help_text="Why unallocated, for an owned bucket")
    description = models.CharField(max_length=300, blank=True)
    unit = models.CharField(max_length=64, blank=True)
    quantity = models.DecimalField(max_digits=QUANTITY_MAX_DIGITS, decimal_places=QUANTITY_DECIMAL_PLACES, default=0)
    line_count = models.BigIntegerField(default=0, help_text="Ledger lines behind it")
    amount = models.DecimalField(max_digits=ALLOCATED_MAX_DIGITS, decimal_places=ALLOCATED_DECIMAL_PLACES)

    class Meta:
        ordering = ["statement", "kind", "-amount", "id"]
        indexes = [models.Index(fields=["statement", "kind"], name="statement_line_kind")]

    def __str__(self) -> str:
        return f"{self.statement} {self.kind} {self.provider} {self.feature}: {self.amount}"

    @property
    def is_chargeback(self) -> bool:
        """Charged to the cost center (see `CHARGEBACK_LINES`)."""
        return self.kind != StatementLineKind.UNALLOCATED and not self.reason and self.treatment != Treatment.SHOWBACK


class StatementFeature(models.Model):
    """Requests and traces of one feature in one environment behind a statement, counted
    from the ledger when the statement was built: the divisor of cost per request and
    per trace."""

    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="features")
    team = models.CharField(max_length=128, blank=True)
    feature = models.CharField(max_length=128, blank=True)
    environment = models.CharField(max_length=32, blank=True)
    requests = models.BigIntegerField(default=0)
    traces = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["statement", "team", "feature", "environment"]
        constraints = [
            models.UniqueConstraint(
                fields=["statement", "team", "feature", "environment"], name="statement_feature_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.statement} {self.team}/{self.feature} ({self.environment}): {self.requests} requests"


class LedgerFeatureCount(models.Model):
    """Requests and traces of one feature in one environment among one usage batch's
    lines of a month, counted once when the batch is first counted (batches are written
    once and never change), so that building statements sums these instead of reading
    the month's ledger. Distinct within a batch: a call whose lines came in two batches
    counts in each, as the rating's request counts do."""

    period = models.CharField(max_length=7)
    # No FK, as the ledger's own batch column: batches are never deleted.
    batch_id = models.BigIntegerField()
    team = models.CharField(max_length=128, blank=True)
    feature = models.CharField(max_length=128, blank=True)
    environment = models.CharField(max_length=32, blank=True)
    requests = models.BigIntegerField(default=0)
    traces = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["period", "batch_id", "team", "feature", "environment"], name="ledger_feature_count_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.period} batch {self.batch_id} {self.team}/{self.feature} ({self.environment})"


class LedgerFeatureCountMark(models.Model):
    """How far a month's LedgerFeatureCount rows reach: every batch up to `batch_high`."""

    period = models.CharField(max_length=7, unique=True)
    batch_high = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.period}: batches up to {self.batch_high} counted"
