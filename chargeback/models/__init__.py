"""The finance side's models, one module per area; each is importable from here."""

from .audit import AuditEvent
from .disputes import Adjustment, Dispute
from .journals import JournalEntry, JournalLine
from .periods import AccountingPeriod, ReconciliationOverride
from .statement_pdf import StatementPdf
from .statements import LedgerFeatureCount, LedgerFeatureCountMark, Statement, StatementFeature, StatementLine

__all__ = [
    "AccountingPeriod",
    "Adjustment",
    "AuditEvent",
    "Dispute",
    "JournalEntry",
    "JournalLine",
    "LedgerFeatureCount",
    "LedgerFeatureCountMark",
    "ReconciliationOverride",
    "Statement",
    "StatementFeature",
    "StatementLine",
    "StatementPdf",
]
