"""Provider invoice ingestion: the one service behind `ingest_invoice`.

The rules are those of usage ingestion: every line read is inserted,
duplicate (its line key is held already, so the same file twice inserts
nothing) or rejected with its line, field and reason while the good lines are
kept; a file not in the stated format at all is refused whole, nothing
written. A line key is derived from the provider, the invoice, the line's full
content and its occurrence in the file, so two identical charges on one
invoice stay two lines. Invoices are small: the whole file is read (by the
format's parser, `parsers`), then written in one transaction through the ORM.
"""

import os
from collections import Counter
from collections.abc import Iterator
from hashlib import blake2b
from pathlib import Path

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from allocation.choices import UsageBatchStatus
from allocation.models.invoices import (
    InvoiceBatch,
    InvoiceLine,
    InvoiceRejection,
    ProviderInvoice,
)
from allocation.services.invoices.parsers import INVOICE_FORMATS, PARSERS, InvoiceHeader, ParsedInvoiceLine
from allocation.services.ledger.records import RejectedRecord, SourceFormatError
from pricing.errors import NotFound, ValidationFailed

__all__ = ["invoice_ingest_file"]


_LOOKUP_SIZE = 500  # stays under SQLite's bound-parameter limit


def invoice_ingest_file(*, path: str | os.PathLike, source_format: str, provider: str, created_by=None) -> InvoiceBatch:
    """Ingest one invoice file; returns its batch (completed or refused)."""
    path = Path(path)
    if source_format not in PARSERS:
        raise ValidationFailed(
            f"unknown format {source_format!r}; formats are {', '.join(INVOICE_FORMATS)}", code="unknown_format"
        )
    provider = (provider or "").strip()
    if not provider or len(provider) > 64:
        raise ValidationFailed("provider: give the provider's code (up to 64 characters)", code="invalid_provider")
    if not path.is_file():
        raise NotFound(f"{path}: no such file", code="file_not_found")
    batch = InvoiceBatch.objects.create(
        source_format=source_format,
        source_name=str(path)[:500],
        provider=provider,
        status=UsageBatchStatus.RUNNING,
        started_at=timezone.now(),
        created_by=created_by,
    )
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            records = list(PARSERS[source_format](stream, provider=provider))
        _write(batch, records)
    except SourceFormatError as exc:
        return _batch_end(batch, UsageBatchStatus.REFUSED, f"{path.name}: {exc.message}")
    except UnicodeDecodeError as exc:
        return _batch_end(
            batch, UsageBatchStatus.REFUSED, f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        )
    except Exception as exc:
        _batch_end(batch, UsageBatchStatus.FAILED, f"{type(exc).__name__}: {exc}"[:5000])
        raise
    return _batch_end(batch, UsageBatchStatus.COMPLETED, "")


def _batch_end(batch: InvoiceBatch, status: str, error: str) -> InvoiceBatch:
    InvoiceBatch.objects.filter(pk=batch.pk).update(status=status, error=error, finished_at=timezone.now())
    batch.refresh_from_db()
    return batch


def _line_key(provider: str, invoice_id: str, identity: str, occurrence: int) -> str:
    key = blake2b(digest_size=16)
    key.update(f"{provider}\x1f{invoice_id}\x1f{identity}\x1f{occurrence}".encode())
    return key.hexdigest()


def _chunks(items: list, size: int = _LOOKUP_SIZE) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@transaction.atomic
def _write(batch: InvoiceBatch, records: list[ParsedInvoiceLine | RejectedRecord]) -> None:
    """Write a file's lines, its invoices and its rejections, with the batch's counts."""
    provider = batch.provider
    parsed = [r for r in records if isinstance(r, ParsedInvoiceLine)]
    rejected = [r for r in records if isinstance(r, RejectedRecord)]

    invoice_ids = sorted({p.header.invoice_id for p in parsed})
    invoices: dict[str, ProviderInvoice] = {}
    for ids in _chunks(invoice_ids):
        invoices.update(
            (i.invoice_id, i) for i in ProviderInvoice.objects.filter(provider=provider, invoice_id__in=ids)
        )

    occurrences: Counter = Counter()
    keyed: list[tuple[str, ParsedInvoiceLine]] = []
    for p in parsed:
        header = p.header
        invoice = invoices.get(header.invoice_id)
        if invoice is None:
            invoice = invoices[header.invoice_id] = ProviderInvoice.objects.create(
                provider=provider,
                invoice_id=header.invoice_id,
                issuer=header.issuer,
                billing_account=header.billing_account,
                billing_period_start=header.billing_period_start,
                billing_period_end=header.billing_period_end,
                currency=header.currency,
                source_batch=batch,
            )
        mismatch = _header_mismatch(invoice, header)
        if mismatch:
            rejected.append(RejectedRecord(p.line, mismatch[0], mismatch[1], p.identity[:2000]))
            continue
        occurrences[(header.invoice_id, p.identity)] += 1
        key = _line_key(provider, header.invoice_id, p.identity, occurrences[(header.invoice_id, p.identity)])
        keyed.append((key, p))

    held: set[str] = set()
    for keys in _chunks([k for k, _ in keyed]):
        held.update(InvoiceLine.objects.filter(line_key__in=keys).values_list("line_key", flat=True))
    new = [
        InvoiceLine(invoice=invoices[p.header.invoice_id], line_key=key, batch=batch, source_line=p.line, **p.fields)
        for key, p in keyed
        if key not in held
    ]
    InvoiceLine.objects.bulk_create(new, batch_size=_LOOKUP_SIZE)
    InvoiceRejection.objects.bulk_create(
        [
            InvoiceRejection(batch=batch, line=r.line, field=r.field[:200], reason=r.reason[:500], raw=r.raw)
            for r in sorted(rejected, key=lambda r: r.line)
        ],
        batch_size=_LOOKUP_SIZE,
    )
    batch.invoices.add(*{invoices[p.header.invoice_id] for _, p in keyed})
    InvoiceBatch.objects.filter(pk=batch.pk).update(
        rows_read=F("rows_read") + len(records),
        inserted=F("inserted") + len(new),
        duplicate=F("duplicate") + len(keyed) - len(new),
        rejected=F("rejected") + len(rejected),
    )


def _header_mismatch(invoice: ProviderInvoice, header: InvoiceHeader) -> tuple[str, str] | None:
    """Why a line cannot belong to the invoice its id names, if it cannot."""
    if invoice.currency != header.currency:
        return "currency", f"{header.currency}, but invoice {invoice.invoice_id} is in {invoice.currency}"
    if (invoice.billing_period_start, invoice.billing_period_end) != (
        header.billing_period_start,
        header.billing_period_end,
    ):
        return (
            "billing_period",
            f"{header.billing_period_start:%Y-%m-%d} to {header.billing_period_end:%Y-%m-%d}, but invoice "
            f"{invoice.invoice_id} is for {invoice.billing_period_start:%Y-%m-%d} to "
            f"{invoice.billing_period_end:%Y-%m-%d}",
        )
    return None
