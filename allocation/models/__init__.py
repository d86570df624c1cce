"""The allocation app's models, one module per area; each is importable from here.

Turning `models.py` into this package keeps the app label `allocation`, so the
migrations are the same.
"""

from .access import ApiToken, CostCenterMembership
from .idempotency import IdempotencyKey
from .invoices import InvoiceBatch, InvoiceLine, InvoiceRejection, ProviderInvoice
from .ledger import UsageBatch, UsageBucketVersion, UsageLine, UsageRejection
from .mapping import MappingRule, MappingVersion, MappingVersionEvent, SharedCostPool
from .org import CostCenter, Feature, Team, Tenant
from .rating import KeptTags, RatedUsage, RatingRequestCount, RatingRule, RatingRun, RatingSum
from .runs import ActivityCount, AllocationLine, AllocationRun, ReconciliationLine

__all__ = [
    "ActivityCount",
    "ApiToken",
    "AllocationLine",
    "AllocationRun",
    "CostCenter",
    "CostCenterMembership",
    "Feature",
    "IdempotencyKey",
    "InvoiceBatch",
    "InvoiceLine",
    "InvoiceRejection",
    "KeptTags",
    "MappingRule",
    "MappingVersion",
    "MappingVersionEvent",
    "ProviderInvoice",
    "RatedUsage",
    "RatingRequestCount",
    "RatingRule",
    "RatingRun",
    "RatingSum",
    "ReconciliationLine",
    "SharedCostPool",
    "Team",
    "Tenant",
    "UsageBatch",
    "UsageBucketVersion",
    "UsageLine",
    "UsageRejection",
]
