"""Money and quantity precision: the named constants and the one rounding helper.

Rated costs keep sub-cent precision; amounts are rounded to the currency's minor
unit only on statements and journal entries.
"""

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

__all__ = [
    "QUANTITY_MAX_DIGITS",
    "QUANTITY_DECIMAL_PLACES",
    "decimal_text",
    "parse_decimal",
    "quantize",
]

# A ledger quantity: up to a trillion tokens in one aggregated bucket, and
# fractions down to a nanosecond of GPU time or a byte of a GB-month.
QUANTITY_MAX_DIGITS = 30
QUANTITY_DECIMAL_PLACES = 9
QUANTITY_QUANTUM = Decimal(1).scaleb(-QUANTITY_DECIMAL_PLACES)
QUANTITY_LIMIT = Decimal(10) ** (QUANTITY_MAX_DIGITS - QUANTITY_DECIMAL_PLACES)


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
        if not text or "_" in text:
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
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
