"""`python manage.py export_focus --period YYYY-MM --out FILE`: allocated cost as FOCUS 1.2 CSV."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from allocation.services.runs.focus_export import focus_export_file
from pricing.errors import ApplicationError
from pricing.periods import Period


class Command(BaseCommand):
    help = (
        "Write the period's current allocation run as a FOCUS 1.2 cost and usage CSV (allocation detail in x_ "
        "columns). Prints the run id, period, rows written and the file's path. Exits non-zero, writing "
        "nothing, when the period has no current run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--period", required=True, help="YYYY-MM")
        parser.add_argument("--out", required=True, help="CSV file to write (replaced whole on success)")

    def handle(self, *args, period: str, out: str, **options) -> None:
        path = Path(out)
        if not path.parent.is_dir():
            raise CommandError(f"--out {out}: directory {path.parent} does not exist")
        try:
            result = focus_export_file(period=Period.parse(period), path=path)
        except ApplicationError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(
            json.dumps({"run": result.run_id, "period": result.period, "rows": result.rows, "path": str(path)})
        )
