"""Statuses of the monthly close (DESIGN.md "Statements, sign-off, disputes, journals")."""

from django.db import models

__all__ = ["DisputeStatus", "PeriodStatus", "StatementLineKind", "StatementStatus"]


class PeriodStatus(models.TextChoices):
    """Where a month stands in its close."""

    OPEN = "open", "Open"
    CLOSING = "closing", "Closing (statements out for review)"
    CLOSED = "closed", "Closed"


class StatementStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    APPROVED = "approved", "Approved"
    POSTED = "posted", "Posted"
    SUPERSEDED = "superseded", "Reopened (replaced by a revision)"


# Statements in these states are signed off: their content never changes again.
SIGNED_STATUSES: tuple[str, ...] = (StatementStatus.APPROVED, StatementStatus.POSTED)
# Every status but superseded: a reopened revision is history, and lists and counts of a
# month's statements are of its live revisions.
LIVE_STATUSES: tuple[str, ...] = tuple(s for s in StatementStatus.values if s != StatementStatus.SUPERSEDED)


class StatementLineKind(models.TextChoices):
    """What a statement line is: this month's charge, a bucket the cost center owns, or
    money from another month landing here."""

    CHARGE = "charge", "Charge"
    UNALLOCATED = "unallocated", "Unallocated (owned by this cost center)"
    CORRECTION = "correction", "Prior-period correction"
    ADJUSTMENT = "adjustment", "Dispute adjustment"


class DisputeStatus(models.TextChoices):
    OPEN = "open", "Open"
    UNDER_REVIEW = "under_review", "Under review"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"


# Disputes finance still has to decide.
UNDECIDED_DISPUTES: tuple[str, ...] = (DisputeStatus.OPEN, DisputeStatus.UNDER_REVIEW)

__all__ += ["LIVE_STATUSES", "SIGNED_STATUSES", "UNDECIDED_DISPUTES"]

# What a signed statement PDF carries inside as PDF/A-3 embedded files: the statement's
# lines (CSV), and its identity (JSON: statement_id, cost_center, period, content_hash),
# which verification compares with the approved statement in the database.
STATEMENT_PDF_LINES_FILE = "statement-lines.csv"
STATEMENT_PDF_IDENTITY_FILE = "statement.json"
# ... and every feature's cost per request and per trace (the PDF prints the largest).
STATEMENT_PDF_UNIT_COSTS_FILE = "statement-unit-costs.csv"

__all__ += ["STATEMENT_PDF_IDENTITY_FILE", "STATEMENT_PDF_LINES_FILE", "STATEMENT_PDF_UNIT_COSTS_FILE"]


class StatementPdfStatus(models.TextChoices):
    """Where a signed statement's PDF stands: queued on approval, made, or failed (with why)."""

    PENDING = "pending", "Being made"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


__all__ += ["StatementPdfStatus"]


class JournalEntryKind(models.TextChoices):
    """Why a journal entry exists: a statement's own charges, money from another month
    landing on it (a prior-period correction, an accepted dispute), or the undoing of an
    earlier entry (an entry is never edited)."""

    CHARGEBACK = "chargeback", "Chargeback"
    CORRECTION = "correction", "Prior-period correction"
    ADJUSTMENT = "adjustment", "Dispute adjustment"
    REVERSAL = "reversal", "Reversal"


class JournalEntryStatus(models.TextChoices):
    """Where an entry stands with the ERP: waiting to be pulled, handed over, posted there
    (the ERP acknowledged it with its own document number)."""

    READY = "ready", "Ready"
    EXPORTED = "exported", "Exported"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"


class JournalGroupBy(models.TextChoices):
    """How a statement's chargeback is summed into journal lines (CHARGEBACK_JOURNAL_GROUP_BY)."""

    MODALITY = "modality", "A pair of lines per GL account pair and modality"
    ACCOUNT = "account", "A pair of lines per GL account pair"


__all__ += ["JournalEntryKind", "JournalEntryStatus", "JournalGroupBy"]
