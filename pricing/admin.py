"""Admin pages for the pricing catalog.

Units, providers, models and aliases are edited here. Price book versions and
their prices are read-only: a version is immutable once loaded (rating runs
point at it), so a change is a new version loaded from a file or an import.
"""

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from .models import AiModel, ModelAlias, Price, PriceBook, PriceBookVersion, Provider, Unit

__all__ = [
    "ReadOnlyAdmin",
    "AiModelAdmin",
    "ModelAliasAdmin",
    "PriceAdmin",
    "PriceBookAdmin",
    "PriceBookVersionAdmin",
    "ProviderAdmin",
    "UnitAdmin",
]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by staff with the view permission; never added, changed or deleted here.

    The one read-only base of every app's admin: what the system writes (ledgers,
    invoices, price versions, audit rows) changes only through its services."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def _prices_link(version: PriceBookVersion, count: int) -> str:
    url = reverse("admin:pricing_price_changelist") + f"?version__id__exact={version.pk}"
    return format_html('<a href="{}">{} price{}</a>', url, f"{count:,}", "" if count == 1 else "s")


@admin.register(Unit)
class UnitAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "modality", "description"]
    list_filter = ["modality"]
    search_fields = ["code", "name"]


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "model_count"]
    search_fields = ["code", "name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Provider]:
        return super().get_queryset(request).annotate(model_count=Count("models"))

    @admin.display(description="models", ordering="model_count")
    def model_count(self, obj: Provider) -> int:
        return obj.model_count


@admin.register(AiModel)
class AiModelAdmin(admin.ModelAdmin):
    list_display = ["code", "provider", "name", "context_window", "match_order", "match_rule"]
    list_select_related = ["provider"]
    list_filter = [("provider", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["code", "name", "provider__code"]
    autocomplete_fields = ["provider"]
    list_per_page = 100


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    list_display = ["alias", "provider", "model"]
    list_select_related = ["provider", "model__provider"]
    list_filter = [("provider", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["alias", "model__code", "provider__code"]
    autocomplete_fields = ["provider", "model"]


@admin.register(PriceBook)
class PriceBookAdmin(admin.ModelAdmin):
    """A book's name and description may be edited; its prices only by a new version."""

    list_display = ["code", "name", "kind", "service", "latest_version"]
    list_filter = ["kind"]
    search_fields = ["code", "name", "service"]
    readonly_fields = ["versions_link"]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        # The code and kind name the book in files and rating; fixed once it exists.
        return ["code", "kind", "versions_link"] if obj else ["versions_link"]

    @admin.display(description="latest version")
    def latest_version(self, obj: PriceBook) -> str:
        version = obj.latest_version()
        return f"v{version.number}" if version else "—"

    @admin.display(description="versions")
    def versions_link(self, obj: PriceBook) -> str:
        if obj.pk is None:
            return "—"
        url = reverse("admin:pricing_pricebookversion_changelist") + f"?book__id__exact={obj.pk}"
        count = obj.versions.count()
        return format_html('<a href="{}">{} version{}</a>', url, count, "" if count == 1 else "s")


@admin.register(PriceBookVersion)
class PriceBookVersionAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "book", "number", "source", "short_checksum", "prices", "created_by", "created_at"]
    list_select_related = ["book", "created_by"]
    list_filter = [("book", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["book__code", "source", "checksum"]
    fields = ["book", "number", "source", "checksum", "created_by", "created_at", "prices"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[PriceBookVersion]:
        return super().get_queryset(request).annotate(price_count=Count("prices"))

    @admin.display(description="checksum")
    def short_checksum(self, obj: PriceBookVersion) -> str:
        return obj.checksum[:12]

    @admin.display(description="prices", ordering="price_count")
    def prices(self, obj: PriceBookVersion) -> str:
        return _prices_link(obj, obj.price_count)


@admin.register(Price)
class PriceAdmin(ReadOnlyAdmin):
    list_display = [
        "model",
        "unit",
        "service_tier",
        "tier",
        "context_above",
        "amount",
        "quantum",
        "currency",
        "effective_from",
        "effective_to",
        "version",
    ]
    list_select_related = ["model__provider", "version__book"]
    list_filter = [("version__book", admin.RelatedOnlyFieldListFilter), "unit", "service_tier"]
    search_fields = ["model__code", "model__provider__code"]
    list_per_page = 100
