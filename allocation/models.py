"""Cost objects, the usage ledger and its rating, provider invoices, and mapping versions."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from pricing.money import QUANTITY_DECIMAL_PLACES, QUANTITY_MAX_DIGITS

from .choices import (
    AllocationMethod,
    AllocationRunStatus,
    ChargeCategory,
    ChargeModel,
    InvoiceSourceFormat,
    MappingVersionStatus,
    PoolMethod,
    Treatment,
    UnallocatedReason,
    UsageBatchStatus,
    UsageSourceFormat,
)

__all__ = [
    "CostCenter",
    "Team",
    "Feature",
    "Tenant",
    "UsageBatch",
    "UsageRejection",
    "UsageLine",
    "InvoiceBatch",
    "InvoiceRejection",
    "ProviderInvoice",
    "InvoiceLine",
]


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


class UsageBatch(models.Model):
    """One ingestion of usage: a file, an upload or a gateway API call.

    Every record read is accounted for: inserted, duplicate (already in the
    ledger) or rejected with its reason, and the database holds that identity.
    """

    source_format = models.CharField(max_length=32, choices=UsageSourceFormat.choices)
    source_name = models.CharField(max_length=500, help_text="File name, or the API client")
    status = models.CharField(max_length=16, choices=UsageBatchStatus.choices, default=UsageBatchStatus.PENDING)
    rows_read = models.BigIntegerField(default=0)
    inserted = models.BigIntegerField(default=0)
    duplicate = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    lines_inserted = models.BigIntegerField(default=0, help_text="Ledger lines written (a record may hold several)")
    bytes_total = models.BigIntegerField(null=True, blank=True)
    bytes_read = models.BigIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the batch was refused or failed")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "usage batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(rows_read=F("inserted") + F("duplicate") + F("rejected")),
                name="usage_batch_rows_accounted",
            ),
        ]

    def __str__(self) -> str:
        return f"Batch {self.pk} ({self.source_format}: {self.source_name})"

    @property
    def progress(self) -> float | None:
        """Share of the source read, 0..1, when its size is known."""
        if not self.bytes_total:
            return None
        return min(1.0, self.bytes_read / self.bytes_total)


class UsageRejection(models.Model):
    """A record refused by ingestion, kept with the place and reason to fix it."""

    batch = models.ForeignKey(UsageBatch, on_delete=models.CASCADE, related_name="rejections")
    line = models.IntegerField(help_text="Line in the file (or record number in a JSON document)")
    field = models.CharField(max_length=200)
    reason = models.CharField(max_length=500)
    raw = models.TextField(blank=True)

    class Meta:
        ordering = ["batch", "line", "id"]

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


class UsageLine(models.Model):
    """One priced quantity of one AI call (or usage bucket) in one unit.

    Quantities of a call are disjoint across units (cached input is not inside
    input_token), so summing lines never counts a token twice. The event key
    is derived from the source's event id and the unit, which makes ingestion
    idempotent. Written only by ingestion, in bulk (COPY on PostgreSQL).
    """

    event_key = models.UUIDField(primary_key=True)
    # No FK constraint: per-row referential checks would double the COPY time,
    # and only ingestion, which creates the batch first, writes this table.
    batch = models.ForeignKey(
        UsageBatch, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="lines"
    )
    source_line = models.IntegerField(help_text="Line (record) in the source the quantity came from")
    event_id = models.CharField(max_length=255, help_text="The source's id of the call or usage bucket")
    occurred_at = models.DateTimeField(db_index=True)
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128, blank=True)
    service_tier = models.CharField(max_length=32, blank=True)
    unit = models.CharField(max_length=64)
    quantity = models.DecimalField(max_digits=QUANTITY_MAX_DIGITS, decimal_places=QUANTITY_DECIMAL_PLACES)
    tier = models.CharField(max_length=64, blank=True, help_text="Unit tier: image quality/size, voice/transcript")
    context_tokens = models.BigIntegerField(null=True, blank=True, help_text="Request's input size, for context bands")
    context_band = models.CharField(max_length=32, blank=True, help_text="Context band as the source states it")
    team = models.CharField(max_length=128, blank=True)
    feature = models.CharField(max_length=128, blank=True)
    environment = models.CharField(max_length=32, blank=True)
    tenant = models.CharField(max_length=128, blank=True)
    end_user = models.CharField(max_length=255, blank=True)
    session_id = models.CharField(max_length=255, blank=True)
    trace_id = models.CharField(max_length=128, blank=True)
    request_id = models.CharField(max_length=255, blank=True)
    modality = models.CharField(max_length=32, blank=True)
    caller = models.CharField(max_length=128, blank=True, help_text="Team calling a shared service")
    project = models.CharField(max_length=128, blank=True, help_text="Provider project or workspace")
    api_key = models.CharField(max_length=128, blank=True, help_text="Provider API key id")
    outcome = models.CharField(
        max_length=16, blank=True, default="", help_text="Empty when the call succeeded; failed or moderated"
    )
    is_untagged = models.BooleanField(help_text="Missing team, feature or environment")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=0), name="usage_line_quantity_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M} {self.provider}/{self.model} {self.quantity} {self.unit}"


class RatingRun(models.Model):
    """One rating of a period's usage at the prices then in force.

    It records the price book versions it used, and the rules it derived from
    them, so its costs can always be explained and reproduced. The newest
    completed run of a period is the one reports use.

    A rating made for an allocation also keeps its sums by the mapping's tags
    (RatingSum) and, when a pool is driven by requests, the requests per payer's
    tags (RatingRequestCount). An allocation run uses them instead of reading the
    ledger again: as they are while no usage batch has come since and the price
    books are the same, or extended by a new rating with the later batches' lines
    and priced at the new prices, while its cuts (`thresholds`, `price_cuts`) are
    as fine as the prices need (`ledger_batch_high`, `ledger_settled`).
    """

    period = models.CharField(max_length=7, help_text="YYYY-MM")
    status = models.CharField(max_length=16, default="running")
    price_book_versions = models.ManyToManyField("pricing.PriceBookVersion", related_name="rating_runs")
    lines_rated = models.BigIntegerField(default=0)
    lines_unpriced = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=30, decimal_places=12, default=0, help_text="Rated cost of priced lines")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    thresholds = models.JSONField(default=list, help_text="Request-size bucket edges of the kept sums")
    price_cuts = models.JSONField(default=list, help_text="Moments (ISO 8601) the kept sums' price segments start at")
    sum_fields = models.JSONField(default=list, help_text="Ledger tags the kept sums are by; none kept when empty")
    request_fields = models.JSONField(
        null=True, blank=True, help_text="Tags the kept request counts are by; none kept when empty"
    )
    ledger_batch_high = models.BigIntegerField(
        null=True, blank=True, help_text="The newest usage batch when the ledger was read"
    )
    ledger_settled = models.BooleanField(default=False, help_text="No usage batch was loading when the ledger was read")

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["period", "status"], name="rating_run_period")]

    def __str__(self) -> str:
        return f"Rating {self.pk} of {self.period}"


class RatingRule(models.Model):
    """Which price applies to a ledger key over a time range and context band.

    Derived by the rating run from the price books (contract over list, own
    tier over standard, long-context bands); the ledger joins to these rules
    in one set-based statement. Rules of one key never overlap.
    """

    run = models.ForeignKey(RatingRun, on_delete=models.CASCADE, related_name="rules")
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128, blank=True)
    unit = models.CharField(max_length=64)
    service_tier = models.CharField(max_length=32, blank=True)
    tier = models.CharField(max_length=64, blank=True)
    context_band = models.CharField(max_length=32, blank=True)
    valid_from = models.DateTimeField()
    valid_to = models.DateTimeField()
    context_above = models.BigIntegerField(default=0)
    context_upto = models.BigIntegerField(null=True, blank=True)
    band_context = models.BigIntegerField(null=True, blank=True, help_text="Request size a stated band implies")
    price = models.ForeignKey("pricing.Price", on_delete=models.PROTECT)

    class Meta:
        indexes = [models.Index(fields=["run", "provider", "model", "unit"], name="rating_rule_key")]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} {self.unit} from {self.valid_from:%Y-%m-%d}: {self.price_id}"


class KeptTags(models.Model):
    """The ledger tags a rating keeps its rows by (empty where it did not keep one)."""

    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128, blank=True)
    team = models.CharField(max_length=128, blank=True)
    feature = models.CharField(max_length=128, blank=True)
    environment = models.CharField(max_length=32, blank=True)
    tenant = models.CharField(max_length=128, blank=True)
    modality = models.CharField(max_length=32, blank=True)
    caller = models.CharField(max_length=128, blank=True)
    project = models.CharField(max_length=128, blank=True)
    outcome = models.CharField(max_length=16, blank=True)

    class Meta:
        abstract = True


class RatingSum(KeptTags):
    """A rating run's sum of the ledger lines alike to price and to map: one price
    segment (`day`, its first day), rating key, request-size bucket (`bucket`, an
    index into the run's `thresholds`; -1 when no size was given), usage batch and
    combination of the run's `sum_fields` (the others are empty). An allocation
    prices these rather than the ledger's lines."""

    run = models.ForeignKey(RatingRun, on_delete=models.CASCADE, related_name="sums")
    day = models.DateField()
    unit = models.CharField(max_length=64)
    service_tier = models.CharField(max_length=32, blank=True)
    tier = models.CharField(max_length=64, blank=True)
    context_band = models.CharField(max_length=32, blank=True)
    bucket = models.SmallIntegerField()
    is_untagged = models.BooleanField()
    batch_id = models.BigIntegerField(help_text="The usage batch the lines came from")
    quantity = models.DecimalField(max_digits=QUANTITY_MAX_DIGITS, decimal_places=QUANTITY_DECIMAL_PLACES)
    line_count = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.day} {self.provider}/{self.model} {self.quantity} {self.unit}"


