"""Money and quantity precision: the named constants and the one rounding helper.

Rated costs keep sub-cent precision; amounts are rounded to the currency's minor
unit only on statements and journal entries.
"""

from collections.abc import Hashable, Mapping
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext

__all__ = [
    "CENT",
    "QUANTITY_MAX_DIGITS",
    "QUANTITY_DECIMAL_PLACES",
    "QUANTITY_LIMIT",
    "QUANTITY_QUANTUM",
    "decimal_from_db",
    "decimal_text",
    "largest_remainder",
    "parse_decimal",
    "quantize",
]

# A ledger quantity: up to a trillion tokens in one aggregated bucket, and
# fractions down to a nanosecond of GPU time or a byte of a GB-month.
QUANTITY_MAX_DIGITS = 30
QUANTITY_DECIMAL_PLACES = 9
QUANTITY_QUANTUM = Decimal(1).scaleb(-QUANTITY_DECIMAL_PLACES)
QUANTITY_LIMIT = Decimal(10) ** (QUANTITY_MAX_DIGITS - QUANTITY_DECIMAL_PLACES)
# The minor unit of the currencies we book (USD, EUR, GBP ...).
CENT = Decimal("0.01")


def parse_decimal(value: object) -> Decimal:
    """A Decimal from a string or an int, never through float.

    Raises ValueError with a short reason a rejection can carry.
    """
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise ValueError("not a number")
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        # JSON numbers arrive as float; repr() is the shortest exact round-trip.
        result = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        # Decimal() reads any Unicode digit ('٩' is 9) and underscores; a number in a
        # usage file is ASCII, and anything else is a sign of a garbled source.
        if not text or "_" in text or not text.isascii():
            raise ValueError(f"not a number: {value!r}")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    else:
        raise ValueError(f"not a number: {value!r}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def quantize(amount: Decimal, quantum: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """Round to a quantum (a cent, a micro-dollar); the only rounding in the project."""
    return amount.quantize(quantum, rounding=rounding)


def decimal_text(value: Decimal) -> str:
    """Plain text of a Decimal without trailing zeros or exponent: '1000', '0.000001024'.

    The same quantity reads the same from SQLite and PostgreSQL (which keeps
    the column's scale), in the API, the commands and the pages.
    """
    if not value:
        return "0"  # '-0', '0E-9' and '0.000' are all zero
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def largest_remainder(total: Decimal, parts: Mapping[Hashable, Decimal], quantum: Decimal = CENT) -> dict:
    """Round exact `parts` to `quantum` so that they add up exactly to `total` rounded.

    Every part is floored, and the quanta still missing go one each to the parts
    with the largest remainders; ties go to the smaller key, so the result does
    not depend on the order of `parts` (Saleor's give-it-all-to-the-last-line is
    biased and order-dependent). Parts may be negative (credits, spreads). The
    exact parts must add up to `total` (to well below a quantum).
    """
    target = quantize(total, quantum)
    if not parts:
        if target:
            raise ValueError(f"nothing to split {target} over")
        return {}
    with localcontext() as context:
        context.prec = 60
        floors = {key: quantize(amount, quantum, ROUND_FLOOR) for key, amount in parts.items()}
        missing = (target - sum(floors.values(), Decimal(0))) / quantum
        count = int(missing.to_integral_value())
        if abs(missing - count) > Decimal("0.001") or not 0 <= count <= len(parts):
            raise ValueError(f"parts add up to {sum(parts.values())}, not to the total {total}")
        ranked = sorted(parts, key=lambda key: (-(parts[key] - floors[key]), _sort_key(key)))
        for key in ranked[:count]:
            floors[key] += quantum
    assert sum(floors.values(), Decimal(0)) == target
    return floors


def _sort_key(key: Hashable) -> tuple:
    """A total order over keys of mixed types (None, numbers, text) for the tie-break."""
    if isinstance(key, tuple):
        return tuple(_sort_key(k) for k in key)
    return ("" if key is None else type(key).__name__, "" if key is None else str(key))


def decimal_from_db(value, places: int = QUANTITY_DECIMAL_PLACES) -> Decimal:
    """A Decimal from what the database returns.

    SQLite sums decimals as floats, good to 15 significant digits: rounding to
    those, and to the column's places, undoes the float noise
    (176707.59999999998 is 176707.6). PostgreSQL returns exact decimals.
    """
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    significant = Context(prec=15).create_decimal(repr(value))
    return quantize(significant, Decimal(1).scaleb(-places)).normalize()
