"""`python manage.py load_org FILE.yaml`: prints one JSON object with the counts per kind."""

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from allocation.services.org import org_load_file
from pricing.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Create or update cost centers, teams, features and tenants from a YAML file. "
        "An invalid file is refused whole; nothing is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="YAML file with cost_centers, teams, features, tenants")

    def handle(self, *args, path: str, **options) -> None:
        try:
            result = org_load_file(path=path)
        except ApplicationError as exc:
            errors = exc.extra.get("errors") or [exc.message]
            for message in errors:
                self.stderr.write(message)
            raise CommandError(f"refused: {len(errors)} error(s) in {path}; nothing was written") from exc
        self.stdout.write(json.dumps(result.as_dict()))
