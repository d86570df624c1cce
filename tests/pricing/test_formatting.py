"""How amounts read on pages: a cost per request or trace keeps two significant digits
below a cent, where an amount would read '<$0.01' on every row."""

from decimal import Decimal

import pytest

from pricing.formatting import MINUS, unit_cost_text


@pytest.mark.parametrize(
    ("cost", "text"),
    [
        ("0.001385", "$0.0014"),
        ("0.05", "$0.05"),
        ("0.0499", "$0.05"),
        ("1.234", "$1.23"),
        ("12345.678", "$12,345.68"),
        ("0", "$0.00"),
        ("0.0000009", "$0.0000009"),
        ("-0.00072", f"{MINUS}$0.00072"),
    ],
)
def test_a_unit_cost_reads_to_the_cent_or_to_two_significant_digits_below_it(cost, text):
    assert unit_cost_text(Decimal(cost)) == text


def test_a_unit_cost_names_its_currency():
    assert unit_cost_text(Decimal("0.00123"), "EUR") == "€0.0012"
