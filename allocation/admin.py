"""Admin pages for cost objects and the usage ledger.

Cost objects are edited here or, preferably, as code with `load_org`. Batches,
rejections and ledger lines are read-only: only ingestion writes them. The
ledger holds tens of millions of rows, so its page avoids anything that scans
the whole table: no full count, no date hierarchy, and filters whose choices
come from the catalogs rather than from SELECT DISTINCT over the ledger.
"""

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from allocation.choices import Environment, MappingVersionStatus
from allocation.models import (
    ApiToken,
    CostCenter,
    CostCenterMembership,
    Feature,
    InvoiceBatch,
    InvoiceLine,
    InvoiceRejection,
    MappingRule,
    MappingVersion,
    MappingVersionEvent,
    ProviderInvoice,
    SharedCostPool,
    Team,
    Tenant,
    UsageBatch,
    UsageLine,
    UsageRejection,
)
from pricing.admin import ReadOnlyAdmin
from pricing.models import Unit

__all__ = [
    "CostCenterAdmin",
    "FeatureAdmin",
    "TeamAdmin",
    "TenantAdmin",
    "UsageBatchAdmin",
    "UsageLineAdmin",
    "UsageRejectionAdmin",
]


class RejectionAdmin(ReadOnlyAdmin):
    """A record an ingestion refused: where, which field, why."""

    list_display = ["batch", "line", "field", "reason"]
    list_select_related = ["batch"]
    list_filter = ["batch__source_format"]
    search_fields = ["field", "reason"]
    raw_id_fields = ["batch"]


class BatchAdmin(ReadOnlyAdmin):
    """An ingestion batch, its rejected count linking to its rejections."""

    rejections_changelist = ""
    readonly_fields = ["rejections_link"]

    @admin.display(description="rejected", ordering="rejected")
    def rejections_link(self, obj: UsageBatch | InvoiceBatch) -> str:
        if not obj.rejected:
            return "0"
        url = reverse(self.rejections_changelist) + f"?batch__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj.rejected)


