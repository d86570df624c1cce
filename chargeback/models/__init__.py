"""The finance side's models, one module per area; each is importable from here."""

from .audit import AuditEvent
from .disputes import Adjustment, Dispute
from .periods import AccountingPeriod, ReconciliationOverride
from .statement_pdf import StatementPdf
from .statements import Statement, StatementFeature, StatementLine

__all__ = [
    "AccountingPeriod",
    "Adjustment",
    "AuditEvent",
    "Dispute",
    "ReconciliationOverride",
    "Statement",
    "StatementFeature",
    "StatementLine",
    "StatementPdf",
]
