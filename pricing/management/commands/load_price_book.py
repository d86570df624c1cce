"""`python manage.py load_price_book FILE`: a price book version from YAML or CSV."""

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pricing.choices import PriceBookKind
from pricing.errors import ApplicationError
from pricing.services.price_books import price_book_load_file


class Command(BaseCommand):
    help = "Load a YAML or CSV price file as a new version of a price book; refused whole if any line is bad."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--book", help="book code (YAML may give it as `book:`)")
        parser.add_argument("--name", help="book name, when the book is new")
        parser.add_argument("--kind", choices=PriceBookKind.values, help="default: contract")
        parser.add_argument("--service", default="", help="rate cards: the shared service they price")

    def handle(self, *args, path: str, book: str | None, name: str | None, kind: str | None, service: str, **options):
        try:
            version, created = price_book_load_file(path=path, book_code=book, name=name, kind=kind, service=service)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc  # the refusal lists every error
        self.stdout.write(
            json.dumps(
                {
                    "book": version.book.code,
                    "version": version.number,
                    "created": created,
                    "prices": version.prices.count(),
                }
            )
        )
