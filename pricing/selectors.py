"""Reads of the pricing catalog."""

from .models import Unit

__all__ = ["unit_modalities"]


def unit_modalities() -> dict[str, str]:
    """Each catalog unit's modality, keyed by unit code."""
    return dict(Unit.objects.values_list("code", "modality"))
