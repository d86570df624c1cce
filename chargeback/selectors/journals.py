"""Reads of journal entries for the pages (the ERP's API reads them in a later step)."""

from dataclasses import dataclass
from decimal import Decimal

from chargeback.models import JournalEntry, Statement

__all__ = ["JournalEntryView", "journal_entries_of_statement"]


@dataclass(frozen=True)
class JournalEntryView:
    """An entry with its lines, amounts in the currency's units for display."""

    entry: JournalEntry
    lines: list[dict]
    total: Decimal


def _amount(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def journal_entries_of_statement(*, statement: Statement) -> list[JournalEntryView]:
    """A statement's journal entries in the order they were written, each with its lines."""
    entries = (
        statement.journal_entries.select_related("reverses")
        .prefetch_related("lines__cost_center")
        .order_by("created_at", "id")
    )
    views = []
    for entry in entries:
        lines = [
            {
                "line_no": line.line_no,
                "gl_account": line.gl_account,
                "cost_center": line.cost_center.code if line.cost_center else "",
                "modality": line.modality,
                "debit": _amount(line.debit_cents) if line.debit_cents else None,
                "credit": _amount(line.credit_cents) if line.credit_cents else None,
                "description": line.description,
            }
            for line in entry.lines.all()
        ]
        total = _amount(sum(line.debit_cents for line in entry.lines.all()))
        views.append(JournalEntryView(entry=entry, lines=lines, total=total))
    return views
