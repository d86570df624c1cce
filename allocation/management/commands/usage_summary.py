"""`python manage.py usage_summary --period YYYY-MM --group-by K1,K2`: a JSON list."""

import json

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder

from allocation.api.serializers import usage_summary_json
from allocation.selectors.rating import usage_summary
from pricing.errors import ApplicationError
from pricing.periods import Period


class Command(BaseCommand):
    help = "Quantity, line count, rated cost and unpriced lines per group for a period, as a JSON list."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", required=True, help="YYYY-MM")
        parser.add_argument("--group-by", default="provider,model,unit", help="comma-separated keys")

    def handle(self, *args, period: str, group_by: str, **options) -> None:
        keys = [key.strip() for key in group_by.split(",") if key.strip()]
        try:
            groups = usage_summary(period=Period.parse(period), group_by=keys)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        # Quantities stay exact: Decimals are written as strings, like the API.
        self.stdout.write(json.dumps(usage_summary_json(groups), cls=DjangoJSONEncoder))
