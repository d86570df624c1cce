"""Pricing: the unit catalog, providers and their models, versioned price books
(provider list prices, negotiated contract prices) and internal rate cards."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from .choices import Modality, PriceBookKind

__all__ = ["AiModel", "ModelAlias", "Price", "PriceBook", "PriceBookVersion", "Provider", "Unit"]

# A unit price per quantum: $0.000000125 a token is 0.125 per 1M. Eighteen
# places keep every published rate exactly as published (some sources carry
# float noise such as 0.18000000000000002, which we keep rather than round).
PRICE_MAX_DIGITS = 30
PRICE_DECIMAL_PLACES = 18


class Unit(models.Model):
    """A unit a ledger quantity is measured in, such as `cached_input_token`.

    Ingestion refuses a quantity in a unit not in this catalog; rating prices
    each unit separately, so a new modality is a new row, not a schema change.
    """

    code = models.CharField(max_length=64, primary_key=True)
    name = models.CharField(max_length=128)
    modality = models.CharField(max_length=32, choices=Modality.choices)
    description = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["modality", "code"]

    def __str__(self) -> str:
        return self.code


class Provider(models.Model):
    """A vendor whose invoices we receive, named as usage names it (`openai`)."""

    code = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class AiModel(models.Model):
    """A model (SKU) a provider bills for.

    Usage names models loosely (`gpt-4o-2024-08-06`, `claude-sonnet-4.5`):
    `match_rule` (equals / starts_with / ends_with / contains / regex, combined
    with or / and) and explicit aliases map those names to this model.
    """

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="models")
    code = models.CharField(max_length=128)
    name = models.CharField(max_length=200, blank=True)
    context_window = models.BigIntegerField(null=True, blank=True)
    match_rule = models.JSONField(default=dict, blank=True)
    match_order = models.PositiveIntegerField(default=0, help_text="Rules are tried in this order; first match wins")

    class Meta:
        ordering = ["provider", "match_order", "code"]
        verbose_name = "AI model"
        constraints = [models.UniqueConstraint(fields=["provider", "code"], name="ai_model_unique_per_provider")]

    def __str__(self) -> str:
        return f"{self.provider.code}/{self.code}"


class ModelAlias(models.Model):
    """A name usage reports for a model, resolved once and kept (dated snapshots)."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=128)
    model = models.ForeignKey(AiModel, on_delete=models.CASCADE, related_name="aliases")

    class Meta:
        ordering = ["provider", "alias"]
        verbose_name_plural = "model aliases"
        constraints = [models.UniqueConstraint(fields=["provider", "alias"], name="model_alias_unique_per_provider")]

    def __str__(self) -> str:
        return f"{self.alias} -> {self.model}"


class PriceBook(models.Model):
    """A named, versioned set of prices.

    List books hold the providers' published prices; contract books hold
    negotiated prices, which override list prices wherever they give one; a
    rate card prices an internal shared service per tier for showback.
    """

    code = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=PriceBookKind.choices)
    service = models.CharField(
        max_length=128, blank=True, help_text="Rate cards: the shared service (its owner team's code)"
    )
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["kind", "code"]

    def __str__(self) -> str:
        return self.name

    def latest_version(self) -> "PriceBookVersion | None":
        return self.versions.order_by("-number").first()


class PriceBookVersion(models.Model):
    """One immutable edition of a price book: a change is a new version.

    Rating records the versions it used, so a past result can always be
    explained with the exact prices it was computed from.
    """

    book = models.ForeignKey(PriceBook, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    source = models.CharField(max_length=500, help_text="Where the prices came from: a file, genai-prices x.y.z")
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the prices, to tell a real change")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["book", "-number"]
        constraints = [models.UniqueConstraint(fields=["book", "number"], name="price_book_version_unique")]

    def __str__(self) -> str:
        return f"{self.book.code} v{self.number}"


class Price(models.Model):
    """The price of one unit of one model, per quantum, over an effective range.

    Optional tiers narrow it: a service tier (batch, flex, priority; blank is
    standard), a unit tier (image quality and size, voice or transcript; blank
    is any), and a context band: the price applies to a request whose input
    exceeds `context_above` tokens, all of its tokens, as providers bill long
    context. Ranges of the same key never overlap within a version.
    """

    version = models.ForeignKey(PriceBookVersion, on_delete=models.CASCADE, related_name="prices")
    model = models.ForeignKey(
        AiModel, null=True, blank=True, on_delete=models.PROTECT, help_text="Blank on rate cards priced per tier"
    )
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, db_column="unit")
    service_tier = models.CharField(max_length=32, blank=True)
    tier = models.CharField(max_length=64, blank=True)
    context_above = models.BigIntegerField(default=0)
    amount = models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES)
    quantum = models.BigIntegerField(help_text="Units the amount is for: 1000000 tokens, 1 image, 1000 calls")
    currency = models.CharField(max_length=3, default="USD")
    effective_from = models.DateField(null=True, blank=True, help_text="Empty: since the beginning")
    effective_to = models.DateField(null=True, blank=True, help_text="First day no longer in force; empty: open")

    class Meta:
        ordering = ["version", "model", "unit", "service_tier", "tier", "context_above", "effective_from"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="price_amount_not_negative"),
            models.CheckConstraint(condition=Q(quantum__gt=0), name="price_quantum_positive"),
            models.CheckConstraint(condition=Q(context_above__gte=0), name="price_context_above_not_negative"),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True)
                | Q(effective_from__isnull=True)
                | Q(effective_to__gt=F("effective_from")),
                name="price_effective_range",
            ),
        ]
        indexes = [models.Index(fields=["version", "model", "unit"], name="price_lookup")]

    def __str__(self) -> str:
        return f"{self.model or self.version.book} {self.unit_id} {self.amount}/{self.quantum}"
