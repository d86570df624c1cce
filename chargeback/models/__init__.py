"""The finance side's models, one module per area; each is importable from here."""

from .audit import AuditEvent
from .disputes import Adjustment, Dispute
from .journals import JournalEntry, JournalLine
from .periods import AccountingPeriod, ReconciliationOverride
from .statements import Statement, StatementFeature, StatementLine

__all__ = [
    "AccountingPeriod",
    "Adjustment",
    "AuditEvent",
    "Dispute",
    "JournalEntry",
    "JournalLine",
    "ReconciliationOverride",
    "Statement",
    "StatementFeature",
    "StatementLine",
]
