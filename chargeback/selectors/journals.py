"""Reads of journal entries: a statement's for its page; every entry for the ERP's API and
its CSV, company-wide (finance, the platform team and the ERP hold the permission; team
members do not, as on the pages)."""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Q, QuerySet

from allocation.access import Permission, access_allows
from chargeback.models import JournalEntry, JournalLine, Statement

__all__ = [
    "JOURNAL_CSV_HEADER",
    "JournalEntryView",
    "after_position",
    "journal_csv_rows",
    "journal_entries_of_statement",
    "journal_entries_visible",
    "journal_lines_by_entry",
    "journal_lines_document",
]


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


def after_position(updated_at, entry_id: int) -> Q:
    """Entries after a keyset position in (updated_at, id) order: the index
    journal_entry_updated_cursor serves it."""
    return Q(updated_at__gt=updated_at) | Q(updated_at=updated_at, id__gt=entry_id)


def journal_entries_visible(actor) -> QuerySet:
    """Every journal entry for an actor who may view them (company-wide); none otherwise."""
    if not access_allows(actor, Permission.VIEW_JOURNAL_ENTRIES):
        return JournalEntry.objects.none()
    return JournalEntry.objects.select_related("cost_center", "reverses")


def journal_lines_by_entry(entry_ids: list[int]) -> dict[int, list[tuple]]:
    """The lines of some entries in one query, as tuples (a page holds 500 entries of 50
    lines: model instances would cost more than the rest of the answer). Each tuple:
    (line_no, gl_account, cost center code or None, debit_cents, credit_cents, modality,
    description)."""
    lines: dict[int, list[tuple]] = {entry_id: [] for entry_id in entry_ids}
    rows = (
        JournalLine.objects.filter(entry_id__in=entry_ids)
        .order_by("entry_id", "line_no")
        .values_list(
            "entry_id",
            "line_no",
            "gl_account",
            "cost_center__code",
            "debit_cents",
            "credit_cents",
            "modality",
            "description",
        )
    )
    for entry_id, *line in rows:
        lines[entry_id].append(tuple(line))
    return lines


def _money_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def journal_lines_document(lines: Iterable[tuple]) -> tuple[str, int]:
    """An entry's lines as the API gives them, the text of a JSON array in line order, and
    its debits' sum in cents: built once when the lines are written and kept on the entry
    (`JournalEntry.lines_json`), since neither ever changes. Each line a tuple as
    `journal_lines_by_entry` gives it."""
    array = [
        {
            "line_no": line_no,
            "gl_account": gl_account,
            "cost_center": center,
            "debit_cents": debit,
            "credit_cents": credit,
            "debit": _money_text(debit),
            "credit": _money_text(credit),
            "modality": modality,
            "description": description,
        }
        for line_no, gl_account, center, debit, credit, modality, description in sorted(lines)
    ]
    return json.dumps(array), sum(line["debit_cents"] for line in array)


JOURNAL_CSV_HEADER = [
    "external_id",
    "company",
    "period",
    "posting_date",
    "currency",
    "kind",
    "status",
    "reverses",
    "erp_document_number",
    "memo",
    "line_no",
    "gl_account",
    "cost_center",
    "debit",
    "credit",
    "description",
]


def journal_csv_rows(entries: QuerySet, *, chunk: int = 500):
    """One row per line, its entry's header repeated; entries in (updated_at, id) order,
    read a chunk at a time so a period's download holds no more than a chunk in memory."""
    ordered = entries.defer("lines_json").order_by("updated_at", "id")  # rows give the lines here
    last = None
    while True:
        page = ordered if last is None else ordered.filter(after_position(*last))
        batch = list(page[:chunk])
        if not batch:
            return
        lines = journal_lines_by_entry([entry.pk for entry in batch])
        for entry in batch:
            head = [
                entry.external_id,
                entry.company,
                entry.period,
                entry.posting_date.isoformat(),
                entry.currency,
                entry.kind,
                entry.status,
                entry.reverses.external_id if entry.reverses else "",
                entry.erp_document_number,
                entry.memo,
            ]
            for line_no, gl_account, center, debit, credit, _modality, description in lines[entry.pk]:
                yield [
                    *head,
                    line_no,
                    gl_account,
                    center or "",
                    _amount(debit) if debit else "",
                    _amount(credit) if credit else "",
                    description,
                ]
        last = (batch[-1].updated_at, batch[-1].pk)
