"""Template filters for money, quantities and shares: `{% load money %}`, then
`{{ amount|money:"EUR" }}`, `{{ quantity|quantity }}`, `{{ share|percent }}`.

Each filter is the `pricing.formatting` helper of the same concept, so a page
that formats in its template reads exactly like one whose view formats; an
empty value (None, "") prints as nothing. Every amount of money on a page is to
the cent, rated costs included; only a unit price keeps more places, and it
says what it is per ('$0.000125 per token', `pricing.formatting.price_text`).
"""

from decimal import Decimal

from django import template

from pricing.formatting import (
    MINUS,
    money_change_text,
    money_text,
    percent_change_text,
    percent_text,
    quantity_text,
    unit_cost_text,
)
from pricing.money import CENT, parse_decimal, quantize

__all__ = ["money", "money_change", "percent", "percent_change", "quantity", "rated_cost", "unit_cost"]

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
    """A rated cost to the cent like every amount on a page: '$12.34'. A cost too small for a
    cent reads '<$0.01' (a negative one '>−$0.01'): '$0.00' would read as free, and '$0.002'
    beside two-decimal amounts reads as a typo."""
    cost = _decimal(value)
    if cost is None:
        return ""
    if cost and not quantize(cost, CENT):
        return f">{MINUS}{money_text(CENT, currency)}" if cost < 0 else f"<{money_text(CENT, currency)}"
    return money_text(cost, currency)


@register.filter
def unit_cost(value: object, currency: str = "USD") -> str:
    """What one request or trace costs: '$0.05', '$0.0014' (two significant digits below a cent)."""
    cost = _decimal(value)
    return "" if cost is None else unit_cost_text(cost, currency)


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
