"""Mapping versions: who pays (DESIGN.md "Mapping versions")."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from allocation.choices import (
    ChargeModel,
    MappingVersionStatus,
    PoolMethod,
    Treatment,
)

from .org import CostCenter

__all__ = ["MappingVersion", "MappingRule", "SharedCostPool", "MappingVersionEvent"]


MARGIN_MAX_DIGITS = 9
MARGIN_DECIMAL_PLACES = 4
FEE_MAX_DIGITS = 20
FEE_DECIMAL_PLACES = 2
_CARD_MODELS = [ChargeModel.RATE_CARD, ChargeModel.HYBRID]


class MappingVersion(models.Model):
    """A numbered set of mapping rules and shared-cost pools that says who pays.

    Drafted, then signed off by a finance approver (who, when, content hash)
    and immutable from then on. It takes effect at a period start only, so no
    period is silently re-mapped mid-month.
    """

    number = models.PositiveIntegerField(unique=True)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=MappingVersionStatus.choices, default=MappingVersionStatus.DRAFT)
    effective_from = models.DateField(help_text="First day of the first period it applies to")
    source = models.CharField(max_length=500, blank=True, help_text="File it was loaded from")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    signed_at = models.DateTimeField(null=True, blank=True)
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    content_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the rules and pools at sign-off")

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status=MappingVersionStatus.DRAFT, signed_at__isnull=True, signed_by__isnull=True)
                | (
                    Q(status=MappingVersionStatus.SIGNED, signed_at__isnull=False, signed_by__isnull=False)
                    & ~Q(content_hash="")
                ),
                name="mapping_version_signed_fields",
            ),
        ]

    def __str__(self) -> str:
        return f"Mapping v{self.number} {self.name} ({self.status})"


class MappingRule(models.Model):
    """One ordered rule: usage whose tags match every pattern goes to a cost center.

    Patterns use fnmatch wildcards (`*`, `?`, `[ab]`); a missing tag is the
    empty string. The first rule by position wins.
    """

    version = models.ForeignKey(MappingVersion, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveIntegerField()
    match = models.JSONField(default=dict, blank=True, help_text="Tag -> wildcard pattern")
    cost_center = models.ForeignKey(CostCenter, on_delete=models.PROTECT, related_name="+")
    charge_model = models.CharField(max_length=16, choices=ChargeModel.choices)
    treatment = models.CharField(max_length=16, choices=Treatment.choices, default=Treatment.CHARGEBACK)
    margin_percent = models.DecimalField(
        max_digits=MARGIN_MAX_DIGITS, decimal_places=MARGIN_DECIMAL_PLACES, null=True, blank=True
    )
    rate_card = models.ForeignKey(
        "pricing.PriceBook", null=True, blank=True, on_delete=models.PROTECT, related_name="mapping_rules"
    )
    fixed_fee = models.DecimalField(max_digits=FEE_MAX_DIGITS, decimal_places=FEE_DECIMAL_PLACES, null=True, blank=True)
    service_owner = models.ForeignKey(
        CostCenter,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The providing cost center of a shared service",
    )

    class Meta:
        ordering = ["version", "position"]
        constraints = [
            models.UniqueConstraint(fields=["version", "position"], name="mapping_rule_unique_position"),
            models.CheckConstraint(
                condition=Q(margin_percent__isnull=True) | Q(margin_percent__gte=0),
                name="mapping_rule_margin_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(fixed_fee__isnull=True) | Q(fixed_fee__gte=0), name="mapping_rule_fee_not_negative"
            ),
            models.CheckConstraint(
                condition=~Q(charge_model__in=_CARD_MODELS) | Q(rate_card__isnull=False),
                name="mapping_rule_card_has_rate_card",
            ),
            models.CheckConstraint(
                condition=~Q(charge_model=ChargeModel.FIXED_FEE) | Q(fixed_fee__isnull=False),
                name="mapping_rule_fixed_fee_has_fee",
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.version.number} #{self.position}: {self.match} -> {self.cost_center.code}"


class SharedCostPool(models.Model):
    """Invoice lines no usage explains (platform fees, vector store, support),
    allocated by the pool's method over its target cost centers (none = all active)."""

    version = models.ForeignKey(MappingVersion, on_delete=models.CASCADE, related_name="pools")
    code = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    match = models.JSONField(default=dict, blank=True, help_text="Invoice line field -> wildcard pattern")
    method = models.CharField(max_length=16, choices=PoolMethod.choices)
    driver = models.CharField(max_length=64, blank=True, help_text="Measured driver, or the activity proxy's name")
    target_cost_centers = models.ManyToManyField(CostCenter, blank=True, related_name="shared_cost_pools")
    treatment = models.CharField(max_length=16, choices=Treatment.choices, default=Treatment.CHARGEBACK)

    class Meta:
        ordering = ["version", "code"]
        constraints = [
            models.UniqueConstraint(fields=["version", "code"], name="shared_cost_pool_unique_code"),
            models.CheckConstraint(
                condition=Q(method=PoolMethod.EVEN) | ~Q(driver=""), name="shared_cost_pool_driver_set"
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.version.number} pool {self.code}"


class MappingVersionEvent(models.Model):
    """Audit of a mapping version's status change: who, when, from, to, why, and what."""

    version = models.ForeignKey(MappingVersion, on_delete=models.PROTECT, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    from_status = models.CharField(max_length=16, choices=MappingVersionStatus.choices)
    to_status = models.CharField(max_length=16, choices=MappingVersionStatus.choices)
    at = models.DateTimeField(auto_now_add=True)
    reason = models.TextField(blank=True)
    snapshot = models.JSONField(default=dict)

    class Meta:
        ordering = ["version", "at", "id"]

    def __str__(self) -> str:
        return f"v{self.version.number}: {self.from_status} -> {self.to_status}"