class RatingRequestCount(KeptTags):
    """Requests (distinct calls) of a rating run's period per combination of its
    `request_fields`, the tags that decide who pays (the others are empty): the
    driver of shared-cost pools split by requests."""

    run = models.ForeignKey(RatingRun, on_delete=models.CASCADE, related_name="request_counts")
    requests = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.requests} requests of {self.team or '-'}/{self.feature or '-'}"


class RatedUsage(models.Model):
    """A period's usage with its cost, per price segment and price: what was priced at
    which price, and what could not be priced. `day` is the first day of the segment,
    a span of the period over which no price of the books changes (usually the month).

    It holds the rating's keys only; costs by team, feature or any other tag
    are summed from the ledger joined to the run's rules (`rated_lines_sql`),
    the same way, whenever asked. `price` empty means unpriced: such usage is
    counted and reported, never costed at $0.
    """

    run = models.ForeignKey(RatingRun, on_delete=models.CASCADE, related_name="rated_usage")
    day = models.DateField()
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128, blank=True)
    unit = models.CharField(max_length=64)
    service_tier = models.CharField(max_length=32, blank=True)
    tier = models.CharField(max_length=64, blank=True)
    price = models.ForeignKey("pricing.Price", null=True, blank=True, on_delete=models.PROTECT)
    quantity = models.DecimalField(max_digits=QUANTITY_MAX_DIGITS, decimal_places=QUANTITY_DECIMAL_PLACES)
    line_count = models.BigIntegerField()
    cost = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)

    class Meta:
        verbose_name_plural = "rated usage"
        constraints = [
            models.CheckConstraint(
                condition=Q(price__isnull=True, cost__isnull=True) | Q(price__isnull=False, cost__isnull=False),
                name="rated_usage_cost_iff_priced",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.provider}/{self.model} {self.quantity} {self.unit}: {self.cost}"


# Invoice amounts keep sub-cent precision as the provider states it (FOCUS
# samples carry 11 places, Anthropic's cents divided by 100 up to 7 or more);
# quantities as FOCUS states them (15 places).
INVOICE_MONEY_MAX_DIGITS = 30
INVOICE_MONEY_DECIMAL_PLACES = 12
INVOICE_QUANTITY_MAX_DIGITS = 36
INVOICE_QUANTITY_DECIMAL_PLACES = 15


class InvoiceBatch(models.Model):
    """One ingestion of a provider invoice file.

    Like a usage batch, every line read is accounted for: inserted, duplicate
    (already held, by its line key) or rejected with its reason.
    """

    source_format = models.CharField(max_length=32, choices=InvoiceSourceFormat.choices)
    source_name = models.CharField(max_length=500, help_text="File name")
    provider = models.CharField(max_length=64, help_text="Provider code the file was ingested for")
    status = models.CharField(max_length=16, choices=UsageBatchStatus.choices, default=UsageBatchStatus.PENDING)
    rows_read = models.BigIntegerField(default=0)
    inserted = models.BigIntegerField(default=0)
    duplicate = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the batch was refused or failed")
    invoices = models.ManyToManyField(
        "ProviderInvoice", blank=True, related_name="batches", help_text="Invoices the file had lines of"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "invoice batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(rows_read=F("inserted") + F("duplicate") + F("rejected")),
                name="invoice_batch_rows_accounted",
            ),
        ]

    def __str__(self) -> str:
        return f"Invoice batch {self.pk} ({self.source_format}: {self.source_name})"


