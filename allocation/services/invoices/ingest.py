"""Provider invoice ingestion: the one service behind `ingest_invoice`.

The rules are those of usage ingestion: every line read is inserted,
duplicate or rejected with its line, field and reason while the good lines are
kept; a file not in the stated format at all is refused whole, nothing
written. Invoices are small: the whole file is read (by the format's parser,
`parsers`), then written in one transaction through the ORM, so a load that
fails leaves nothing behind.

Invoices are append-only, and a line is matched on meaning, not spelling. A
line's *charge* is its canonical values apart from the figures (invoice,
category, SKU, description, unit, model, tier, project, charge period: times in
UTC); its *figures* are billed, effective and list cost and quantity as
canonical decimal text (`12.50` is `12.5`). A source line whose charge stands
on the invoice with the same figures is a duplicate; with other figures it is
a restatement (a daily cost bucket exported again with a higher amount): the
standing line is reversed and a replacement written, so the invoice sums to
the latest figures, never to both. A file holding the same charge twice keeps
both (two identical charges are two lines), matched one for one.
"""

import os
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from hashlib import blake2b
from pathlib import Path

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from allocation.choices import InvoiceLineEntry, UsageBatchStatus
from allocation.models.invoices import (
    InvoiceBatch,
    InvoiceLine,
    InvoiceRejection,
    ProviderInvoice,
)
from allocation.services.invoices.parsers import INVOICE_FORMATS, PARSERS, InvoiceHeader, ParsedInvoiceLine
from allocation.services.ledger.records import RejectedRecord, SourceFormatError
from pricing.errors import NotFound, ValidationFailed
from pricing.money import decimal_text

__all__ = ["invoice_ingest_file", "line_charge", "line_figures"]


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


CHARGE_FIELDS = (
    "charge_category",
    "sku",
    "description",
    "unit",
    "model",
    "service_tier",
    "project",
    "charge_period_start",
    "charge_period_end",
)
FIGURE_FIELDS = ("billed_cost", "effective_cost", "list_cost", "quantity")


def line_charge(values: Mapping) -> tuple[str, ...]:
    """What a line charges for, canonical: the same from a parsed line and from the
    line it wrote, so a charge read again finds what it wrote on either database."""
    return tuple(_canonical(values.get(name)) for name in CHARGE_FIELDS)


def line_figures(values: Mapping) -> str:
    """A line's figures as canonical decimal text: billed|effective|list|quantity."""
    return "|".join(_number(values.get(name)) for name in FIGURE_FIELDS)


