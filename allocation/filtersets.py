"""FilterSets of the allocation package, shared by the API and the pages."""

import django_filters

from allocation.choices import UsageBatchStatus, UsageSourceFormat
from allocation.models import UsageBatch

__all__ = ["UsageBatchFilterSet"]


class UsageBatchFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(label="Status", choices=UsageBatchStatus.choices, empty_label="Any status")
    source_format = django_filters.ChoiceFilter(
        label="Format", choices=UsageSourceFormat.choices, empty_label="Any format"
    )

    class Meta:
        model = UsageBatch
        fields = ["status", "source_format"]
