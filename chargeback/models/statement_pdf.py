"""The signed PDF of an approved statement: what leaves the system for the cost center's
monthly pack and the auditors."""

from django.db import models
from django.db.models import Q

from chargeback.choices import StatementPdfStatus

__all__ = ["StatementPdf"]


class StatementPdf(models.Model):
    """One statement's signed PDF, its state and its fingerprint.

    A table of its own, never fields on Statement: a signed-off statement's row is frozen
    (on PostgreSQL by a trigger), while its PDF is made after sign-off and may be made
    again (a failed render, a new signing certificate)."""

    statement = models.OneToOneField("chargeback.Statement", on_delete=models.PROTECT, related_name="pdf")
    status = models.CharField(max_length=16, choices=StatementPdfStatus.choices, default=StatementPdfStatus.PENDING)
    file = models.FileField(upload_to="statements/pdf/", blank=True, max_length=255)
    sha256 = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the signed file")
    size = models.BigIntegerField(default=0, help_text="Bytes")
    page_count = models.IntegerField(default=0)
    rendered_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, help_text="Why the last attempt failed")
    queued_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(status=StatementPdfStatus.READY)
                | (~Q(file="") & ~Q(sha256="") & Q(rendered_at__isnull=False)),
                name="statement_pdf_ready_has_file",
            ),
        ]

    def __str__(self) -> str:
        return f"PDF of {self.statement} ({self.get_status_display()})"
