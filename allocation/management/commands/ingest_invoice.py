"""`python manage.py ingest_invoice PATH --format F --provider P`: prints one JSON object."""

import json
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError, CommandParser

from allocation.choices import UsageBatchStatus
from allocation.models import InvoiceBatch, InvoiceLine
from allocation.services.invoices.ingest import invoice_ingest_file
from allocation.services.invoices.parsers import INVOICE_FORMATS
from pricing.errors import ApplicationError
from pricing.money import decimal_text

REJECTIONS_SHOWN = 50


def invoice_batch_report(batch: InvoiceBatch) -> dict:
    """The batch's counts, as ingest_usage's report, and the invoices it read with their totals.

    Totals are summed here from each line's Decimal: exact on both databases
    (SQLite would sum the column as floats), and an invoice has few lines.
    """
    invoices = list(batch.invoices.order_by("billing_period_start", "invoice_id"))
    totals: dict[int, list[Decimal]] = {i.pk: [Decimal(0), Decimal(0), 0] for i in invoices}
    lines = InvoiceLine.objects.filter(invoice__in=invoices).values_list("invoice_id", "billed_cost", "effective_cost")
    for invoice_pk, billed, effective in lines:
        totals[invoice_pk][0] += billed
        totals[invoice_pk][1] += effective
        totals[invoice_pk][2] += 1
    return {
        "batch_id": batch.pk,
        "format": batch.source_format,
        "source": batch.source_name,
        "provider": batch.provider,
        "status": batch.status,
        "rows_read": batch.rows_read,
        "inserted": batch.inserted,
        "duplicate": batch.duplicate,
        "rejected": batch.rejected,
        "restated": batch.restated,
        "error": batch.error or None,
        "invoices": [
            {
                "invoice_id": i.invoice_id,
                "currency": i.currency,
                "billing_period_start": i.billing_period_start.isoformat(),
                "billing_period_end": i.billing_period_end.isoformat(),
                "lines": totals[i.pk][2],
                "billed_cost": decimal_text(totals[i.pk][0]),
                "effective_cost": decimal_text(totals[i.pk][1]),
            }
            for i in invoices
        ],
        "rejections": {
            "count": batch.rejected,
            "first": [
                {"line": r.line, "field": r.field, "reason": r.reason}
                for r in batch.rejections.all()[:REJECTIONS_SHOWN]
            ],
        },
    }


class Command(BaseCommand):
    help = "Ingest a provider invoice file; prints one JSON object with the batch's counts and invoice totals."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--format", required=True, choices=INVOICE_FORMATS, dest="source_format")
        parser.add_argument("--provider", required=True, help="provider code, as usage lines name it (e.g. openai)")

    def handle(self, *args, path: str, source_format: str, provider: str, **options) -> None:
        try:
            batch = invoice_ingest_file(path=path, source_format=source_format, provider=provider)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(invoice_batch_report(batch)))
        if batch.status == UsageBatchStatus.REFUSED:
            raise CommandError(f"refused: {batch.error}", returncode=2)
