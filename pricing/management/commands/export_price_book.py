"""`python manage.py export_price_book BOOK --format yaml|csv`: a version as a file."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pricing.models import PriceBookVersion
from pricing.services.price_books import price_book_export


class Command(BaseCommand):
    help = "Write a price book version (the latest by default) as YAML or CSV, as load_price_book reads it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("book")
        parser.add_argument("--book-version", type=int, dest="number", help="version number; default: the latest")
        parser.add_argument("--format", choices=["yaml", "csv"], default="yaml", dest="file_format")
        parser.add_argument("--out", help="file to write; default: standard output")

    def handle(self, *args, book: str, number: int | None, file_format: str, out: str | None, **options) -> None:
        versions = PriceBookVersion.objects.filter(book__code=book).order_by("-number")
        version = versions.filter(number=number).first() if number else versions.first()
        if version is None:
            raise CommandError(f"no price book {book!r}" + (f" version {number}" if number else ""))
        text = price_book_export(version=version, file_format=file_format)
        if out:
            Path(out).write_text(text, encoding="utf-8")
        else:
            self.stdout.write(text, ending="")
