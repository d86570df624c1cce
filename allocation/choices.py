"""Statuses and formats of the allocation package."""

from django.db import models

__all__ = [
    "ApiTokenScope",
    "BUCKET_SOURCE_FORMATS",
    "CORE_TAGS",
    "Environment",
    "MembershipRole",
    "TAG_FIELDS",
    "UsageBatchStatus",
    "UsageLineRestatement",
    "UsageSourceFormat",
]


class Environment(models.TextChoices):
    PRODUCTION = "production", "Production"
    STAGING = "staging", "Staging"
    DEVELOPMENT = "development", "Development"
    EVAL = "eval", "Evaluation"
    INTERNAL = "internal", "Internal"


class UsageSourceFormat(models.TextChoices):
    CSV = "csv", "CSV (documented schema)"
    JSONL = "jsonl", "JSON lines (documented schema)"
    OPENAI_USAGE = "openai-usage", "OpenAI usage API pages"
    ANTHROPIC_USAGE = "anthropic-usage", "Anthropic usage report pages"
    OTEL = "otel", "OpenTelemetry GenAI spans (OTLP/JSON)"
    API = "api", "Gateway API events"


# Formats whose records are a provider's time buckets (aggregates a provider may
# export again with new figures), not calls with their own ids.
BUCKET_SOURCE_FORMATS: frozenset[str] = frozenset({UsageSourceFormat.OPENAI_USAGE, UsageSourceFormat.ANTHROPIC_USAGE})


class UsageLineRestatement(models.IntegerChoices):
    """What a ledger line is to its bucket: a line counts `1`, a reversal `-1`."""

    ORIGINAL = 0, "Original"
    REPLACEMENT = 1, "Replacement (a restated bucket's new figures)"
    REVERSAL = -1, "Reversal (of a restated bucket's earlier figures)"


class UsageBatchStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    REFUSED = "refused", "Refused"


# Tag name (as users and sources say it) -> UsageLine field. `user` is stored
# as `end_user` because `user` is a reserved word in SQL.
TAG_FIELDS: dict[str, str] = {
    "team": "team",
    "feature": "feature",
    "environment": "environment",
    "tenant": "tenant",
    "user": "end_user",
    "session_id": "session_id",
    "trace_id": "trace_id",
    "request_id": "request_id",
    "modality": "modality",
    "caller": "caller",
    "project": "project",
    "api_key": "api_key",
    # ok (empty), failed or moderated: a shared service charges no caller for the last two
    "outcome": "outcome",
}

# A line lacking any of these is untagged: its cost cannot be attributed.
CORE_TAGS: tuple[str, ...] = ("team", "feature", "environment")


class ChargeCategory(models.TextChoices):
    """What an invoice line charges for, as FOCUS's ChargeCategory says it."""

    USAGE = "usage", "Usage"
    PURCHASE = "purchase", "Purchase"
    TAX = "tax", "Tax"
    CREDIT = "credit", "Credit"
    ADJUSTMENT = "adjustment", "Adjustment"


class InvoiceSourceFormat(models.TextChoices):
    FOCUS = "focus", "FOCUS 1.0-1.2 CSV"
    OPENAI_COSTS = "openai-costs", "OpenAI costs API pages"
    ANTHROPIC_COSTS = "anthropic-costs", "Anthropic cost report pages"
    CSV = "csv", "CSV (documented schema)"


class InvoiceLineEntry(models.TextChoices):
    """How an invoice line came to be: invoices are append-only, so a restated charge
    is a reversal of the figures held and a replacement with the new ones."""

    ORIGINAL = "original", "Original"
    REVERSAL = "reversal", "Reversal"
    REPLACEMENT = "replacement", "Replacement"


__all__ += ["ChargeCategory", "InvoiceLineEntry", "InvoiceSourceFormat"]


class MappingVersionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SIGNED = "signed", "Signed off"


class ChargeModel(models.TextChoices):
    """How a mapped cost is charged (DESIGN.md "Mapping versions")."""

    DIRECT = "direct", "Direct attribution"
    PASSTHROUGH = "passthrough", "Shared-service passthrough (cost plus optional margin)"
    RATE_CARD = "rate_card", "Rate-card showback (spread stays on the service owner)"
    HYBRID = "hybrid", "Hybrid (card for on-card tiers, passthrough for the rest)"
    COST_PLUS = "cost_plus", "Cost plus margin"
    FIXED_FEE = "fixed_fee", "Fixed monthly fee"


class Treatment(models.TextChoices):
    CHARGEBACK = "chargeback", "Chargeback (journal entries)"
    SHOWBACK = "showback", "Showback (reported only)"