class InvoiceRejection(models.Model):
    """An invoice line refused by ingestion, kept with the place and reason to fix it."""

    batch = models.ForeignKey(InvoiceBatch, on_delete=models.CASCADE, related_name="rejections")
    line = models.IntegerField(help_text="Line in the file (or result number in a JSON document)")
    field = models.CharField(max_length=200)
    reason = models.CharField(max_length=500)
    raw = models.TextField(blank=True)

    class Meta:
        ordering = ["batch", "line", "id"]

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


class ProviderInvoice(models.Model):
    """What a provider bills for one billing period: the total allocation ties to.

    The invoice id is the provider's (FOCUS InvoiceId) where the source gives
    one; otherwise it is derived from the provider, account and billing month.
    """

    provider = models.CharField(max_length=64)
    invoice_id = models.CharField(max_length=255)
    issuer = models.CharField(max_length=255, blank=True, help_text="Who issued it (FOCUS ProviderName)")
    billing_account = models.CharField(max_length=255, blank=True)
    billing_period_start = models.DateTimeField()
    billing_period_end = models.DateTimeField()
    currency = models.CharField(max_length=3, help_text="ISO 4217, upper case")
    source_batch = models.ForeignKey(InvoiceBatch, on_delete=models.PROTECT, related_name="created_invoices")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "billing_period_start", "invoice_id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "invoice_id"], name="provider_invoice_unique_id"),
            models.CheckConstraint(
                condition=Q(billing_period_end__gt=F("billing_period_start")), name="provider_invoice_period_order"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.invoice_id} ({self.billing_period_start:%Y-%m-%d})"


