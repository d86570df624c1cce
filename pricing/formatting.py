"""Money, quantities and shares as text: the one place every page and export formats them.

A figure must read the same wherever it appears (a cost center's total on the
run page, in the mapping preview, in the lines CSV), so each rule lives here
once: the currency symbols, the true minus sign, thousands separators, cents,
the sub-cent rule for tiny rated costs, prices per quantum. Views, the
template filters of `{% load money %}`, selectors and exports call these and
never format a Decimal themselves. Parsing, precision and rounding stay in
`pricing.money`; this module only turns Decimals into text (never through float).
"""

from dataclasses import dataclass
from decimal import Decimal

from pricing.money import CENT, decimal_text, quantize

__all__ = [
    "CURRENCY_SYMBOLS",
    "MINUS",
    "Money",
    "Share",
    "focus_money",
    "focus_quantity",
    "money_cents",
    "money_change_text",
    "money_plain",
    "money_text",
    "percent_change_text",
    "percent_text",
    "price_text",
    "quantity_plain",
    "quantity_text",
    "rated_cost_text",
    "unit_cost_text",
]

MINUS = "\u2212"  # a true minus sign: wider than a hyphen and read out as "minus"
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}
# A rated cost below a cent shows to the micro-dollar rather than as $0.00.
SUB_CENT_QUANTUM = Decimal("0.000001")
NO_CHANGE = "—"
_QUANTUM_WORDS = ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K"))


# --- for people: pages and messages ------------------------------------------------


def _with_currency(digits: str, currency: str, *, code_after: bool = False) -> str:
    """Digits with the currency's symbol in front; a currency without one by its code,
    in front of an amount ('CHF 1,234.00') and after a price ('2.50 CHF')."""
    symbol = CURRENCY_SYMBOLS.get(currency)
    if symbol:
        return f"{symbol}{digits}"
    return f"{digits} {currency}" if code_after else f"{currency} {digits}"


def quantity_text(value: Decimal) -> str:
    """Thousands separators, no trailing zeros, exact: '1,234,567', '0.000125'."""
    return format(value.normalize(), ",f")


def money_text(amount: Decimal, currency: str = "USD", *, signed: bool = False) -> str:
    """An amount to the cent: '$1,234.50', '−$8.47' (a true minus sign, before the symbol);
    `signed` also marks a gain: '+$27.55'."""
    cents = quantize(amount, CENT)
    text = _with_currency(f"{abs(cents):,}", currency)
    if cents < 0:
        return f"{MINUS}{text}"
    return f"+{text}" if signed and cents > 0 else text


def money_change_text(amount: Decimal, currency: str = "USD") -> str:
    """A change in money, signed: '+$27.55', '−$27.55'; no change (to the cent) reads as a dash."""
    if not quantize(amount, CENT):
        return NO_CHANGE
    return money_text(amount, currency, signed=True)


def rated_cost_text(cost: Decimal | None, currency: str = "USD") -> str:
    """A rated cost to the cent, unless that would show a real cost as $0.00: then to the
    micro-dollar ('$0.002'); empty when the usage is not rated."""
    if cost is None:
        return ""
    if cost and not quantize(cost, CENT):
        exact = quantize(cost, SUB_CENT_QUANTUM)
        text = _with_currency(quantity_text(abs(exact)), currency)
        return f"{MINUS}{text}" if exact < 0 else text
    return money_text(cost, currency)


def unit_cost_text(cost: Decimal, currency: str = "USD") -> str:
    """What one request, trace or call costs: to the cent from a cent up, below it to two
    significant digits ('$0.0014'), since a rate of '<$0.01' on every row tells nothing."""
    if not cost or quantize(cost, CENT):
        return money_text(cost, currency)
    exact = abs(cost).quantize(Decimal(1).scaleb(abs(cost).adjusted() - 1))
    text = _with_currency(quantity_text(exact), currency)
    return f"{MINUS}{text}" if cost < 0 else text


def percent_text(share: Decimal, *, places: int = 1) -> str:
    """A share (0.25 = 25%) as a percentage: '25.0%'; below zero with a true minus sign."""
    text = f"{abs(share) * 100:.{places}f}%"
    return f"{MINUS}{text}" if share < 0 else text


