"""FilterSets of the allocation package, shared by the API and the pages."""

import django_filters
from django.db.models import QuerySet

from allocation.choices import (
    AllocationMethod,
    ChargeCategory,
    Environment,
    Treatment,
    UnallocatedReason,
    UsageBatchStatus,
    UsageSourceFormat,
)
from allocation.models import AllocationLine, AllocationRun, UsageBatch
from pricing.choices import Modality
from pricing.periods import PeriodFilter

__all__ = ["AllocationLineFilterSet", "AllocationRunFilterSet", "UsageBatchFilterSet"]


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


# The choice for lines that carry no value of a tag (untagged usage, pool and fee lines).
BLANK = "-"
BLANK_LABEL = "(blank)"
# `reason=unallocated`: every unallocated line, whatever its reason.
ANY_REASON = "unallocated"


class _KeyFilter(django_filters.ChoiceFilter):
    """A choice among the values a key of the lines holds; `BLANK` picks lines without one."""

    def filter(self, qs: QuerySet, value: str) -> QuerySet:
        if value == BLANK:
            return qs.filter(**{self.field_name: ""})
        return super().filter(qs, value)


class AllocationLineFilterSet(django_filters.FilterSet):
    """Which of a run's lines a reader wants, by the keys each line carries. The page, its
    CSV and the form over them all read this one FilterSet, so a filtered download holds
    exactly the lines the filtered page shows.

    Pass the run's lines already narrowed to the reader's scope: the choices offered are the
    values those lines hold (every option finds something), labelled in finance's words.
    """

    cost_center = django_filters.ChoiceFilter(
        field_name="cost_center__code", label="Cost center", empty_label="Any cost center"
    )
    reason = django_filters.ChoiceFilter(
        label="Unallocated",
        choices=[(ANY_REASON, "Any reason"), *UnallocatedReason.choices],
        method="filter_reason",
        empty_label="Allocated or not",
    )
    provider = _KeyFilter(label="Provider", empty_label="Any provider")
    modality = _KeyFilter(label="Modality", empty_label="Any modality")
    team = _KeyFilter(label="Team", empty_label="Any team")
    feature = _KeyFilter(label="Feature", empty_label="Any feature")
    environment = _KeyFilter(label="Environment", empty_label="Any environment")
    treatment = _KeyFilter(label="Treatment", empty_label="Any treatment")
    method = _KeyFilter(label="Method", empty_label="Any method")
    category = _KeyFilter(label="Charge category", empty_label="Any category")

    class Meta:
        model = AllocationLine
        fields = [
            "cost_center",
            "reason",
            "provider",
            "modality",
            "team",
            "feature",
            "environment",
            "treatment",
            "method",
            "category",
        ]

    # Labels of the keys whose values are codes; the others (provider, team, feature) read as they are.
    LABELS: dict[str, dict[str, str]] = {
        "modality": dict(Modality.choices),
        "environment": dict(Environment.choices),
        "treatment": {value: label.split(" (")[0] for value, label in Treatment.choices},
        "method": dict(AllocationMethod.choices),
        "category": dict(ChargeCategory.choices),
    }

    def __init__(self, data=None, queryset: QuerySet[AllocationLine] | None = None, **kwargs) -> None:
        super().__init__(data, queryset, **kwargs)
        lines = self.queryset.order_by()
        centers = lines.filter(cost_center__isnull=False).values_list("cost_center__code", "cost_center__name")
        self.filters["cost_center"].extra["choices"] = [(code, f"{code} {name}") for code, name in sorted(set(centers))]
        for key in ("provider", "modality", "team", "feature", "environment", "treatment", "method", "category"):
            values = sorted(set(lines.values_list(key, flat=True)))
            labels = self.LABELS.get(key, {})
            self.filters[key].extra["choices"] = [
                (value or BLANK, labels.get(value, value) if value else BLANK_LABEL) for value in values
            ]

    def filter_reason(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == ANY_REASON:
            return queryset.filter(cost_center__isnull=True)
        return queryset.filter(cost_center__isnull=True, reason=value)

    @property
    def chosen(self) -> dict[str, str]:
        """The filters in force, as a query (for links and the CSV), in the form's order."""
        if not self.is_bound or not self.form.is_valid():
            return {}
        return {name: value for name, value in self.form.cleaned_data.items() if value}
