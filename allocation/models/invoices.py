"""Provider invoices, FOCUS-shaped: their batches, rejections, invoices and lines."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from allocation.choices import (
    ChargeCategory,
    InvoiceLineEntry,
    InvoiceSourceFormat,
    UsageBatchStatus,
)

__all__ = ["InvoiceBatch", "InvoiceRejection", "ProviderInvoice", "InvoiceLine"]


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
    restated = models.BigIntegerField(
        default=0, help_text="Of the inserted: lines that restated a charge held with other figures"
    )
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
            models.CheckConstraint(condition=Q(restated__lte=F("inserted")), name="invoice_batch_restated_inserted"),
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
    public price where the source states it.

    Lines are never changed. The charge a line stands for is what it says apart
    from its figures (its invoice, category, SKU, description, unit, model,
    tier, project and charge period); ingestion compares a source line with the
    standing lines of the same charge by their canonical `figures`: the same
    figures are a duplicate, other figures a restatement, written as a reversal
    of the standing line and a replacement. Every line counts: a restated
    charge sums to its latest figures.
    """

    invoice = models.ForeignKey(ProviderInvoice, on_delete=models.PROTECT, related_name="lines")
    line_key = models.CharField(max_length=32, unique=True, help_text="The line's own key, from its source row")
    entry = models.CharField(max_length=16, choices=InvoiceLineEntry.choices, default=InvoiceLineEntry.ORIGINAL)
    restates = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="restated_by",
        help_text="The line a reversal cancels or a replacement takes the place of",
    )
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
    # Exact on both databases (SQLite keeps a decimal column to 15 significant
    # digits), so a file read again compares equal to what it wrote.
    figures = models.CharField(
        max_length=200, help_text="billed|effective|list|quantity as canonical decimal text, as read from the source"
    )

    class Meta:
        ordering = ["invoice", "charge_period_start", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(charge_period_end__gte=F("charge_period_start")), name="invoice_line_period_order"
            ),
            models.CheckConstraint(
                condition=Q(entry=InvoiceLineEntry.ORIGINAL, restates__isnull=True)
                | (~Q(entry=InvoiceLineEntry.ORIGINAL) & Q(restates__isnull=False)),
                name="invoice_line_restates_unless_original",
            ),
            # A line is reversed and replaced at most once: two loads restating the
            # same charge at once cannot both write.
            models.UniqueConstraint(fields=["restates", "entry"], name="invoice_line_restated_once"),
        ]

    def __str__(self) -> str:
        return f"{self.invoice.invoice_id}: {self.charge_category} {self.sku} {self.billed_cost}"