class ActiveFilter(admin.SimpleListFilter):
    title = "active"
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return [("yes", "Active (no end date)"), ("no", "Ended")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(active_to__isnull=True)
        if self.value() == "no":
            return queryset.filter(active_to__isnull=False)
        return queryset


class MembershipInline(admin.TabularInline):
    """Who belongs to the cost center: members see it, owners also see everything below."""

    model = CostCenterMembership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(CostCenter)
class CostCenterAdmin(admin.ModelAdmin):
    inlines = [MembershipInline]
    list_display = [
        "code",
        "name",
        "owner",
        "gl_expense_account",
        "gl_recovery_account",
        "parent",
        "active_from",
        "active_to",
    ]
    list_select_related = ["parent"]
    list_filter = [ActiveFilter, ("parent", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["code", "name", "owner", "gl_expense_account", "gl_recovery_account"]
    autocomplete_fields = ["parent"]


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens are issued and revoked with `manage.py api_token` (the secret is shown once)."""

    list_display = ["name", "prefix", "scope", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "user__username"]
    exclude = ["digest"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "cost_center"]
    list_select_related = ["cost_center"]
    list_filter = [("cost_center", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["code", "name", "cost_center__code", "cost_center__name"]
    autocomplete_fields = ["cost_center"]


@admin.register(Feature)
class FeatureAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "team", "cost_center"]
    list_select_related = ["team__cost_center"]
    list_filter = [("team__cost_center", admin.RelatedOnlyFieldListFilter), ("team", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["code", "name", "team__code", "team__name"]
    autocomplete_fields = ["team"]

    @admin.display(ordering="team__cost_center__code")
    def cost_center(self, obj: Feature) -> CostCenter:
        return obj.team.cost_center


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["code", "name"]
    search_fields = ["code", "name"]


@admin.register(UsageBatch)
class UsageBatchAdmin(BatchAdmin):
    list_display = [
        "id",
        "source_format",
        "source_name",
        "status",
        "rows_read",
        "inserted",
        "duplicate",
        "rejections_link",
        "lines_inserted",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_select_related = ["created_by"]
    list_filter = ["status", "source_format"]
    search_fields = ["source_name"]
    rejections_changelist = "admin:allocation_usagerejection_changelist"


@admin.register(UsageRejection)
class UsageRejectionAdmin(RejectionAdmin):
    pass


class LedgerPaginator(Paginator):
    """Counts that stay cheap on a ledger of tens of millions of lines.

    An exact count(*) reads every matching row. Unfiltered on PostgreSQL, the
    planner's row estimate stands in; otherwise counting stops at `count_limit`,
    so a broad filter shows the first 100 pages and a narrow one counts exactly.
    """

    count_limit = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        if connection.vendor == "postgresql" and not queryset.query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [queryset.model._meta.db_table]
                )
                row = cursor.fetchone()
            if row and row[0] > 0:
                return int(row[0])
        return queryset.order_by()[: self.count_limit].count()


class ChoicesFilter(admin.SimpleListFilter):
    """An exact-match filter whose choices come from a catalog, not from the ledger.

    Subclasses name the field and say where the choices come from.
    """

    field_name = ""

    def choices_for(self) -> list[tuple[str, str]]:
        return []

    def lookups(self, request, model_admin):
        return self.choices_for()

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.field_name: self.value()})
        return queryset


class ProviderFilter(ChoicesFilter):
    title = parameter_name = field_name = "provider"

    def choices_for(self) -> list[tuple[str, str]]:
        # There is no provider catalog to list; the newest lines, read through the
        # occurred_at index, stand in for one instead of a DISTINCT over the ledger.
        recent = UsageLine.objects.order_by("-occurred_at").values_list("provider", flat=True)[:10_000]
        return [(p, p) for p in sorted(set(recent))]


class UnitFilter(ChoicesFilter):
    title = parameter_name = field_name = "unit"

    def choices_for(self) -> list[tuple[str, str]]:
        return list(Unit.objects.order_by("code").values_list("code", "name"))


class EnvironmentFilter(ChoicesFilter):
    title = parameter_name = field_name = "environment"

    def choices_for(self) -> list[tuple[str, str]]:
        return [*Environment.choices, ("", "(none)")]

    def lookups(self, request, model_admin):
        return [(value or "__none__", label) for value, label in self.choices_for()]

    def queryset(self, request, queryset):
        if self.value() == "__none__":
            return queryset.filter(environment="")
        return super().queryset(request, queryset)


@admin.register(UsageLine)
class UsageLineAdmin(ReadOnlyAdmin):
    list_display = [
        "occurred_at",
        "provider",
        "model",
        "unit",
        "tier",
        "quantity",
        "team",
        "feature",
        "environment",
        "tenant",
        "is_untagged",
        "trace_id",
        "batch_id",
    ]
    list_filter = [ProviderFilter, UnitFilter, EnvironmentFilter, "is_untagged"]
    # Served by the occurred_at index, newest first.
    ordering = ["-occurred_at"]
    show_full_result_count = False
    paginator = LedgerPaginator
    list_per_page = 100


@admin.register(InvoiceBatch)
class InvoiceBatchAdmin(BatchAdmin):
    list_display = [
        "id",
        "source_format",
        "provider",
        "source_name",
        "status",
        "rows_read",
        "inserted",
        "duplicate",
        "rejections_link",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "source_format", "provider"]
    search_fields = ["source_name", "provider"]
    rejections_changelist = "admin:allocation_invoicerejection_changelist"


@admin.register(InvoiceRejection)
class InvoiceRejectionAdmin(RejectionAdmin):
    pass


@admin.register(ProviderInvoice)
class ProviderInvoiceAdmin(ReadOnlyAdmin):
    list_display = ["invoice_id", "provider", "issuer", "billing_period_start", "billing_period_end", "currency"]
    list_filter = ["provider", "currency"]
    search_fields = ["invoice_id", "provider", "issuer", "billing_account"]


@admin.register(InvoiceLine)
class InvoiceLineAdmin(ReadOnlyAdmin):
    list_display = [
        "invoice",
        "charge_category",
        "sku",
        "quantity",
        "unit",
        "billed_cost",
        "effective_cost",
        "list_cost",
        "charge_period_start",
        "model",
        "project",
    ]
    list_select_related = ["invoice"]
    list_filter = ["charge_category", "invoice__provider"]
    search_fields = ["sku", "description", "model", "project", "invoice__invoice_id"]
    raw_id_fields = ["invoice", "batch"]


__all__ += ["InvoiceBatchAdmin", "InvoiceLineAdmin", "InvoiceRejectionAdmin", "ProviderInvoiceAdmin"]


# --- Mapping versions: drafts come from `load_mapping`; signed versions are read-only.


def _is_signed(obj) -> bool:
    version = obj if isinstance(obj, MappingVersion) else getattr(obj, "version", None)
    return version is not None and version.status == MappingVersionStatus.SIGNED


class MappingRuleInline(admin.TabularInline):
    model = MappingRule
    extra = 0
    raw_id_fields = ["cost_center", "service_owner", "rate_card"]

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return not _is_signed(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return not _is_signed(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return not _is_signed(obj) and super().has_delete_permission(request, obj)


class SharedCostPoolInline(MappingRuleInline):
    model = SharedCostPool
    raw_id_fields = []
    filter_horizontal = ["target_cost_centers"]


@admin.register(MappingVersion)
class MappingVersionAdmin(admin.ModelAdmin):
    """Drafts may be corrected here; sign-off happens only through `mapping_sign`
    (the command or the page), so status and sign-off fields are never editable."""

    list_display = ["number", "name", "status", "effective_from", "signed_by", "signed_at", "created_at"]
    list_filter = ["status"]
    search_fields = ["name", "source"]
    readonly_fields = [
        "number",
        "status",
        "effective_from",
        "source",
        "created_by",
        "signed_by",
        "signed_at",
        "content_hash",
    ]
    inlines = [MappingRuleInline, SharedCostPoolInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return not _is_signed(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return not _is_signed(obj) and super().has_delete_permission(request, obj)


@admin.register(MappingVersionEvent)
class MappingVersionEventAdmin(ReadOnlyAdmin):
    list_display = ["version", "from_status", "to_status", "actor", "at", "reason"]
    list_select_related = ["version", "actor"]
    list_filter = ["to_status"]
    raw_id_fields = ["version", "actor"]


__all__ += ["MappingVersionAdmin", "MappingVersionEventAdmin"]
