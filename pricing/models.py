"""Pricing: the unit catalog (price books and rate cards come with pricing)."""

from django.db import models

from .choices import Modality

__all__ = ["Unit"]


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
