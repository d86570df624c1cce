"""The finance side's models, one module per area; each is importable from here."""

from .audit import AuditEvent
from .disputes import Adjustment, Dispute
from .idempotency import IdempotencyKey
from .periods import AccountingPeriod, ReconciliationOverride
from .statements import Statement, StatementFeature, StatementLine

__all__ = [
    "AccountingPeriod",
    "Adjustment",
    "AuditEvent",
    "Dispute",
    "IdempotencyKey",
    "ReconciliationOverride",
    "Statement",
    "StatementFeature",
    "StatementLine",
]