class InvoiceLine(models.Model):
    """One charge on a provider invoice, as FOCUS describes a cost row.

    Billed cost is what the invoice asks for; effective cost spreads
    prepayments and commitments over what used them; list cost is the
    public price where the source states it. The line key (derived from the
    source line's content) makes ingestion idempotent.
    """

    invoice = models.ForeignKey(ProviderInvoice, on_delete=models.PROTECT, related_name="lines")
    line_key = models.CharField(max_length=32, unique=True)
    batch = models.ForeignKey(InvoiceBatch, on_delete=models.PROTECT, related_name="lines")
    source_line = models.IntegerField(help_text="Line (result) in the source file")
    charge_category = models.CharField(max_length=16, choices=ChargeCategory.choices)
    sku = models.CharField("SKU", max_length=255, blank=True)
    description = models.TextField(blank=True)
    unit = models.CharField(max_length=64, blank=True)
    quantity = models.DecimalField(
        max_digits=INVOICE_QUANTITY_MAX_DIGITS, decimal_places=INVOICE_QUANTITY_DECIMAL_PLACES, null=True, blank=True
    )
    billed_cost = models.DecimalField(max_digits=INVOICE_MONEY_MAX_DIGITS, decimal_places=INVOICE_MONEY_DECIMAL_PLACES)
    effective_cost = models.DecimalField(
        max_digits=INVOICE_MONEY_MAX_DIGITS, decimal_places=INVOICE_MONEY_DECIMAL_PLACES
    )
    list_cost = models.DecimalField(
        max_digits=INVOICE_MONEY_MAX_DIGITS, decimal_places=INVOICE_MONEY_DECIMAL_PLACES, null=True, blank=True
    )
    charge_period_start = models.DateTimeField()
    charge_period_end = models.DateTimeField()
    model = models.CharField(max_length=128, blank=True)
    service_tier = models.CharField(max_length=32, blank=True)
    project = models.CharField(max_length=255, blank=True, help_text="Provider project, workspace or sub-account")

    class Meta:
        ordering = ["invoice", "charge_period_start", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(charge_period_end__gte=F("charge_period_start")), name="invoice_line_period_order"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.invoice.invoice_id}: {self.charge_category} {self.sku} {self.billed_cost}"


