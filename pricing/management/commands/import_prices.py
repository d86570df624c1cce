"""`python manage.py import_prices --source genai-prices`: list prices with their history."""

import json

from django.core.management.base import BaseCommand, CommandParser

from pricing.services.genai_import import prices_import_genai


class Command(BaseCommand):
    help = "Load providers, models and list prices (dated history, tiers) from genai-prices; adds versions only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", required=True, choices=["genai-prices"])

    def handle(self, *args, source: str, **options) -> None:
        self.stdout.write(json.dumps(prices_import_genai().as_dict()))
