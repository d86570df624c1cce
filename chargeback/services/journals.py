"""Journal entries: what an approved statement's chargeback becomes in the general ledger
(DESIGN.md "Statements, sign-off, disputes, journals"; README "Journal entries").

Approving a statement writes its entries in the same transaction: one per kind of money
on it (this month's charges, prior-period corrections, dispute adjustments), each
balanced in cents. Every chargeback line of the statement is booked on the statement's
own cost center against a clearing account:

- the cost center's *expense* account for what it consumes, or its *recovery* account
  for what it earns by providing a shared service (the margin on a passthrough, the
  spread it keeps between a rate card and the cost, a fixed fee it receives);
- the other side on the *provider clearing* account when the money came from a provider
  invoice (the line names a provider), or on the *internal clearing* account for a
  transfer between cost centers that no invoice carries (a fixed monthly fee).

So each entry balances alone and ties to its own statement, whatever order the month's
statements are approved in; once all are, the internal clearing nets to zero and the
provider clearing holds exactly the invoices' charged-back share.

The ERP pulls entries (ready → exported) and acknowledges each with its document number
(→ acknowledged); a statement whose entries are all acknowledged is posted, and one with
none (no chargeback) is posted at its sign-off: there is nothing for the ERP to post. An
entry is never edited: `journal_entry_reverse` undoes one with a reversing entry.

Every transaction that writes entries takes `journal_write_lock` first and its timestamps
after it, so entries' `updated_at` follow the order their transactions commit in: the
ERP's incremental pull (keyset on `updated_at`, `id`) never passes an instant that a
transaction still open could later commit an entry under.
"""

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet, Sum
from django.utils import timezone

from allocation.access import Permission, access_require
from allocation.choices import AllocationMethod
from allocation.models import CostCenter
from chargeback.choices import (
    SIGNED_STATUSES,
    JournalEntryKind,
    JournalEntryStatus,
    JournalGroupBy,
    StatementLineKind,
    StatementStatus,
)
from chargeback.models import JournalEntry, JournalLine, Statement
from chargeback.models.statements import CHARGEBACK_LINES
from chargeback.selectors.journals import journal_lines_document
from chargeback.services.audit import audit_record
from pricing.choices import MODALITY_NONE_LABEL, modality_label
from pricing.errors import Conflict, ValidationFailed
from pricing.money import CENT, decimal_from_db, quantize
from pricing.periods import Period

__all__ = [
    "NOTHING_TO_POST",
    "journal_entries_export",
    "journal_entries_for_statement",
    "journal_entries_reverse_statement",
    "journal_entry_acknowledge",
    "journal_entry_external_id",
    "journal_entry_reverse",
    "journal_write_lock",
    "money_cents",
]

# Which entry a statement line's money goes to, in the order entries are numbered.
_ENTRY_KIND = {
    StatementLineKind.CHARGE: JournalEntryKind.CHARGEBACK,
    StatementLineKind.CORRECTION: JournalEntryKind.CORRECTION,
    StatementLineKind.ADJUSTMENT: JournalEntryKind.ADJUSTMENT,
}
_MEMO = {
    JournalEntryKind.CHARGEBACK: "AI spend chargeback",
    JournalEntryKind.CORRECTION: "Prior-period corrections of AI spend booked in",
    JournalEntryKind.ADJUSTMENT: "Accepted AI spend disputes booked in",
}
# Lines that sit on a shared service's owner as its own result: what it earns beyond the
# provider's cost (a margin), or keeps as the spread between its card and the cost.
_RECOVERY_METHODS = frozenset({AllocationMethod.MARGIN, AllocationMethod.CARD_SPREAD})
DOCUMENT_NUMBER_MAX = JournalEntry._meta.get_field("erp_document_number").max_length
# Why a statement with no journal entry is posted at its sign-off (its audit row's reason).
NOTHING_TO_POST = "nothing to post to the ERP: no chargeback (showback only)"
# The PostgreSQL advisory lock key of journal writes ("JOURNAL" in ASCII): fixed, so every
# writer on every connection takes the same one.
JOURNAL_WRITE_LOCK_KEY = 0x4A4F55524E414C


