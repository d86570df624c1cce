"""`python manage.py load_activity FILE.csv`: activity counts for activity-based pools."""

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from allocation.services.runs.activity import activity_counts_load_file
from pricing.errors import ApplicationError


class Command(BaseCommand):
    help = "Load period,driver,cost_center,count rows (refused whole if any is bad); a repeat replaces the counts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="CSV with columns period, driver, cost_center, count")

    def handle(self, *args, path: str, **options) -> None:
        try:
            result = activity_counts_load_file(path=path)
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        except FileNotFoundError:
            raise CommandError(f"no such file: {path}") from None
        self.stdout.write(json.dumps({"path": path, **result}))
