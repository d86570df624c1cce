"""The one CSV writer of every export (pricing.csv_export): text that a spreadsheet would run as a
formula is neutralized, numbers are told by their type and written as they stand."""

import io
from datetime import date
from decimal import Decimal

import pytest

from pricing.csv_export import csv_cell, csv_cell_restore, csv_lines, csv_write
from pricing.models import AiModel, Provider
from pricing.services.price_books import price_book_export, price_book_load_file

HOSTILE = ('=HYPERLINK("http://x")', "+1", "-1+1", "@SUM(A1)", "\tx", "\rx")


@pytest.mark.parametrize("value", HOSTILE)
def test_text_that_starts_a_formula_is_neutralized_and_restored(value):
    assert csv_cell(value) == "'" + value
    assert csv_cell_restore(csv_cell(value)) == value


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (Decimal("-12.50"), "-12.50"),
        (Decimal("1.25E-7"), "0.000000125"),
        (Decimal("0.00"), "0.00"),
        (-3, "-3"),
        (None, ""),
        (date(2026, 10, 1), "2026-10-01"),
        ("search", "search"),
        ("it's", "it's"),
        ("'quoted", "'quoted"),  # not ours: read back as it stands
        (" =1", " =1"),  # a leading space is text to a spreadsheet
    ],
)
def test_numbers_stay_numbers_and_plain_text_stays_as_is(value, cell):
    assert csv_cell(value) == cell
    assert csv_cell_restore(cell) == cell  # nothing to take off


def test_a_number_given_as_text_is_text_and_a_float_is_refused():
    assert csv_cell("-12.50") == "'-12.50"  # callers hand over Decimals, never formatted numbers
    with pytest.raises(TypeError, match="float"):
        csv_cell(0.1)


def test_lines_and_files_are_csv_with_the_cells_neutralized():
    rows = [["team", "amount"], ['=HYPERLINK("http://x")', Decimal("-1.00")], ["a,b", 2]]
    text = "".join(csv_lines(rows))
    assert text == 'team,amount\r\n"\'=HYPERLINK(""http://x"")",-1.00\r\n"a,b",2\r\n'
    stream = io.StringIO(newline="")
    assert csv_write(stream, rows[1:], header=rows[0], lineterminator="\n") == 2
    assert stream.getvalue() == text.replace("\r\n", "\n")


@pytest.mark.django_db
def test_price_book_csv_neutralizes_a_hostile_model_code_and_reads_it_back(tmp_path):
    provider = Provider.objects.create(code="acme", name="Acme")
    AiModel.objects.create(provider=provider, code="-1+1", match_rule={"starts_with": "-1+1"})
    path = tmp_path / "book.yaml"
    path.write_text(
        'book: acme\nname: Acme\nkind: list\nprices:\n  - {provider: acme, model: "-1+1", unit: input_token,'
        ' amount: "0.000000125", per: 1}\n',
        encoding="utf-8",
    )
    version, _ = price_book_load_file(path=path)
    text = price_book_export(version=version, file_format="csv")
    assert text.splitlines()[1] == "acme,'-1+1,input_token,0.000000125,1,,,0,,,USD"
    copy = tmp_path / "copy.csv"
    copy.write_text(text, encoding="utf-8")
    reloaded, created = price_book_load_file(path=copy, book_code="copy", kind="list")
    assert created and reloaded.checksum == version.checksum
