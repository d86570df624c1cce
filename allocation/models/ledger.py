"""The usage ledger: its batches (one per ingestion), their rejected records, and the lines."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from allocation.choices import (
    UsageBatchStatus,
    UsageLineRestatement,
    UsageSourceFormat,
)
from pricing.money import QUANTITY_DECIMAL_PLACES, QUANTITY_MAX_DIGITS

__all__ = ["UsageBatch", "UsageBucketVersion", "UsageRejection", "UsageLine"]


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
    restated = models.BigIntegerField(
        default=0, help_text="Of the inserted, provider buckets already in the ledger with other figures"
    )
    bytes_total = models.BigIntegerField(null=True, blank=True)
    bytes_read = models.BigIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the batch was refused or failed")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # Who or what sent it: a signed-in user, a token (a service account's or a user's), or
    # neither when an operator ran the command on the server.
    api_token = models.ForeignKey(
        "allocation.ApiToken", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
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
    def sent_by(self) -> str:
        """Who or what sent it, for pages and the API: a user, a token, or '' (the command line)."""
        if self.api_token_id is not None:
            return f"{self.api_token.get_scope_display().split(':')[0]} token {self.api_token.name}"
        if self.created_by_id is not None:
            return self.created_by.get_full_name() or self.created_by.get_username()
        return ""

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

    Append-only: a provider bucket restated with new figures gets a reversal
    line (the negated earlier quantity) and replacement lines in the batch that
    brought the new figures, so every sum over the ledger reads the latest
    figures, and a line count is the sum of `restatement`'s sign (a reversal
    counts -1): see UsageBucketVersion.
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
    # A database default, so COPY and raw inserts that do not name it write an original line.
    restatement = models.SmallIntegerField(
        choices=UsageLineRestatement.choices, default=UsageLineRestatement.ORIGINAL, db_default=0
    )

    class Meta:
        # The drill-down's indexes (a statement line's calls, a trace's calls) are per
        # month, made once the month is allocated: allocation/services/ledger/month_indexes.py.
        constraints = [
            # Only a reversal is negative, and it is never positive.
            models.CheckConstraint(
                condition=Q(quantity__gte=0, restatement__gte=0) | Q(quantity__lte=0, restatement=-1),
                name="usage_line_quantity_sign",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M} {self.provider}/{self.model} {self.quantity} {self.unit}"


class UsageBucketVersion(models.Model):
    """One version of the figures of a provider's usage bucket.

    OpenAI and Anthropic usage reports are time buckets (a day of one model,
    project, key ...), and a bucket is exported again with other figures when
    it was not complete (today's partial day at noon, the whole day tomorrow).
    Each distinct set of figures of a bucket is a version: the first is written
    as original lines; a later one reverses the current version's lines and
    adds its own (UsageLine.restatement), in its own batch. Figures seen before
    in any version are a duplicate. Append-only, like the ledger.
    """

    bucket_key = models.UUIDField(help_text="The provider and the bucket's event id, hashed")
    version = models.PositiveIntegerField()
    figures = models.CharField(max_length=32, help_text="Hash of the canonical unit, tier and quantity of its lines")
    line_keys = models.JSONField(help_text="Event keys of the ledger lines holding these figures")
    batch = models.ForeignKey(UsageBatch, on_delete=models.PROTECT, related_name="bucket_versions")
    source_line = models.IntegerField(help_text="The record of the batch's source that brought these figures")

    class Meta:
        ordering = ["bucket_key", "version"]
        constraints = [
            models.UniqueConstraint(fields=["bucket_key", "version"], name="usage_bucket_version_unique"),
        ]

    def __str__(self) -> str:
        return f"bucket {self.bucket_key} v{self.version} (batch {self.batch_id})"
