"""`python manage.py run_allocation --period YYYY-MM`: allocate a period; prints one JSON object."""

import json
from decimal import Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from allocation.selectors.runs import allocation_run_summary
from allocation.services.runs.run import allocation_run_execute
from pricing.errors import ApplicationError
from pricing.periods import Period


class Command(BaseCommand):
    help = (
        "Allocate a period's provider invoices to cost centers with the signed mapping version in force. "
        "Prints the run id, fingerprint and, per provider, invoice total, allocated, unallocated by reason "
        "and variance. Exits non-zero when refused (a run in progress, a closed period, no mapping)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", required=True, help="YYYY-MM")
        parser.add_argument("--tolerance", help="Reconciliation tolerance as a share (default 0.02, i.e. 2%%)")
        parser.add_argument("--user", help="Username the run is recorded as started by")

    def handle(self, *args, period: str, tolerance: str | None, user: str | None, **options) -> None:
        actor = None
        if user:
            actor = get_user_model().objects.filter(username=user).first()
            if actor is None:
                raise CommandError(f"no user named {user!r}")
        try:
            share = Decimal(tolerance) if tolerance is not None else None
        except InvalidOperation:
            raise CommandError(f"--tolerance {tolerance!r} is not a number such as 0.02") from None
        try:
            run = allocation_run_execute(period=Period.parse(period), actor=actor, tolerance=share)
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(json.dumps(allocation_run_summary(run=run, cost_centers=False)))