def journal_write_lock() -> None:
    """Make this transaction the only one writing journal entries until it ends. Taken
    first by every writer (before any row lock, so locks are always taken in one order),
    and before any timestamp: a writer that commits later then always stamps a later
    `updated_at`. PostgreSQL: a transaction-scoped advisory lock. SQLite: its database
    write lock, taken now by an update of no row rather than at the first real write."""
    if not connection.in_atomic_block:
        # Outside a transaction the lock would end with the statement that took it.
        raise RuntimeError("journal_write_lock is taken inside the writing transaction")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [JOURNAL_WRITE_LOCK_KEY])
        else:
            cursor.execute(f"UPDATE {JournalEntry._meta.db_table} SET id = id WHERE 1 = 0")


def money_cents(amount: Decimal) -> int:
    """Whole cents of an amount (statement amounts are whole cents already)."""
    return int(quantize(Decimal(amount), CENT).scaleb(2))


def journal_entry_external_id(*, period: str, cost_center_code: str, kind: str, number: int) -> str:
    """The id the ERP knows an entry by: made of what the entry is, never of database ids,
    so the same statement gives the same ids on any installation."""
    return f"CB-{period}-{cost_center_code}-{kind}-{number}"


def _snapshot(entry: JournalEntry) -> dict:
    return {
        "external_id": entry.external_id,
        "kind": entry.kind,
        "status": entry.status,
        "erp_document_number": entry.erp_document_number,
    }


def _group_by() -> str:
    value = getattr(settings, "CHARGEBACK_JOURNAL_GROUP_BY", JournalGroupBy.MODALITY)
    if value not in JournalGroupBy.values:
        raise ValidationFailed(
            f"CHARGEBACK_JOURNAL_GROUP_BY is {value!r}: set it to one of {', '.join(JournalGroupBy.values)}",
            code="journal_group_by_invalid",
            extra={"setting": "CHARGEBACK_JOURNAL_GROUP_BY"},
        )
    return value


def _is_recovery(row: dict, center_id: int) -> bool:
    """Whether a line is the providing cost center's own result (its recovery account)."""
    if row["method"] in _RECOVERY_METHODS:
        return True
    if row["method"] == AllocationMethod.FIXED_FEE:
        # A fixed fee is two lines: the consumer's charge and the owner's receipt.
        owner = row["allocation_line__rule__service_owner_id"] or row["allocation_line__rule__cost_center_id"]
        return owner == center_id
    return False


