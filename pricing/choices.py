"""Modalities of AI usage."""

from django.db import models

__all__ = ["MODALITY_NONE_LABEL", "Modality", "PriceBookKind", "STANDARD_SERVICE_TIERS", "modality_label"]


class Modality(models.TextChoices):
    TEXT = "text", "Text"
    IMAGE = "image", "Image"
    AUDIO = "audio", "Audio"
    REALTIME = "realtime", "Realtime voice"
    EMBEDDING = "embedding", "Embeddings"
    VECTOR_STORE = "vector_store", "Vector store"
    TOOL = "tool", "Tools and requests"
    COMPUTE = "compute", "GPU compute"
    STORAGE = "storage", "Storage"


# What money with no modality is, as statements name it: shared pools and fees.
MODALITY_NONE_LABEL = "Shared pools and fees"
_MODALITY_LABELS = dict(Modality.choices)


def modality_label(value: object, empty: str = "") -> str:
    """A modality as a reader says it ("embedding" reads "Embeddings"): pages, through the
    `modality_label` template filter, and journal line descriptions. `empty` for money
    with none (shared pools, fees); an unknown value as it is, so a new modality still
    shows."""
    if not value:
        return empty
    return _MODALITY_LABELS.get(str(value), str(value))


class PriceBookKind(models.TextChoices):
    LIST = "list", "Provider list prices"
    CONTRACT = "contract", "Contract prices (override list prices)"
    RATE_CARD = "rate_card", "Internal rate card"


# Service tiers as the ledger records them that all mean the provider's standard price.
STANDARD_SERVICE_TIERS: frozenset[str] = frozenset({"", "standard", "default", "auto", "on_demand"})