def percent_change_text(change: Decimal | None) -> str:
    """A relative change of a price as a signed percentage with one decimal: '+25.0%',
    '-20.0%' (the price diff's own plus/hyphen pair); none reads as a dash."""
    if change is None:
        return NO_CHANGE
    return f"{change * 100:+.1f}%"


def _price_amount_text(amount: Decimal, currency: str) -> str:
    """At least cents, and every further digit the price has: '$2.50', '$0.000125'."""
    whole, _, fraction = decimal_text(amount).partition(".")
    return _with_currency(f"{int(whole):,}.{fraction.ljust(2, '0')}", currency, code_after=True)


def _quantum_text(quantum: int) -> str:
    for size, word in _QUANTUM_WORDS:
        if quantum >= size and quantum % size == 0:
            return f"{quantum // size:,}{word}"
    return f"{quantum:,}"


def _unit_noun(name: str, *, plural: bool) -> str:
    """What a unit counts, from its catalog name: 'Cached input token' -> 'tokens',
    'Cache write token (5 min)' -> 'tokens', 'Vector store GB-month' -> 'GB-month'."""
    noun = name.partition(" (")[0].split()[-1] if name.strip() else name
    if noun[1:2].islower():
        noun = noun[:1].lower() + noun[1:]
    if not plural or noun.endswith("s"):
        return noun
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return f"{noun[:-1]}ies"
    return f"{noun}s"


def price_text(*, amount: Decimal, quantum: int, currency: str, unit_name: str) -> str:
    """A price as a person reads it: '$2.50 per 1M tokens', '$0.04 per image'.

    The unit's full name stands in its own column; the price names only what it counts.
    """
    if quantum == 1:
        return f"{_price_amount_text(amount, currency)} per {_unit_noun(unit_name, plural=False)}"
    return f"{_price_amount_text(amount, currency)} per {_quantum_text(quantum)} {_unit_noun(unit_name, plural=True)}"


@dataclass(frozen=True, slots=True)
class Money:
    """An amount for a template: prints as `money_text`, and says whether it is below zero,
    so that the page can style negatives and neither colour nor a hyphen carries it alone."""

    value: Decimal
    currency: str = "USD"

    @classmethod
    def of(cls, value: Decimal | str | None, currency: str = "USD") -> "Money":
        """From a Decimal or a summary's decimal text; None (an empty sum) is zero."""
        return cls(Decimal(value or 0), currency)

    @property
    def cents(self) -> Decimal:
        return quantize(self.value, CENT)

    @property
    def negative(self) -> bool:
        return self.cents < 0

    def __str__(self) -> str:
        return money_text(self.value, self.currency)


@dataclass(frozen=True, slots=True)
class Share:
    """A signed share (0.02 = 2%) for a template: prints with two decimals, and says
    whether it is below zero."""

    value: Decimal

    @classmethod
    def of(cls, value: Decimal | str | None) -> "Share | None":
        """From a Decimal or decimal text; None where there is no share (nothing to compare with)."""
        return None if value is None else cls(Decimal(value))

    @property
    def negative(self) -> bool:
        return self.value < 0

    def __str__(self) -> str:
        return percent_text(self.value, places=2)


# --- for machines: JSON and CSV ----------------------------------------------------


def money_cents(amount: Decimal | None) -> Decimal:
    """An amount to the cent as a number, for a CSV cell (`pricing.csv_export`); nothing (an empty sum) is 0.00."""
    return quantize(amount or Decimal(0), CENT)


def money_plain(amount: Decimal | None) -> str:
    """Decimal text to the cent for JSON: '1234.50'; nothing (an empty sum) is '0.00'."""
    return f"{money_cents(amount):f}"


def quantity_plain(value: Decimal) -> Decimal:
    """A quantity as a number without trailing zeros, for a CSV cell: it reads as `decimal_text` says it."""
    return Decimal(decimal_text(value))


def focus_money(amount: Decimal) -> Decimal:
    """A FOCUS cost cell: to the cent, never -0.00 (NumericFormat: no sign on a value that is not negative)."""
    cents = money_cents(amount)
    return cents.copy_abs() if cents == 0 else cents


def focus_quantity(value: Decimal) -> Decimal:
    """A FOCUS quantity cell: without trailing zeros, never -0."""
    plain = quantity_plain(value)
    return plain.copy_abs() if plain == 0 else plain
