"""Template filters that name catalog values as a reader says them: `{% load catalog %}`,
then `{{ line.modality|modality_label }}` ("embedding" reads "Embeddings")."""

from django import template

from pricing.choices import Modality

__all__ = ["modality_label"]

register = template.Library()
_MODALITY_LABELS = dict(Modality.choices)


@register.filter
def modality_label(value: object, empty: str = "") -> str:
    """The modality's label; `empty` for a line with none (shared pools, fees); an
    unknown value as it is, so a new modality still shows."""
    if not value:
        return empty
    return _MODALITY_LABELS.get(str(value), str(value))
