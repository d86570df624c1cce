"""Reads of mapping versions: the list, the version in force for a period, the rule a
usage line's tags take, and what a preview of a period can compare."""

from collections.abc import Mapping
from fnmatch import fnmatchcase

from django.db.models import Count, QuerySet

from allocation.choices import (
    MappingVersionStatus,
)
from allocation.models import (
    MappingRule,
    MappingVersion,
    ProviderInvoice,
)
from allocation.selectors.ledger import usage_lines_in_period
from pricing.periods import Period

__all__ = ["mapping_preview_inputs", "mapping_rule_for", "mapping_version_in_force", "mapping_versions"]


def mapping_version_in_force(*, period: Period) -> MappingVersion | None:
    """The signed version with the latest effective_from on or before the period's start."""
    return (
        MappingVersion.objects.filter(status=MappingVersionStatus.SIGNED, effective_from__lte=period.first_day)
        .order_by("-effective_from", "-number")
        .first()
    )


def mapping_rule_for(*, version: MappingVersion, tags: Mapping[str, str | None]) -> MappingRule | None:
    """The first rule by position whose every pattern matches the tags (a missing tag is "")."""
    for rule in version.rules.select_related("cost_center", "service_owner", "rate_card").order_by("position"):
        if all(fnmatchcase(tags.get(tag) or "", pattern) for tag, pattern in rule.match.items()):
            return rule
    return None


def mapping_versions() -> QuerySet[MappingVersion]:
    """Every version, newest first, with who signed and how many rules it holds."""
    return (
        MappingVersion.objects.select_related("signed_by", "created_by")
        .annotate(rule_count=Count("rules"))
        .order_by("-number")
    )


def mapping_preview_inputs(*, period: Period) -> dict[str, bool]:
    """Whether a period holds the invoices and usage a preview needs to show money."""
    invoices = ProviderInvoice.objects.filter(
        billing_period_start__gte=period.start, billing_period_start__lt=period.end
    )
    return {
        "invoices": invoices.exists(),
        "usage": usage_lines_in_period(period).exists(),
    }