# --- Mapping versions: who pays (DESIGN.md "Mapping versions") ---------------


MARGIN_MAX_DIGITS = 9
MARGIN_DECIMAL_PLACES = 4
FEE_MAX_DIGITS = 20
FEE_DECIMAL_PLACES = 2
_CARD_MODELS = [ChargeModel.RATE_CARD, ChargeModel.HYBRID]


class MappingVersion(models.Model):
    """A numbered set of mapping rules and shared-cost pools that says who pays.

    Drafted, then signed off by a finance approver (who, when, content hash)
    and immutable from then on. It takes effect at a period start only, so no
    period is silently re-mapped mid-month.
    """

    number = models.PositiveIntegerField(unique=True)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=MappingVersionStatus.choices, default=MappingVersionStatus.DRAFT)
    effective_from = models.DateField(help_text="First day of the first period it applies to")
    source = models.CharField(max_length=500, blank=True, help_text="File it was loaded from")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    signed_at = models.DateTimeField(null=True, blank=True)
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    content_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the rules and pools at sign-off")

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status=MappingVersionStatus.DRAFT, signed_at__isnull=True, signed_by__isnull=True)
                | (
                    Q(status=MappingVersionStatus.SIGNED, signed_at__isnull=False, signed_by__isnull=False)
                    & ~Q(content_hash="")
                ),
                name="mapping_version_signed_fields",
            ),
        ]

    def __str__(self) -> str:
        return f"Mapping v{self.number} {self.name} ({self.status})"


