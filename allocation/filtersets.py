"""FilterSets of the allocation package, shared by the API and the pages."""

import django_filters

from allocation.choices import UsageBatchStatus, UsageSourceFormat
from allocation.models import AllocationRun, UsageBatch
from pricing.periods import PeriodFilter

__all__ = ["AllocationRunFilterSet", "UsageBatchFilterSet"]


class UsageBatchFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(label="Status", choices=UsageBatchStatus.choices, empty_label="Any status")
    source_format = django_filters.ChoiceFilter(
        label="Format", choices=UsageSourceFormat.choices, empty_label="Any format"
    )

    class Meta:
        model = UsageBatch
        fields = ["status", "source_format"]


class AllocationRunFilterSet(django_filters.FilterSet):
    period = PeriodFilter()

    class Meta:
        model = AllocationRun
        fields = ["period", "status", "is_flagged"]