def _canonical(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def _number(value: Decimal | None) -> str:
    if value is None:
        return ""
    return decimal_text(value if value else value.copy_abs())  # -0 is 0


def _negated(figures: str) -> str:
    return "|".join(
        "" if part == "" else "0" if part == "0" else part[1:] if part.startswith("-") else f"-{part}"
        for part in figures.split("|")
    )


def _line_key(provider: str, invoice_id: str, identity: str, occurrence: int) -> str:
    """A new line's own key, from its source row and which copy of that row it is in its file."""
    key = blake2b(digest_size=16)
    key.update(f"{provider}\x1f{invoice_id}\x1f{identity}\x1f{occurrence}".encode())
    return key.hexdigest()


def _derived_key(*parts: object) -> str:
    key = blake2b(digest_size=16)
    key.update("\x1f".join(str(p) for p in parts).encode())
    return key.hexdigest()


def _chunks(items: list, size: int = _LOOKUP_SIZE) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _standing_lines(invoices: list[ProviderInvoice]) -> dict[tuple, list[InvoiceLine]]:
    """The lines that stand on these invoices (neither a reversal nor reversed), by
    invoice and charge, oldest first."""
    lines: list[InvoiceLine] = []
    for chunk in _chunks([i.pk for i in invoices]):
        lines.extend(InvoiceLine.objects.filter(invoice_id__in=chunk).order_by("pk"))
    reversed_ids = {line.restates_id for line in lines if line.entry == InvoiceLineEntry.REVERSAL}
    standing: dict[tuple, list[InvoiceLine]] = defaultdict(list)
    for line in lines:
        if line.entry != InvoiceLineEntry.REVERSAL and line.pk not in reversed_ids:
            charge = line_charge({name: getattr(line, name) for name in CHARGE_FIELDS})
            standing[(line.invoice_id, charge)].append(line)
    return standing


@transaction.atomic
def _write(batch: InvoiceBatch, records: list[ParsedInvoiceLine | RejectedRecord]) -> None:
    """Write a file's lines, its invoices and its rejections, with the batch's counts."""
    provider = batch.provider
    parsed = [r for r in records if isinstance(r, ParsedInvoiceLine)]
    rejected = [r for r in records if isinstance(r, RejectedRecord)]

    invoice_ids = sorted({p.header.invoice_id for p in parsed})
    invoices: dict[str, ProviderInvoice] = {}
    for ids in _chunks(invoice_ids):
        # Locked (PostgreSQL): two loads of one invoice compare with its lines in turn.
        held = ProviderInvoice.objects.select_for_update().filter(provider=provider, invoice_id__in=ids)
        invoices.update((i.invoice_id, i) for i in held)
    standing = _standing_lines(list(invoices.values()))

    occurrences: Counter = Counter()
    by_charge: dict[tuple, list[tuple[str, ParsedInvoiceLine]]] = defaultdict(list)
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
        by_charge[(invoice.pk, line_charge(p.fields))].append((key, p))

    duplicate = 0
    originals: list[tuple[str, ParsedInvoiceLine]] = []
    restated: list[tuple[InvoiceLine, ParsedInvoiceLine]] = []
    for charge, rows in by_charge.items():
        held_lines = standing.get(charge, [])
        # The same figures first, one for one; then each other source line takes the
        # place of a standing line still unmatched, and what is left over is new.
        by_figures: dict[str, list[InvoiceLine]] = defaultdict(list)
        for line in held_lines:
            by_figures[line.figures].append(line)
        matched: set[int] = set()
        unmatched = []
        for key, p in rows:
            same = by_figures.get(line_figures(p.fields))
            if same:
                matched.add(same.pop(0).pk)
                duplicate += 1
            else:
                unmatched.append((key, p))
        free = iter([line for line in held_lines if line.pk not in matched])
        for key, p in unmatched:
            line = next(free, None)
            if line is None:
                originals.append((key, p))
            else:
                restated.append((line, p))

    new: list[InvoiceLine] = []
    taken: set[str] = set()
    for keys in _chunks([k for k, _ in originals]):
        taken.update(InvoiceLine.objects.filter(line_key__in=keys).values_list("line_key", flat=True))
    for key, p in originals:
        if key in taken:
            # The same source row standing for a further charge (its copy held was
            # restated since): its own key is taken, so the batch's line names it.
            key = _derived_key("original", key, batch.pk, p.line)
        taken.add(key)
        new.append(_line(p, invoice=invoices[p.header.invoice_id], batch=batch, line_key=key))
    for line, p in restated:
        new.append(_reversal(line, batch=batch, source_line=p.line))
        new.append(
            _line(
                p,
                invoice=line.invoice,
                batch=batch,
                line_key=_derived_key(InvoiceLineEntry.REPLACEMENT, line.line_key),
                entry=InvoiceLineEntry.REPLACEMENT,
                restates=line,
            )
        )
    InvoiceLine.objects.bulk_create(new, batch_size=_LOOKUP_SIZE)
    InvoiceRejection.objects.bulk_create(
        [
            InvoiceRejection(batch=batch, line=r.line, field=r.field[:200], reason=r.reason[:500], raw=r.raw)
            for r in sorted(rejected, key=lambda r: r.line)
        ],
        batch_size=_LOOKUP_SIZE,
    )
    batch.invoices.add(*{invoices[p.header.invoice_id] for rows in by_charge.values() for _, p in rows})
    InvoiceBatch.objects.filter(pk=batch.pk).update(
        rows_read=F("rows_read") + len(records),
        inserted=F("inserted") + len(originals) + len(restated),
        duplicate=F("duplicate") + duplicate,
        rejected=F("rejected") + len(rejected),
        restated=F("restated") + len(restated),
    )


def _line(
    p: ParsedInvoiceLine,
    *,
    invoice: ProviderInvoice,
    batch: InvoiceBatch,
    line_key: str,
    entry: str = InvoiceLineEntry.ORIGINAL,
    restates: InvoiceLine | None = None,
) -> InvoiceLine:
    return InvoiceLine(
        invoice=invoice,
        line_key=line_key,
        entry=entry,
        restates=restates,
        batch=batch,
        source_line=p.line,
        figures=line_figures(p.fields),
        **p.fields,
    )


def _reversal(line: InvoiceLine, *, batch: InvoiceBatch, source_line: int) -> InvoiceLine:
    """A line cancelling `line`: its charge with every figure negated (exactly: copy_negate
    rounds nothing), written by the batch and source line that restated it."""

    def negated(value: Decimal | None) -> Decimal | None:
        return None if value is None else value.copy_negate()

    return InvoiceLine(
        invoice_id=line.invoice_id,
        line_key=_derived_key(InvoiceLineEntry.REVERSAL, line.line_key),
        entry=InvoiceLineEntry.REVERSAL,
        restates=line,
        batch=batch,
        source_line=source_line,
        charge_category=line.charge_category,
        sku=line.sku,
        description=line.description,
        unit=line.unit,
        quantity=negated(line.quantity),
        billed_cost=negated(line.billed_cost),
        effective_cost=negated(line.effective_cost),
        list_cost=negated(line.list_cost),
        charge_period_start=line.charge_period_start,
        charge_period_end=line.charge_period_end,
        model=line.model,
        service_tier=line.service_tier,
        project=line.project,
        figures=_negated(line.figures),
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
