"""`python manage.py rate_usage --period YYYY-MM`: rate a period, keeping what its allocation
needs (so that the month's allocation runs price kept sums); prints one JSON object."""

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from allocation.services.runs.run import allocation_usage_rate
from pricing.errors import ApplicationError
from pricing.money import decimal_text
from pricing.periods import Period


class Command(BaseCommand):
    help = "Rate every ledger line of a period at the prices in force; unpriced lines are counted, not $0."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", required=True, help="YYYY-MM")

    def handle(self, *args, period: str, **options) -> None:
        try:
            run = allocation_usage_rate(period=Period.parse(period))
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            json.dumps(
                {
                    "rating_run": run.pk,
                    "period": run.period,
                    "lines_rated": run.lines_rated,
                    "lines_unpriced": run.lines_unpriced,
                    "cost": decimal_text(run.cost),
                    "price_book_versions": [str(v) for v in run.price_book_versions.all()],
                    "kept_for_allocation": {"sums_by": run.sum_fields, "requests_by": run.request_fields},
                }
            )
        )
