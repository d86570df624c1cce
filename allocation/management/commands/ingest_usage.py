"""`python manage.py ingest_usage PATH --format F`: prints one JSON object."""

import json
import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from allocation.choices import UsageBatchStatus
from allocation.models import UsageBatch
from allocation.services.ledger import FILE_FORMATS, usage_ingest_file
from pricing.errors import ApplicationError


def batch_report(batch: UsageBatch) -> dict:
    """The outer contract of ingestion (DESIGN.md "Outer contracts")."""
    return {
        "batch_id": batch.pk,
        "format": batch.source_format,
        "source": batch.source_name,
        "status": batch.status,
        "rows_read": batch.rows_read,
        "inserted": batch.inserted,
        "duplicate": batch.duplicate,
        "rejected": batch.rejected,
        "lines_inserted": batch.lines_inserted,
        "restated": batch.restated,
        "error": batch.error or None,
        "rejections": {
            "count": batch.rejected,
            "api": f"/api/v1/usage/batches/{batch.pk}/rejections",
            "page": f"/usage/batches/{batch.pk}/",
        },
    }


class _ProgressBar:
    """A one-line progress bar on stderr, drawn only on a terminal."""

    def __init__(self, stream):
        self.stream = stream

    def __call__(self, batch: UsageBatch) -> None:
        share = batch.progress or 0.0
        filled = int(share * 30)
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {share:6.1%}  {batch.rows_read:,} rows"
            f"  {batch.inserted:,} new  {batch.duplicate:,} dup  {batch.rejected:,} rejected"
        )
        self.stream.flush()


class Command(BaseCommand):
    help = "Ingest a usage file into the ledger; prints one JSON object with the batch's counts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--format", required=True, choices=FILE_FORMATS, dest="source_format")
        parser.add_argument("--no-progress", action="store_true", help="never draw the progress bar")

    def handle(self, *args, path: str, source_format: str, no_progress: bool, **options) -> None:
        show_progress = not no_progress and sys.stderr.isatty()
        progress = _ProgressBar(sys.stderr) if show_progress else None
        try:
            batch = usage_ingest_file(path=path, source_format=source_format, progress=progress)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if show_progress:
            sys.stderr.write("\n")
        self.stdout.write(json.dumps(batch_report(batch)))
        if batch.status == UsageBatchStatus.REFUSED:
            raise CommandError(f"refused: {batch.error}", returncode=2)
