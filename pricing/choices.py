"""Modalities of AI usage."""

from django.db import models

__all__ = ["Modality"]


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