class MappingRule(models.Model):
    """One ordered rule: usage whose tags match every pattern goes to a cost center.

    Patterns use fnmatch wildcards (`*`, `?`, `[ab]`); a missing tag is the
    empty string. The first rule by position wins.
    """

    version = models.ForeignKey(MappingVersion, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveIntegerField()
    match = models.JSONField(default=dict, blank=True, help_text="Tag -> wildcard pattern")
    cost_center = models.ForeignKey(CostCenter, on_delete=models.PROTECT, related_name="+")
    charge_model = models.CharField(max_length=16, choices=ChargeModel.choices)
    treatment = models.CharField(max_length=16, choices=Treatment.choices, default=Treatment.CHARGEBACK)
    margin_percent = models.DecimalField(
        max_digits=MARGIN_MAX_DIGITS, decimal_places=MARGIN_DECIMAL_PLACES, null=True, blank=True
    )
    rate_card = models.ForeignKey(
        "pricing.PriceBook", null=True, blank=True, on_delete=models.PROTECT, related_name="mapping_rules"
    )
    fixed_fee = models.DecimalField(max_digits=FEE_MAX_DIGITS, decimal_places=FEE_DECIMAL_PLACES, null=True, blank=True)
    service_owner = models.ForeignKey(
        CostCenter,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The providing cost center of a shared service",
    )

    class Meta:
        ordering = ["version", "position"]
        constraints = [
            models.UniqueConstraint(fields=["version", "position"], name="mapping_rule_unique_position"),
            models.CheckConstraint(
                condition=Q(margin_percent__isnull=True) | Q(margin_percent__gte=0),
                name="mapping_rule_margin_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(fixed_fee__isnull=True) | Q(fixed_fee__gte=0), name="mapping_rule_fee_not_negative"
            ),
            models.CheckConstraint(
                condition=~Q(charge_model__in=_CARD_MODELS) | Q(rate_card__isnull=False),
                name="mapping_rule_card_has_rate_card",
            ),
            models.CheckConstraint(
                condition=~Q(charge_model=ChargeModel.FIXED_FEE) | Q(fixed_fee__isnull=False),
                name="mapping_rule_fixed_fee_has_fee",
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.version.number} #{self.position}: {self.match} -> {self.cost_center.code}"


class SharedCostPool(models.Model):
    """Invoice lines no usage explains (platform fees, vector store, support),
    allocated by the pool's method over its target cost centers (none = all active)."""

    version = models.ForeignKey(MappingVersion, on_delete=models.CASCADE, related_name="pools")
    code = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    match = models.JSONField(default=dict, blank=True, help_text="Invoice line field -> wildcard pattern")
    method = models.CharField(max_length=16, choices=PoolMethod.choices)
    driver = models.CharField(max_length=64, blank=True, help_text="Measured driver, or the activity proxy's name")
    target_cost_centers = models.ManyToManyField(CostCenter, blank=True, related_name="shared_cost_pools")
    treatment = models.CharField(max_length=16, choices=Treatment.choices, default=Treatment.CHARGEBACK)

    class Meta:
        ordering = ["version", "code"]
        constraints = [
            models.UniqueConstraint(fields=["version", "code"], name="shared_cost_pool_unique_code"),
            models.CheckConstraint(
                condition=Q(method=PoolMethod.EVEN) | ~Q(driver=""), name="shared_cost_pool_driver_set"
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.version.number} pool {self.code}"


class MappingVersionEvent(models.Model):
    """Audit of a mapping version's status change: who, when, from, to, why, and what."""

    version = models.ForeignKey(MappingVersion, on_delete=models.PROTECT, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    from_status = models.CharField(max_length=16, choices=MappingVersionStatus.choices)
    to_status = models.CharField(max_length=16, choices=MappingVersionStatus.choices)
    at = models.DateTimeField(auto_now_add=True)
    reason = models.TextField(blank=True)
    snapshot = models.JSONField(default=dict)

    class Meta:
        ordering = ["version", "at", "id"]

    def __str__(self) -> str:
        return f"v{self.version.number}: {self.from_status} -> {self.to_status}"


__all__ += ["MappingVersion", "MappingRule", "SharedCostPool", "MappingVersionEvent"]


# --- Allocation runs: one period's invoices on cost centers (DESIGN.md "Allocation run")


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
        ]

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


__all__ += ["ActivityCount", "AllocationRun", "AllocationLine", "ReconciliationLine"]
