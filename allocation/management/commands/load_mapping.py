"""`python manage.py load_mapping FILE.yaml`: prints one JSON object with the new draft version."""

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from allocation.services.mapping.files import mapping_load_file
from pricing.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Create a draft mapping version with its rules and shared-cost pools from a YAML file. "
        "An invalid file is refused whole; nothing is written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="YAML file with name, effective_from, rules, pools")

    def handle(self, *args, path: str, **options) -> None:
        try:
            version = mapping_load_file(path=path)
        except ApplicationError as exc:
            errors = exc.extra.get("errors") or [exc.message]
            for message in errors:
                self.stderr.write(message)
            raise CommandError(f"refused: {len(errors)} error(s) in {path}; nothing was written") from exc
        result = {
            "version": version.number,
            "status": version.status,
            "rules": version.rules.count(),
            "pools": version.pools.count(),
        }
        self.stdout.write(json.dumps(result))
