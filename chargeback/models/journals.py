"""Journal entries: the balanced double entries an approved statement's chargeback
becomes in the general ledger, pulled by the ERP and acknowledged with its own document
number. An entry is never edited: what must be undone is reversed by another entry."""

from django.db import models
from django.db.models import Q

from allocation.models import CostCenter
from chargeback.choices import JournalEntryKind, JournalEntryStatus

__all__ = ["JournalEntry", "JournalLine"]


class JournalEntry(models.Model):
    """One journal entry (header) for one statement: its company, period, posting date,
    currency and memo, and the stable external id the ERP knows it by. Its lines balance:
    debits equal credits, in cents."""

    statement = models.ForeignKey("chargeback.Statement", on_delete=models.PROTECT, related_name="journal_entries")
    cost_center = models.ForeignKey(CostCenter, on_delete=models.PROTECT, related_name="journal_entries")
    kind = models.CharField(max_length=16, choices=JournalEntryKind.choices)
    reverses = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reversed_by",
        help_text="The entry a reversal undoes (an entry is reversed once at most)",
    )
    company = models.CharField(max_length=32, help_text="The legal entity the ERP books it in (CHARGEBACK_COMPANY)")
    period = models.CharField(max_length=7, help_text="YYYY-MM: the period the money lands in")
    posting_date = models.DateField()
    currency = models.CharField(max_length=3)
    memo = models.CharField(max_length=300)
    external_id = models.CharField(
        max_length=100, unique=True, help_text="Stable and deterministic: CB-<period>-<cost center>-<kind>-<n>"
    )
    status = models.CharField(max_length=16, choices=JournalEntryStatus.choices, default=JournalEntryStatus.READY)
    erp_document_number = models.CharField(max_length=64, blank=True, help_text="The ERP's, from its acknowledgement")
    exported_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    # The API's page of 500 entries of 50 lines would otherwise build 25,000 lines' JSON on
    # every pull; entries and lines never change, so it is built once, with the lines.
    lines_json = models.TextField(
        default="[]", editable=False, help_text="Its lines as the API gives them: a JSON array, in line order"
    )
    total_cents = models.BigIntegerField(default=0, editable=False, help_text="Its debits' sum (= its credits')")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True, help_text="For the ERP's `updated_after` pulls")

    class Meta:
        ordering = ["period", "external_id"]
        verbose_name_plural = "journal entries"
        indexes = [
            models.Index(fields=["period", "status"], name="journal_entry_period_status"),
            models.Index(fields=["updated_at", "id"], name="journal_entry_updated_cursor"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind=JournalEntryKind.REVERSAL) & Q(reverses__isnull=False))
                | (~Q(kind=JournalEntryKind.REVERSAL) & Q(reverses__isnull=True)),
                name="journal_entry_reversal_names_its_entry",
            ),
            models.CheckConstraint(
                condition=~Q(status=JournalEntryStatus.ACKNOWLEDGED)
                | (~Q(erp_document_number="") & Q(acknowledged_at__isnull=False)),
                name="journal_entry_acknowledged_has_document",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.get_status_display()})"


class JournalLine(models.Model):
    """One line of an entry: a GL account (with the cost center on a cost center's own
    account; none on a clearing account), and either a debit or a credit in cents."""

    entry = models.ForeignKey(JournalEntry, on_delete=models.CASCADE, related_name="lines")
    line_no = models.PositiveIntegerField()
    gl_account = models.CharField("GL account", max_length=32)
    cost_center = models.ForeignKey(
        CostCenter, null=True, blank=True, on_delete=models.PROTECT, related_name="journal_lines"
    )
    debit_cents = models.BigIntegerField(default=0)
    credit_cents = models.BigIntegerField(default=0)
    modality = models.CharField(max_length=32, blank=True, help_text="The grouping key when grouped by modality")
    description = models.CharField(max_length=300)

    class Meta:
        ordering = ["entry", "line_no"]
        constraints = [
            models.UniqueConstraint(fields=["entry", "line_no"], name="journal_line_unique_number"),
            models.CheckConstraint(
                condition=(Q(debit_cents__gt=0) & Q(credit_cents=0)) | (Q(debit_cents=0) & Q(credit_cents__gt=0)),
                name="journal_line_debit_or_credit",
            ),
        ]

    def __str__(self) -> str:
        side = f"Dr {self.debit_cents}" if self.debit_cents else f"Cr {self.credit_cents}"
        return f"{self.entry.external_id} #{self.line_no} {self.gl_account} {side}"
