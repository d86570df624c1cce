"""Modalities of AI usage."""

from django.db import models

__all__ = ["Modality", "PriceBookKind", "STANDARD_SERVICE_TIERS"]


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


class PriceBookKind(models.TextChoices):
    LIST = "list", "Provider list prices"
    CONTRACT = "contract", "Contract prices (override list prices)"
    RATE_CARD = "rate_card", "Internal rate card"


# Service tiers as the ledger records them that all mean the provider's standard price.
STANDARD_SERVICE_TIERS: frozenset[str] = frozenset({"", "standard", "default", "auto", "on_demand"})
