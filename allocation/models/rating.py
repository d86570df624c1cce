"""Ratings of a period's usage: the run, the rules it derived from the price books, the sums it
kept for allocation, and its rated usage."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from allocation.choices import RatingRunStatus
from pricing.money import QUANTITY_DECIMAL_PLACES, QUANTITY_MAX_DIGITS

__all__ = ["RatingRun", "RatingRule", "KeptTags", "RatingSum", "RatingRequestCount", "RatedUsage"]


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
    status = models.CharField(max_length=16, choices=RatingRunStatus.choices, default=RatingRunStatus.RUNNING)
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