class PoolMethod(models.TextChoices):
    PROPORTIONAL = "proportional", "Proportional to a measured driver"
    ACTIVITY = "activity", "Activity-based (a proxy count)"
    EVEN = "even", "Even split"


class PoolDriver(models.TextChoices):
    """Measured drivers of a proportional pool."""

    TOKENS = "tokens", "Tokens"
    SPEND = "spend", "Spend"
    REQUESTS = "requests", "Requests"
    GPU_SECONDS = "gpu_seconds", "GPU seconds"


# Tags a mapping rule may match on (fnmatch patterns), and invoice line fields
# a shared-cost pool may match on.
MAPPING_RULE_TAGS: tuple[str, ...] = (
    "team",
    "feature",
    "environment",
    "tenant",
    "caller",
    "project",
    "provider",
    "model",
    "modality",
)
POOL_MATCH_FIELDS: tuple[str, ...] = ("provider", "sku", "charge_category", "description")

__all__ += [
    "MappingVersionStatus",
    "ChargeModel",
    "Treatment",
    "PoolMethod",
    "PoolDriver",
    "MAPPING_RULE_TAGS",
    "POOL_MATCH_FIELDS",
]


class AllocationRunStatus(models.TextChoices):
    """A run is written whole in one transaction: it is current until a later run supersedes it.

    A correction is not a run of its period: it holds what late data changed in a closed
    period's allocation, booked in a later, open period (DESIGN.md "Corrections, never rewrites").
    """

    COMPLETED = "completed", "Current"
    SUPERSEDED = "superseded", "Superseded"
    CORRECTION = "correction", "Correction of a closed period"


class AllocationProgressState(models.TextChoices):
    """Where a period's allocation run is, as its progress marker (in the cache) says."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class RatingRunStatus(models.TextChoices):
    """A rating is written in one transaction; reports use the newest completed one."""

    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"


class AllocationMethod(models.TextChoices):
    """How an allocation line's amount came about (the `method` of DESIGN.md step 7)."""

    DIRECT = "direct", "Direct attribution"
    PASSTHROUGH = "passthrough", "Shared-service passthrough"
    RATE_CARD = "rate_card", "Rate card price"
    CARD_SPREAD = "card_spread", "Rate-card spread (on the service owner)"
    COST_PLUS = "cost_plus", "Cost plus"
    MARGIN = "margin", "Margin recovered by the service owner"
    FIXED_FEE = "fixed_fee", "Fixed monthly fee"
    FEE_ABSORBED = "fee_absorbed", "Usage under a fixed fee (on the service owner)"
    POOL_PROPORTIONAL = "pool_proportional", "Shared pool, proportional to a driver"
    POOL_ACTIVITY = "pool_activity", "Shared pool, activity-based"
    POOL_EVEN = "pool_even", "Shared pool, even split"
    UNALLOCATED = "unallocated", "Unallocated"


class UnallocatedReason(models.TextChoices):
    """Why money sits in the named unallocated bucket rather than on a cost center."""

    UNTAGGED = "untagged", "Untagged usage no rule maps"
    UNMAPPED = "unmapped", "Tagged usage no rule maps"
    UNPRICED = "unpriced", "Usage no price book prices"
    FAILED_OR_MODERATED = "failed_or_moderated", "Failed or moderated calls of a shared service"
    TRUE_UP_GAP = "true_up_gap", "Invoice amount beyond the true-up tolerance"
    POOL_WITHOUT_DRIVER = "pool_without_driver", "Shared pool with no driver measured"


# Usage outcomes (the `outcome` tag) a shared service does not charge its callers for.
UNCHARGED_OUTCOMES: tuple[str, ...] = ("failed", "moderated")

__all__ += [
    "AllocationProgressState",
    "AllocationRunStatus",
    "AllocationMethod",
    "RatingRunStatus",
    "UnallocatedReason",
    "UNCHARGED_OUTCOMES",
]


class MembershipRole(models.TextChoices):
    """A user's standing in a cost center: a member sees it; an owner also sees the
    cost centers below it (its roll-up) and is told of its disputes."""

    MEMBER = "member", "Member"
    OWNER = "owner", "Owner"


class ApiTokenScope(models.TextChoices):
    """What an API token acts as: its user (with that user's roles and cost centers), or a
    service account that may do one job and nothing else."""

    USER = "user", "Acts as its user"
    GATEWAY = "gateway", "Gateway: feeds usage"
    ERP = "erp", "ERP: reads and acknowledges journal entries"
