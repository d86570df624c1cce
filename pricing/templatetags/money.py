"""Template filters for money, quantities and shares: `{% load money %}`, then
`{{ amount|money:"EUR" }}`, `{{ quantity|quantity }}`, `{{ share|percent }}`.

Each filter is the `pricing.formatting` helper of the same concept, so a page
that formats in its template reads exactly like one whose view formats; an
empty value (None, "") prints as nothing.
"""

from decimal import Decimal

from django import template

from pricing.formatting import (
    money_change_text,
    money_text,
    percent_change_text,
    percent_text,
    quantity_text,
    rated_cost_text,
)
from pricing.money import parse_decimal

__all__ = ["money", "money_change", "percent", "percent_change", "quantity", "rated_cost"]

register = template.Library()


def _decimal(value: object) -> Decimal | None:
    """A Decimal from a context value (Decimal, int or decimal text); None when empty."""
    return None if value is None or value == "" else parse_decimal(value)


@register.filter
def money(value: object, currency: str = "USD") -> str:
    """'$1,234.50', '−$8.47'."""
    amount = _decimal(value)
    return "" if amount is None else money_text(amount, currency)


@register.filter
def money_change(value: object, currency: str = "USD") -> str:
    """'+$27.55', '−$27.55', '—' for no change."""
    amount = _decimal(value)
    return "" if amount is None else money_change_text(amount, currency)


@register.filter
def rated_cost(value: object, currency: str = "USD") -> str:
    """'$12.34', or '$0.002' for a cost below a cent."""
    return rated_cost_text(_decimal(value), currency)


@register.filter
def quantity(value: object) -> str:
    """'1,234,567', '0.5'."""
    amount = _decimal(value)
    return "" if amount is None else quantity_text(amount)


@register.filter
def percent(value: object, places: int = 1) -> str:
    """A share as a percentage: '25.0%'; `|percent:2` for '25.00%'."""
    share = _decimal(value)
    return "" if share is None else percent_text(share, places=int(places))


@register.filter
def percent_change(value: object) -> str:
    """A price's relative change: '+25.0%', '-20.0%', '—' for none."""
    return percent_change_text(_decimal(value))
