"""`python manage.py demo`: a working installation from nothing; prints one JSON object."""

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chargeback.demo import demo_load
from pricing.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Load the demo organization, three months of usage (the three full months before this one, UTC), "
        "their provider invoices, a signed mapping, an allocation run per month and the demo login. "
        "Prints the figures of each month's run. Running it again inserts nothing new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--scale",
            type=float,
            default=1.0,
            help="multiply the usage volume: 0.05 for a quick look, 10 for benchmarks (its events are distinct)",
        )
        parser.add_argument(
            "--workdir",
            help="where the provider invoice files are written (default: MEDIA_ROOT/demo/x<scale>-seed<seed>)",
        )

    def handle(self, *args, scale: float, workdir: str | None, **options) -> None:
        try:
            result = demo_load(scale=scale, workdir=workdir)
        except ApplicationError as exc:
            for message in exc.extra.get("errors") or []:
                self.stderr.write(message)
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(result.as_dict()))
