"""Template filters that name catalog values as a reader says them: `{% load catalog %}`,
then `{{ line.modality|modality_label }}` ("embedding" reads "Embeddings"). The labels
live in `pricing.choices`, where code that is no template (journal lines) reads them too."""

from django import template

from pricing.choices import modality_label

__all__ = ["modality_label"]

register = template.Library()
register.filter("modality_label", modality_label)
