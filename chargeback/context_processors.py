"""What the signed-in user may open, so the pages show only the links that work for them."""

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from allocation.access import Permission, access_allows

__all__ = ["access"]


def access(request: HttpRequest) -> dict:
    """`may.<permission>` in every template, e.g. `{% if may.view_company %}`."""
    user = getattr(request, "user", None)
    return {"may": SimpleLazyObject(lambda: {p.name.lower(): access_allows(user, p) for p in Permission})}
