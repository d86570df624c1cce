"""FilterSets of the close, shared by the API and the pages: the statements of the close
page and `GET /api/v1/statements`, the disputes queue and `GET /api/v1/disputes`, read
the same filters, so a list on a page and its API answer hold the same rows."""

import django_filters
from django.db.models import QuerySet

from chargeback.choices import UNDECIDED_DISPUTES, DisputeStatus, JournalEntryStatus, StatementStatus
from chargeback.models import Dispute, JournalEntry, Statement
from chargeback.models.statements import LIVE_STATEMENTS
from pricing.periods import PeriodFilter

__all__ = ["ALL_DISPUTES", "UNDECIDED", "DisputeFilterSet", "JournalEntryFilterSet", "StatementFilterSet"]

# `?status=undecided`: open and under review, finance's queue; `?status=all`: any status.
UNDECIDED = "undecided"
ALL_DISPUTES = "all"


class StatementFilterSet(django_filters.FilterSet):
    period = PeriodFilter(help_text="YYYY-MM")
    status = django_filters.ChoiceFilter(choices=StatementStatus.choices, empty_label="Any status")
    cost_center = django_filters.CharFilter(field_name="cost_center__code", help_text="A cost center's code")
    include_superseded = django_filters.BooleanFilter(
        method="_every_revision",
        help_text="Also the revisions reopened and replaced (history); without it, the live revision of each",
    )

    class Meta:
        model = Statement
        fields = ["period", "status", "cost_center", "include_superseded"]

    def _every_revision(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        return queryset  # read in filter_queryset: leaving superseded ones out is the default

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        data = self.form.cleaned_data
        if data.get("include_superseded") or data.get("status") == StatementStatus.SUPERSEDED:
            return queryset
        return queryset.filter(LIVE_STATEMENTS)


class DisputeFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=[(UNDECIDED, "Undecided"), *DisputeStatus.choices, (ALL_DISPUTES, "All")],
        method="filter_status",
        empty_label="Any status",
        help_text="A status, `undecided` (open or under review) or `all`",
    )
    period = PeriodFilter(field_name="statement__period", help_text="The disputed statement's month, YYYY-MM")
    cost_center = django_filters.CharFilter(
        field_name="cost_center__code", help_text="The disputing cost center's code"
    )

    class Meta:
        model = Dispute
        fields = ["status", "period", "cost_center"]

    def filter_status(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        if value == UNDECIDED:
            return queryset.filter(status__in=UNDECIDED_DISPUTES)
        if value == ALL_DISPUTES:
            return queryset
        return queryset.filter(status=value)


class JournalEntryFilterSet(django_filters.FilterSet):
    """The ERP's pulls: a period's entries, those not yet acknowledged, and, incrementally,
    those changed since its last pull (`updated_after`, exclusive)."""

    period = PeriodFilter(help_text="YYYY-MM: the period the entry lands in")
    status = django_filters.ChoiceFilter(choices=JournalEntryStatus.choices, empty_label="Any status")
    cost_center = django_filters.CharFilter(field_name="cost_center__code", help_text="A cost center's code")
    updated_after = django_filters.IsoDateTimeFilter(
        field_name="updated_at", lookup_expr="gt", help_text="Changed after this instant (ISO 8601, with offset)"
    )

    class Meta:
        model = JournalEntry
        fields = ["period", "status", "cost_center", "updated_after"]
