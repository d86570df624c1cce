"""Statuses and formats of the allocation package."""

from django.db import models

__all__ = ["Environment", "UsageSourceFormat", "UsageBatchStatus", "TAG_FIELDS", "CORE_TAGS"]


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


__all__ += ["ChargeCategory", "InvoiceSourceFormat"]


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