def _groups(statement: Statement) -> dict[str, dict[tuple[str, str, str, str], Decimal]]:
    """The statement's chargeback summed per entry kind and (leg kind, cost center account,
    clearing account, modality): one grouped read of its lines."""
    center = statement.cost_center
    by_modality = _group_by() == JournalGroupBy.MODALITY
    rows = (
        statement.lines.filter(CHARGEBACK_LINES)
        .values(
            "kind",
            "modality",
            "method",
            "provider",
            "allocation_line__rule__service_owner_id",
            "allocation_line__rule__cost_center_id",
        )
        .annotate(amount=Sum("amount"))
        .order_by()
    )
    groups: dict[str, dict[tuple[str, str, str, str], Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in rows:
        recovery = _is_recovery(row, center.pk)
        leg = "recovery" if recovery else "expense"
        account = center.gl_recovery_account if recovery else center.gl_expense_account
        clearing = (
            settings.CHARGEBACK_GL_PROVIDER_CLEARING if row["provider"] else settings.CHARGEBACK_GL_INTERNAL_CLEARING
        )
        modality = row["modality"] if by_modality else ""
        groups[_ENTRY_KIND[row["kind"]]][(leg, account, clearing, modality)] += decimal_from_db(row["amount"], 2)
    return groups


def _line_pairs(
    entry: JournalEntry, groups: dict[tuple[str, str, str, str], Decimal], center_id: int
) -> list[JournalLine]:
    """A debit and a credit per group, in a fixed order: the cost center's account takes the
    amount's side (a charge is a debit), the clearing account the other."""
    lines: list[JournalLine] = []
    for (leg, account, clearing, modality), amount in sorted(groups.items()):
        cents = money_cents(amount)
        if not cents:
            continue
        what = "shared service recovery" if leg == "recovery" else "AI spend"
        # Read in the ERP's GL: the modality as the statement page names it.
        scope = f", {modality_label(modality, MODALITY_NONE_LABEL)}" if _group_by() == JournalGroupBy.MODALITY else ""
        description = f"{entry.cost_center.code} {what} {entry.period}{scope}"
        for gl_account, cost_center_id, debit in ((account, center_id, cents > 0), (clearing, None, cents < 0)):
            lines.append(
                JournalLine(
                    entry=entry,
                    line_no=len(lines) + 1,
                    gl_account=gl_account,
                    cost_center_id=cost_center_id,
                    debit_cents=abs(cents) if debit else 0,
                    credit_cents=0 if debit else abs(cents),
                    modality=modality,
                    description=description if cost_center_id else f"{description} (clearing)",
                )
            )
    return lines


def _entry_save_with_lines(entry: JournalEntry, lines: list[JournalLine]) -> None:
    """Write an entry with its lines, and with them the lines' JSON the API serves (kept on
    the entry: neither ever changes)."""
    centers = {line.cost_center_id for line in lines} - {None}
    codes = dict(CostCenter.objects.filter(pk__in=centers).values_list("pk", "code"))
    entry.lines_json, entry.total_cents = journal_lines_document(
        (
            line.line_no,
            line.gl_account,
            codes.get(line.cost_center_id),
            line.debit_cents,
            line.credit_cents,
            line.modality,
            line.description,
        )
        for line in lines
    )
    entry.save()
    JournalLine.objects.bulk_create(lines)


def _next_number(statement: Statement, kind: str) -> int:
    # Numbered on across a statement's revisions: a reopened statement's new revision must
    # not give the ERP an external id it already holds.
    entries = JournalEntry.objects.filter(period=statement.period, cost_center_id=statement.cost_center_id)
    return entries.filter(kind=kind).count() + 1


def _entry_new(statement: Statement, *, kind: str, memo: str, reverses: JournalEntry | None = None) -> JournalEntry:
    return JournalEntry(
        statement=statement,
        cost_center=statement.cost_center,
        kind=kind,
        reverses=reverses,
        company=reverses.company if reverses else settings.CHARGEBACK_COMPANY,
        period=reverses.period if reverses else statement.period,
        posting_date=reverses.posting_date if reverses else Period.parse(statement.period).last_day,
        currency=statement.currency,
        memo=memo[:300],
        external_id=journal_entry_external_id(
            period=statement.period,
            cost_center_code=statement.cost_center.code,
            kind=kind,
            number=_next_number(statement, kind),
        ),
    )


@transaction.atomic
def journal_entries_for_statement(*, statement: Statement, actor=None) -> list[JournalEntry]:
    """The journal entries of a signed-off statement's chargeback, written once (called by
    `statement_approve`, in its transaction); asked again, the entries it has. Showback
    and unallocated money produce none; a statement charged nothing has none, and is posted
    as of its approval, having nothing for the ERP to post."""
    journal_write_lock()
    statement = Statement.objects.select_related("cost_center").get(pk=statement.pk)
    if statement.status not in SIGNED_STATUSES:
        raise Conflict(
            f"{statement.cost_center.code}'s statement for {statement.period} is not signed off: "
            "journal entries follow its approval",
            code="statement_not_signed_off",
            extra={"statement": statement.pk, "status": statement.status},
        )
    live = statement.journal_entries.exclude(kind=JournalEntryKind.REVERSAL).filter(reversed_by__isnull=True)
    if live.exists():
        return list(live.order_by("id"))
    groups = _groups(statement)
    entries = []
    for kind in _ENTRY_KIND.values():
        if not any(money_cents(amount) for amount in groups.get(kind, {}).values()):
            continue
        memo = f"{_MEMO[kind]} {statement.period}: {statement.cost_center.code} {statement.cost_center.name}"
        entry = _entry_new(statement, kind=kind, memo=memo)
        lines = _line_pairs(entry, groups[kind], statement.cost_center_id)
        _entry_save_with_lines(entry, lines)
        audit_record(
            subject="journal_entry",
            subject_id=entry.pk,
            action="create",
            actor=actor,
            before={},
            after=_snapshot(entry),
            reason=f"statement #{statement.pk} signed off",
        )
        entries.append(entry)
    if not entries:
        # Nothing to book: no entry will ever be acknowledged, so it is posted now.
        _statement_post_when_acknowledged(statement.pk, actor)
    return entries


def _locked(entry: JournalEntry) -> JournalEntry:
    return JournalEntry.objects.select_for_update().select_related("cost_center").get(pk=entry.pk)


@transaction.atomic
def journal_entry_reverse(*, entry: JournalEntry, actor, reason: str) -> JournalEntry:
    """Undo an entry with a reversing one (the same lines, debits and credits swapped), in
    the same period and on the same posting date; the original stays as it was."""
    access_require(actor, Permission.SIGN_OFF, doing="reverse a journal entry")
    if not reason.strip():
        raise ValidationFailed("reversing a journal entry needs a reason", code="reason_required")
    journal_write_lock()
    entry = _locked(entry)
    if entry.kind == JournalEntryKind.REVERSAL:
        raise Conflict(
            f"{entry.external_id} is a reversal: it is not reversed in turn",
            code="journal_entry_is_reversal",
            extra={"entry": entry.external_id},
        )
    if JournalEntry.objects.filter(reverses=entry).exists():
        raise Conflict(
            f"{entry.external_id} is reversed already",
            code="journal_entry_reversed",
            extra={"entry": entry.external_id},
        )
    statement = Statement.objects.select_related("cost_center").get(pk=entry.statement_id)
    reversal = _entry_new(
        statement,
        kind=JournalEntryKind.REVERSAL,
        memo=f"Reversal of {entry.external_id}: {reason.strip()}",
        reverses=entry,
    )
    _entry_save_with_lines(
        reversal,
        [
            JournalLine(
                entry=reversal,
                line_no=line.line_no,
                gl_account=line.gl_account,
                cost_center_id=line.cost_center_id,
                debit_cents=line.credit_cents,
                credit_cents=line.debit_cents,
                modality=line.modality,
                description=f"Reversal: {line.description}"[:300],
            )
            for line in entry.lines.order_by("line_no")
        ],
    )
    for subject, action, after in (
        (reversal, "create", _snapshot(reversal)),
        (entry, "reverse", {**_snapshot(entry), "reversed_by": reversal.external_id}),
    ):
        audit_record(
            subject="journal_entry",
            subject_id=subject.pk,
            action=action,
            actor=actor,
            before={} if action == "create" else _snapshot(entry),
            after=after,
            reason=reason.strip(),
        )
    return reversal


@transaction.atomic
def journal_entries_reverse_statement(*, statement: Statement, actor, reason: str) -> list[JournalEntry]:
    """Reverse every entry of a statement not reversed yet: what reopening an approved
    statement takes (its next approval writes new entries, numbered on)."""
    journal_write_lock()
    live = statement.journal_entries.exclude(kind=JournalEntryKind.REVERSAL).filter(reversed_by__isnull=True)
    return [journal_entry_reverse(entry=entry, actor=actor, reason=reason) for entry in live.order_by("id")]


@transaction.atomic
def journal_entries_export(*, entries: QuerySet | Iterable[JournalEntry], actor) -> list[JournalEntry]:
    """Hand entries over to the ERP: those ready become exported (an entry already handed
    over stays as it is, so a retried export changes nothing). Returns them all, locked,
    in id order."""
    access_require(actor, Permission.EXPORT_JOURNAL_ENTRIES, doing="export journal entries")
    journal_write_lock()
    if isinstance(entries, QuerySet):
        chosen = JournalEntry.objects.filter(pk__in=entries.values("pk"))
    else:
        chosen = JournalEntry.objects.filter(pk__in=[entry.pk for entry in entries])
    locked = list(chosen.select_for_update().order_by("id"))
    now = timezone.now()
    for entry in locked:
        if entry.status != JournalEntryStatus.READY:
            continue
        before = _snapshot(entry)
        entry.status, entry.exported_at = JournalEntryStatus.EXPORTED, now
        entry.save(update_fields=["status", "exported_at", "updated_at"])
        audit_record(
            subject="journal_entry",
            subject_id=entry.pk,
            action="export",
            actor=actor,
            before=before,
            after=_snapshot(entry),
        )
    return locked


@transaction.atomic
def journal_entry_acknowledge(*, entry: JournalEntry, document_number: str, actor) -> JournalEntry:
    """The ERP posted an entry under its document number. Idempotent: the same number again
    answers as the first time did and changes nothing; another number for an entry
    already acknowledged is a `Conflict` (the entry is not posted twice). When the last
    entry of a statement is acknowledged, the statement is posted."""
    access_require(actor, Permission.ACKNOWLEDGE_JOURNAL_ENTRIES, doing="acknowledge a journal entry")
    number = (document_number or "").strip()
    if not number or len(number) > DOCUMENT_NUMBER_MAX:
        raise ValidationFailed(
            f"document_number: the ERP's document number, 1 to {DOCUMENT_NUMBER_MAX} characters",
            code="document_number_invalid",
            extra={"field": "document_number"},
        )
    journal_write_lock()
    entry = _locked(entry)
    if entry.status == JournalEntryStatus.ACKNOWLEDGED:
        if entry.erp_document_number == number:
            return entry
        raise Conflict(
            f"{entry.external_id} was acknowledged as document {entry.erp_document_number}, not {number}: "
            "it is posted once",
            code="journal_entry_acknowledged",
            extra={"entry": entry.external_id, "erp_document_number": entry.erp_document_number},
        )
    before = _snapshot(entry)
    entry.status, entry.erp_document_number, entry.acknowledged_at = (
        JournalEntryStatus.ACKNOWLEDGED,
        number,
        timezone.now(),
    )
    entry.save(update_fields=["status", "erp_document_number", "acknowledged_at", "updated_at"])
    audit_record(
        subject="journal_entry",
        subject_id=entry.pk,
        action="acknowledge",
        actor=actor,
        before=before,
        after=_snapshot(entry),
    )
    _statement_post_when_acknowledged(entry.statement_id, actor)
    return entry


def _statement_post_when_acknowledged(statement_id: int, actor) -> None:
    """Post an approved statement once every entry of its is acknowledged; one with no
    entry at all (no chargeback: showback only) has nothing to post and is posted as of its
    approval. The statement's row is locked before its entries are read, so of two
    acknowledgements committing at once the later sees the earlier's."""
    statement = Statement.objects.select_for_update().get(pk=statement_id)
    if statement.status != StatementStatus.APPROVED:
        return
    entries = statement.journal_entries.all()
    if entries.exclude(status=JournalEntryStatus.ACKNOWLEDGED).exists():
        return
    count = entries.count()
    before = {"status": statement.status, "posted_at": None}
    if count:
        posted_at, reason = timezone.now(), f"the ERP acknowledged its {count} journal entries"
    else:
        posted_at, reason = statement.approved_at, NOTHING_TO_POST
    statement.status, statement.posted_at = StatementStatus.POSTED, posted_at
    statement.save(update_fields=["status", "posted_at"])
    audit_record(
        subject="statement",
        subject_id=statement.pk,
        action="post",
        actor=actor,
        before=before,
        after={"status": statement.status, "posted_at": statement.posted_at.isoformat()},
        reason=reason,
    )
