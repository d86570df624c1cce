"""Journal entries: written when a statement is signed off, balanced to the cent, tied to
the statement's chargeback, pulled and acknowledged by the ERP (idempotently, also when
two acknowledgements race on PostgreSQL), reversed rather than edited."""

import json
import threading
import time
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from allocation.access import ServiceAccount
from allocation.choices import AllocationMethod, ChargeCategory, ChargeModel, Treatment
from allocation.models import AllocationLine, AllocationRun, CostCenter, MappingRule, MappingVersion, RatingRun
from allocation.services.access import api_token_issue
from chargeback.choices import JournalEntryStatus, StatementLineKind, StatementStatus
from chargeback.models import AuditEvent, JournalEntry, JournalLine, Statement, StatementLine
from chargeback.services import journals as journals_service
from chargeback.services.journals import (
    journal_entries_export,
    journal_entries_for_statement,
    journal_entries_reverse_statement,
    journal_entry_acknowledge,
    journal_entry_reverse,
    money_cents,
)
from chargeback.services.statements import (
    statement_approve,
    statements_approve_period,
    statements_build,
    statements_submit_period,
)
from pricing.errors import Conflict, NotAllowed, ValidationFailed
from tests.chargeback.close_world import MONTH, close_world
from tests.threads import in_thread

PERIOD = "2026-11"
# Cost centers with accounts of their own, so that every line says whose it is.
CENTERS = {
    "CC-A": ("6100", "6190"),
    "CC-B": ("6200", "6290"),
    "CC-C": ("6300", "6390"),
    "CC-D": ("6400", "6490"),
}


def _person(django_user_model, username: str, role: str):
    person = django_user_model.objects.create_user(username=username, password="x")
    person.groups.add(Group.objects.get_or_create(name=role)[0])
    return person


def _journal_world(django_user_model) -> dict:
    """Four cost centers, a completed allocation run of November to build statements on
    (its lines are written by each test), finance, and the ERP's service account."""
    centers = {
        code: CostCenter.objects.create(
            code=code,
            name=f"Center {code[-1]}",
            owner="lead",
            gl_expense_account=expense,
            gl_recovery_account=recovery,
            active_from="2026-01-01",
        )
        for code, (expense, recovery) in CENTERS.items()
    }
    approver = _person(django_user_model, "fiona", "finance_approver")
    version = MappingVersion.objects.create(
        number=1,
        name="journals",
        status="signed",
        effective_from="2026-11-01",
        signed_at=timezone.now(),
        signed_by=approver,
        content_hash="0" * 64,
    )
    rating = RatingRun.objects.create(period=PERIOD, status="completed")
    run = AllocationRun.objects.create(
        period=PERIOD,
        mapping_version=version,
        rating_run=rating,
        fingerprint="0" * 64,
        tolerance=Decimal("0.02"),
        invoice_total=0,
        allocated=0,
        unallocated=0,
    )
    erp = ServiceAccount(api_token_issue(name="erp", scope="erp").token)
    return {
        "centers": centers,
        "run": run,
        "version": version,
        "approver": approver,
        "analyst": _person(django_user_model, "alex", "finance_analyst"),
        "member": _person(django_user_model, "sam", "team_member"),
        "erp": erp,
    }


@pytest.fixture
def jworld(db, django_user_model) -> dict:
    return _journal_world(django_user_model)


def _is_chargeback(line: dict) -> bool:
    """The test's own reading of what a statement charges (README "Statements")."""
    return line["kind"] != StatementLineKind.UNALLOCATED and not line["reason"] and line["treatment"] != "showback"


def _statement(world: dict, code: str, lines: list[dict], period: str = PERIOD) -> Statement:
    """A statement in review with these lines, its figures summed as a build sums them."""
    amounts = [Decimal(line["amount"]) for line in lines]
    charged = sum((Decimal(x["amount"]) for x in lines if _is_chargeback(x)), Decimal(0))
    owned = sum((Decimal(x["amount"]) for x in lines if x["kind"] == "unallocated" or x["reason"]), Decimal(0))
    statement = Statement.objects.create(
        period=period,
        cost_center=world["centers"][code],
        run=world["run"],
        status=StatementStatus.IN_REVIEW,
        total=sum(amounts, Decimal(0)),
        chargeback=charged,
        unallocated=owned,
        showback=sum(amounts, Decimal(0)) - charged - owned,
        line_count=len(lines),
        built_at=timezone.now(),
    )
    StatementLine.objects.bulk_create(
        StatementLine(statement=statement, source_period=period, **line) for line in lines
    )
    return statement


def _line(amount: str, *, kind="charge", method="direct", provider="acme-ai", modality="text", **more) -> dict:
    return {
        "kind": kind,
        "method": method,
        "provider": provider,
        "modality": modality,
        "treatment": more.pop("treatment", Treatment.CHARGEBACK),
        "reason": more.pop("reason", ""),
        "amount": Decimal(amount),
        **more,
    }


def _net_on_cost_center(entries) -> int:
    """What entries charge the cost center: debits less credits on its own accounts."""
    legs = JournalLine.objects.filter(entry__in=entries, cost_center__isnull=False).aggregate(
        debit=Sum("debit_cents"), credit=Sum("credit_cents")
    )
    return (legs["debit"] or 0) - (legs["credit"] or 0)


def _balanced(entry: JournalEntry) -> bool:
    sums = entry.lines.aggregate(debit=Sum("debit_cents"), credit=Sum("credit_cents"))
    return sums["debit"] == sums["credit"] > 0


# --- written at sign-off ---------------------------------------------------------------


@pytest.fixture
def world(db, tmp_path, django_user_model, settings):
    settings.CHARGEBACK_UNALLOCATED_OWNER = "CC-100"
    return close_world(tmp_path, django_user_model)


def test_approving_the_month_writes_balanced_entries_tied_to_each_statement(world):
    """The hand-computed company: direct calls, pools, a passthrough with a margin and a
    rate card. Each cost center's entry charges exactly its statement's chargeback; the
    service owner's margin and spread land on its recovery account; showback and the
    unallocated buckets produce nothing."""
    statements_build(period=MONTH, actor=world["analyst"])
    statements_submit_period(period=MONTH, actor=world["analyst"])
    assert not JournalEntry.objects.exists()  # nothing before sign-off
    statements_approve_period(period=MONTH, actor=world["approver"])
    for statement in Statement.objects.all():
        entries = list(statement.journal_entries.all())
        assert [e.external_id for e in entries] == [f"CB-{MONTH}-{statement.cost_center.code}-chargeback-1"]
        entry = entries[0]
        assert _balanced(entry)
        assert _net_on_cost_center(entries) == money_cents(statement.chargeback)
        assert (entry.company, entry.period, entry.currency, entry.status) == ("1000", str(MONTH), "USD", "ready")
        assert entry.posting_date.isoformat() == "2026-10-31"
    research = Statement.objects.get(cost_center__code="CC-130")
    assert research.showback > 0 and _net_on_cost_center(research.journal_entries.all()) == 4117
    assert money_cents(research.chargeback + research.showback) != 4117  # its showback is not journalled
    platform = Statement.objects.get(cost_center__code="CC-100")
    owner_legs = JournalLine.objects.filter(entry__statement=platform, cost_center__isnull=False)
    assert set(owner_legs.values_list("gl_account", flat=True)) == {"6190"}  # margin and spread: recovery
    assert platform.unallocated > 0  # its unallocated buckets are on its statement, not in its entry
    # The clearing account takes the other side of everything: the invoice's charged-back share.
    clearing = JournalLine.objects.filter(gl_account="2150").aggregate(c=Sum("credit_cents"), d=Sum("debit_cents"))
    total = sum(Statement.objects.values_list("chargeback", flat=True), Decimal(0))
    assert clearing["c"] - clearing["d"] == money_cents(total)
    creates = AuditEvent.objects.filter(subject="journal_entry", action="create")
    assert creates.count() == JournalEntry.objects.count() and {e.actor_name for e in creates} == {"fiona"}


def test_a_statement_with_only_showback_has_no_entries_and_is_posted_at_sign_off(jworld, client):
    """Nothing for the ERP to post, so nothing will ever be acknowledged: it is posted as
    of its approval (on PostgreSQL the signed-statement trigger lets approved → posted
    through in the same transaction)."""
    statement = _statement(
        jworld,
        "CC-A",
        [
            _line("12.34", treatment=Treatment.SHOWBACK),
            _line("3.00", kind="unallocated", method="unallocated", treatment="", reason="untagged"),
        ],
    )
    approved = statement_approve(statement=statement, actor=jworld["approver"])
    assert not JournalEntry.objects.exists()
    assert approved.status == StatementStatus.POSTED and approved.chargeback == 0
    stored = Statement.objects.get(pk=statement.pk)
    assert stored.status == StatementStatus.POSTED and stored.posted_at == stored.approved_at is not None
    post = AuditEvent.objects.get(subject="statement", subject_id=str(statement.pk), action="post")
    assert (post.before["status"], post.after["status"], post.actor_name) == ("approved", "posted", "fiona")
    assert post.reason == "nothing to post to the ERP: no chargeback (showback only)"
    # Its page says why it is posted with no entry.
    client.force_login(jworld["approver"])
    body = client.get(reverse("statement", args=[statement.pk])).content.decode()
    assert "Posted: nothing to post</strong> (showback only)" in body
    assert "so it has no journal entries for the ERP" in body
    # And its API answer: posted, with no journal entry, as of its approval.
    token = api_token_issue(name="fiona", scope="user", username="fiona").secret
    api = APIClient(headers={"Authorization": f"Bearer {token}"})
    answer = api.get(f"/api/v1/statements/{statement.pk}").json()
    assert (answer["status"], answer["journal_entry_count"]) == ("posted", 0)
    assert answer["posted_at"] == answer["approved_at"] is not None
    charged = _approved(jworld, "CC-B")
    answer = api.get(f"/api/v1/statements/{charged.pk}").json()
    assert (answer["status"], answer["journal_entry_count"], answer["posted_at"]) == ("approved", 2, None)


def test_a_statement_with_entries_is_not_posted_at_sign_off(jworld):
    statement = _approved(jworld)
    assert statement.status == StatementStatus.APPROVED and statement.posted_at is None
    assert not AuditEvent.objects.filter(subject="statement", action="post").exists()


def test_corrections_and_adjustments_are_entries_of_their_own(jworld):
    statement = _statement(
        jworld,
        "CC-A",
        [
            _line("100.00"),
            _line("-7.50", kind="correction"),
            _line("2.25", kind="correction", modality="image"),
            _line("-12.00", kind="adjustment", method=""),
            _line("4.00", kind="adjustment", method="", reason="dispute"),  # left unallocated: no entry
        ],
    )
    statement_approve(statement=statement, actor=jworld["approver"])
    entries = {e.kind: e for e in statement.journal_entries.all()}
    assert set(entries) == {"chargeback", "correction", "adjustment"}
    assert _net_on_cost_center([entries["chargeback"]]) == 10000
    assert _net_on_cost_center([entries["correction"]]) == -525
    assert _net_on_cost_center([entries["adjustment"]]) == -1200
    assert all(_balanced(entry) for entry in entries.values())
    assert entries["correction"].external_id == "CB-2026-11-CC-A-correction-1"
    # A credit reverses the sides: the cost center's expense is credited, the clearing debited.
    credit = entries["adjustment"].lines.get(cost_center__isnull=False)
    assert (credit.gl_account, credit.debit_cents, credit.credit_cents) == ("6100", 0, 1200)
    assert entries["adjustment"].lines.get(cost_center__isnull=True).debit_cents == 1200


def test_a_fixed_fee_credits_the_providing_cost_center_through_internal_clearing(jworld):
    """A fixed fee carries no invoice: the consumer's expense is debited and the service
    owner's recovery credited, each on its own entry against the internal clearing
    account, which nets to zero once both are signed off."""
    rule = MappingRule.objects.create(
        version=jworld["version"],
        position=1,
        cost_center=jworld["centers"]["CC-B"],
        charge_model=ChargeModel.FIXED_FEE,
        fixed_fee=Decimal("500.00"),
        service_owner=jworld["centers"]["CC-A"],
    )
    fee = {}
    for code, amount in (("CC-B", "500.00"), ("CC-A", "-500.00")):
        fee[code] = AllocationLine.objects.create(
            run=jworld["run"],
            provider="",
            cost_center=jworld["centers"][code],
            category=ChargeCategory.USAGE,
            method=AllocationMethod.FIXED_FEE,
            treatment=Treatment.CHARGEBACK,
            rule=rule,
            amount=Decimal(amount),
        )
    for code in ("CC-B", "CC-A"):
        line = _line(str(fee[code].amount), method="fixed_fee", provider="", modality="", allocation_line=fee[code])
        statement_approve(statement=_statement(jworld, code, [line]), actor=jworld["approver"])
    legs = {
        (row["gl_account"], row["cost_center__code"]): (row["debit"], row["credit"])
        for row in JournalLine.objects.values("gl_account", "cost_center__code")
        .annotate(debit=Sum("debit_cents"), credit=Sum("credit_cents"))
        .order_by()
    }
    assert legs == {
        ("6200", "CC-B"): (50000, 0),  # the consumer's expense
        ("6190", "CC-A"): (0, 50000),  # the provider's recovery
        ("2160", None): (50000, 50000),  # one credit and one debit: nets to zero
    }


@pytest.mark.parametrize(
    ("group_by", "pairs"), [("modality", {"text": 3000, "image": 1500, "audio": 250}), ("account", {"": 4750})]
)
def test_lines_are_grouped_by_modality_or_by_account(jworld, settings, group_by, pairs):
    settings.CHARGEBACK_JOURNAL_GROUP_BY = group_by
    statement = _statement(
        jworld,
        "CC-C",
        [
            _line("10.00"),
            _line("20.00", model="m2"),
            _line("15.00", modality="image"),
            _line("2.50", modality="audio"),
        ],
    )
    statement_approve(statement=statement, actor=jworld["approver"])
    entry = statement.journal_entries.get()
    expense = entry.lines.filter(gl_account="6300")
    assert dict(expense.values_list("modality", "debit_cents")) == pairs
    assert entry.lines.count() == 2 * len(pairs) and _balanced(entry)
    assert list(entry.lines.values_list("line_no", flat=True)) == list(range(1, 2 * len(pairs) + 1))


def test_line_descriptions_name_modalities_as_the_statement_page_does(jworld):
    """An ERP user reads these in the GL: "Embeddings", not "embedding"; money with no
    modality (a shared pool) as "Shared pools and fees"."""
    statement = _statement(
        jworld, "CC-D", [_line("10.00", modality="embedding"), _line("4.00", modality="", method="pool_proportional")]
    )
    statement_approve(statement=statement, actor=jworld["approver"])
    descriptions = set(statement.journal_entries.get().lines.values_list("description", flat=True))
    assert descriptions == {
        "CC-D AI spend 2026-11, Embeddings",
        "CC-D AI spend 2026-11, Embeddings (clearing)",
        "CC-D AI spend 2026-11, Shared pools and fees",
        "CC-D AI spend 2026-11, Shared pools and fees (clearing)",
    }


def test_an_unknown_grouping_is_refused_by_name(jworld, settings):
    settings.CHARGEBACK_JOURNAL_GROUP_BY = "team"
    statement = _statement(jworld, "CC-C", [_line("1.00")])
    with pytest.raises(ValidationFailed, match="CHARGEBACK_JOURNAL_GROUP_BY"):
        statement_approve(statement=statement, actor=jworld["approver"])
    statement.refresh_from_db()
    assert statement.status == StatementStatus.IN_REVIEW  # the sign-off rolled back with it


# --- the balance invariant, over generated statements ----------------------------------

_KINDS = ["charge", "charge", "charge", "correction", "adjustment", "unallocated"]
_METHODS = ["direct", "passthrough", "margin", "card_spread", "rate_card", "fixed_fee", "pool_proportional"]
_lines = st.lists(
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(_KINDS),
            "method": st.sampled_from(_METHODS),
            "provider": st.sampled_from(["acme-ai", "other-ai", ""]),
            "modality": st.sampled_from(["text", "image", "audio", ""]),
            "treatment": st.sampled_from(["chargeback", "chargeback", "showback", ""]),
            "cents": st.integers(min_value=-(10**9), max_value=10**9),
        }
    ),
    max_size=12,
)


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(statements=st.lists(_lines, min_size=1, max_size=4), group_by=st.sampled_from(["modality", "account"]))
def test_every_entry_balances_and_the_period_ties_to_its_statements(jworld, settings, statements, group_by):
    """Debits equal credits per entry and per period; each statement's entries charge
    exactly its chargeback (corrections and adjustments included), and the period's
    entries exactly its approved statements' chargeback."""
    settings.CHARGEBACK_JOURNAL_GROUP_BY = group_by
    with transaction.atomic():  # each example's statements are rolled back after it
        try:
            written = []
            for code, generated in zip(CENTERS, statements, strict=False):
                lines = [
                    _line(
                        str(Decimal(row["cents"]).scaleb(-2)),
                        kind=row["kind"],
                        method="unallocated" if row["kind"] == "unallocated" else row["method"],
                        provider=row["provider"],
                        modality=row["modality"],
                        treatment="" if row["kind"] == "unallocated" else row["treatment"],
                        reason="untagged" if row["kind"] == "unallocated" else "",
                    )
                    for row in generated
                ]
                statement = statement_approve(statement=_statement(jworld, code, lines), actor=jworld["approver"])
                written.append(statement)
                entries = list(statement.journal_entries.all())
                assert all(_balanced(entry) for entry in entries)
                assert _net_on_cost_center(entries) == money_cents(statement.chargeback)
                for kind, line_kind in (("chargeback", "charge"), ("correction", "correction")):
                    own = [e for e in entries if e.kind == kind]
                    expected = sum(
                        money_cents(x["amount"]) for x in lines if x["kind"] == line_kind and _is_chargeback(x)
                    )
                    assert _net_on_cost_center(own) == expected
                assert len({e.kind for e in entries}) == len(entries)  # one entry per kind
            period = JournalLine.objects.filter(entry__period=PERIOD).aggregate(
                d=Sum("debit_cents"), c=Sum("credit_cents")
            )
            assert (period["d"] or 0) == (period["c"] or 0)
            approved = sum((s.chargeback for s in written), Decimal(0))
            assert _net_on_cost_center(JournalEntry.objects.filter(period=PERIOD)) == money_cents(approved)
        finally:
            transaction.set_rollback(True)


# --- the ERP: export, acknowledge, post ------------------------------------------------


def _approved(jworld, code="CC-A") -> Statement:
    statement = _statement(jworld, code, [_line("40.00"), _line("-1.00", kind="correction")])
    return statement_approve(statement=statement, actor=jworld["approver"])


def test_acknowledging_is_idempotent_and_a_second_number_is_a_conflict(jworld):
    statement = _approved(jworld)
    entry = statement.journal_entries.get(kind="chargeback")
    first = journal_entry_acknowledge(entry=entry, document_number="JE-1001", actor=jworld["erp"])
    assert (first.status, first.erp_document_number) == (JournalEntryStatus.ACKNOWLEDGED, "JE-1001")
    again = journal_entry_acknowledge(entry=entry, document_number=" JE-1001 ", actor=jworld["erp"])
    assert (again.pk, again.erp_document_number, again.acknowledged_at) == (
        first.pk,
        first.erp_document_number,
        first.acknowledged_at,
    )
    with pytest.raises(Conflict) as refused:
        journal_entry_acknowledge(entry=entry, document_number="JE-2002", actor=jworld["erp"])
    assert refused.value.code == "journal_entry_acknowledged"
    assert refused.value.extra == {"entry": "CB-2026-11-CC-A-chargeback-1", "erp_document_number": "JE-1001"}
    entry.refresh_from_db()
    assert entry.erp_document_number == "JE-1001"
    assert (
        AuditEvent.objects.filter(subject="journal_entry", subject_id=str(entry.pk), action="acknowledge").count() == 1
    )
    for bad in ("", "   ", "x" * 65):
        with pytest.raises(ValidationFailed):
            journal_entry_acknowledge(entry=entry, document_number=bad, actor=jworld["erp"])
    # Only the ERP acknowledges; finance does not.
    with pytest.raises(NotAllowed):
        journal_entry_acknowledge(entry=entry, document_number="JE-1001", actor=jworld["approver"])


def test_the_statement_is_posted_when_all_its_entries_are_acknowledged(jworld):
    statement = _approved(jworld)
    chargeback, correction = (statement.journal_entries.get(kind=kind) for kind in ("chargeback", "correction"))
    exported = journal_entries_export(entries=statement.journal_entries.all(), actor=jworld["analyst"])
    assert [e.status for e in exported] == ["exported", "exported"] and all(e.exported_at for e in exported)
    # Exporting again changes nothing (a retried pull).
    again = journal_entries_export(entries=[chargeback, correction], actor=jworld["erp"])
    assert [e.exported_at for e in again] == [e.exported_at for e in exported]
    assert AuditEvent.objects.filter(subject="journal_entry", action="export").count() == 2
    with pytest.raises(NotAllowed):
        journal_entries_export(entries=[chargeback], actor=jworld["member"])

    journal_entry_acknowledge(entry=chargeback, document_number="JE-1", actor=jworld["erp"])
    statement.refresh_from_db()
    assert statement.status == StatementStatus.APPROVED and statement.posted_at is None
    journal_entry_acknowledge(entry=correction, document_number="JE-2", actor=jworld["erp"])
    statement.refresh_from_db()
    assert statement.status == StatementStatus.POSTED and statement.posted_at is not None
    post = AuditEvent.objects.get(subject="statement", subject_id=str(statement.pk), action="post")
    assert (post.before["status"], post.after["status"], post.actor_name) == ("approved", "posted", "erp:erp")


def test_a_reversal_swaps_the_lines_and_never_edits_the_entry(jworld):
    statement = _approved(jworld)
    original = statement.journal_entries.get(kind="chargeback")
    journal_entry_acknowledge(entry=original, document_number="JE-7", actor=jworld["erp"])
    with pytest.raises(ValidationFailed):
        journal_entry_reverse(entry=original, actor=jworld["approver"], reason=" ")
    with pytest.raises(NotAllowed):
        journal_entry_reverse(entry=original, actor=jworld["erp"], reason="posted twice")
    before = list(original.lines.values_list("gl_account", "debit_cents", "credit_cents"))
    reversal = journal_entry_reverse(entry=original, actor=jworld["approver"], reason="statement reopened")
    assert (reversal.kind, reversal.reverses, reversal.status) == ("reversal", original, "ready")
    assert reversal.external_id == "CB-2026-11-CC-A-reversal-1"
    assert (reversal.period, reversal.posting_date) == (original.period, original.posting_date)
    assert list(reversal.lines.values_list("gl_account", "credit_cents", "debit_cents")) == before
    assert _net_on_cost_center([original, reversal]) == 0 and _balanced(reversal)
    original.refresh_from_db()
    assert (original.status, original.erp_document_number) == ("acknowledged", "JE-7")
    assert list(original.lines.values_list("gl_account", "debit_cents", "credit_cents")) == before
    with pytest.raises(Conflict, match="reversed already"):
        journal_entry_reverse(entry=original, actor=jworld["approver"], reason="again")
    with pytest.raises(Conflict, match="is a reversal"):
        journal_entry_reverse(entry=reversal, actor=jworld["approver"], reason="undo the undo")
    assert set(
        AuditEvent.objects.filter(subject="journal_entry", reason="statement reopened").values_list("action", flat=True)
    ) == {"create", "reverse"}


def test_each_entry_keeps_its_lines_as_the_api_serves_them(jworld):
    """The lines' JSON kept on an entry (what the ERP's pages read) says what its lines
    say, for an entry written at sign-off and for its reversal."""
    original = _approved(jworld).journal_entries.get(kind="chargeback")
    reversal = journal_entry_reverse(entry=original, actor=jworld["approver"], reason="reopened")
    for entry in (original, reversal):
        entry.refresh_from_db()
        kept = json.loads(entry.lines_json)
        rows = list(entry.lines.order_by("line_no"))
        assert [
            (x["line_no"], x["gl_account"], x["cost_center"], x["debit_cents"], x["credit_cents"], x["description"])
            for x in kept
        ] == [
            (
                r.line_no,
                r.gl_account,
                r.cost_center.code if r.cost_center else None,
                r.debit_cents,
                r.credit_cents,
                r.description,
            )
            for r in rows
        ]
        assert all(Decimal(x["debit"]) * 100 == x["debit_cents"] for x in kept)
        assert entry.total_cents == sum(r.debit_cents for r in rows) == 4000


def test_external_ids_are_stable_and_a_reopened_statement_is_numbered_on(jworld):
    statement = _approved(jworld)
    ids = list(statement.journal_entries.order_by("id").values_list("external_id", flat=True))
    assert ids == ["CB-2026-11-CC-A-chargeback-1", "CB-2026-11-CC-A-correction-1"]
    # Asking again (a retried approval's hook, a rebuild) writes nothing new.
    assert [e.external_id for e in journal_entries_for_statement(statement=statement)] == ids
    assert JournalEntry.objects.count() == 2
    # Reopened after approval: every entry reversed; the next sign-off's entries are numbered on.
    reversals = journal_entries_reverse_statement(statement=statement, actor=jworld["approver"], reason="reopened")
    assert [r.external_id for r in reversals] == ["CB-2026-11-CC-A-reversal-1", "CB-2026-11-CC-A-reversal-2"]
    again = journal_entries_for_statement(statement=statement)
    assert [e.external_id for e in again] == ["CB-2026-11-CC-A-chargeback-2", "CB-2026-11-CC-A-correction-2"]
    assert _net_on_cost_center(statement.journal_entries.all()) == money_cents(statement.chargeback)
    # The ids come from what the statement is, not from database ids: the same statement in
    # another installation's database carries the same ones.
    assert all("CC-A" in x and PERIOD in x for x in ids)


def test_the_statement_page_lists_its_entries(jworld, client):
    statement = _approved(jworld)
    entry = statement.journal_entries.get(kind="chargeback")
    journal_entry_acknowledge(entry=entry, document_number="JE-4242", actor=jworld["erp"])
    client.force_login(jworld["approver"])
    body = client.get(reverse("statement", args=[statement.pk])).content.decode()
    assert "Journal entries" in body
    assert "CB-2026-11-CC-A-chargeback-1" in body and "CB-2026-11-CC-A-correction-1" in body
    assert "JE-4242" in body and "Acknowledged" in body and "Ready" in body
    assert "<code>2150</code>" in body and "<code>6100</code>" in body and "$40.00" in body


def test_journal_entries_follow_only_a_signed_statement(jworld):
    statement = _statement(jworld, "CC-B", [_line("5.00")])
    with pytest.raises(Conflict) as refused:
        journal_entries_for_statement(statement=statement)
    assert refused.value.code == "statement_not_signed_off"


# --- two acknowledgements racing on PostgreSQL -----------------------------------------

_on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections racing for a row lock: PostgreSQL's"
)


@_on_postgresql
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_different_acknowledgements_racing_only_one_number_wins(django_user_model, monkeypatch):
    """The first holds the entry's row lock (paused inside its transaction, after writing);
    the second, on its own connection, waits for it and then sees the entry acknowledged."""
    jworld = _journal_world(django_user_model)
    entry = _approved(jworld).journal_entries.get(kind="chargeback")
    holding, real_audit = threading.Event(), journals_service.audit_record

    def audit_then_hold(**kwargs):
        row = real_audit(**kwargs)
        if kwargs["action"] == "acknowledge" and not holding.is_set():
            holding.set()
            time.sleep(1.0)  # the other acknowledgement arrives while this one holds the lock
        return row

    monkeypatch.setattr(journals_service, "audit_record", audit_then_hold)
    outcome: dict = {}
    first = in_thread(
        outcome, "first", lambda: journal_entry_acknowledge(entry=entry, document_number="SAP-1", actor=jworld["erp"])
    )
    assert holding.wait(30)
    started = time.monotonic()
    second = in_thread(
        outcome, "second", lambda: journal_entry_acknowledge(entry=entry, document_number="SAP-2", actor=jworld["erp"])
    )
    first.join(30)
    second.join(30)
    assert outcome["first"].erp_document_number == "SAP-1", outcome
    assert isinstance(outcome["second"], Conflict) and outcome["second"].code == "journal_entry_acknowledged"
    assert time.monotonic() - started > 0.3  # it waited on the lock rather than reading past it
    entry.refresh_from_db()
    assert entry.erp_document_number == "SAP-1"
    assert AuditEvent.objects.filter(subject="journal_entry", action="acknowledge").count() == 1


@_on_postgresql
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_same_acknowledgement_racing_answers_the_same_twice(django_user_model):
    jworld = _journal_world(django_user_model)
    statement = _approved(jworld)
    entries = list(statement.journal_entries.order_by("id"))
    barrier, outcome = threading.Barrier(4), {}
    threads = []
    for n, entry in enumerate(entries * 2):

        def acknowledge(entry=entry):
            barrier.wait(10)
            return journal_entry_acknowledge(entry=entry, document_number=f"SAP-{entry.pk}", actor=jworld["erp"])

        threads.append(in_thread(outcome, f"call-{n}", acknowledge))
    for thread in threads:
        thread.join(30)
    assert all(isinstance(result, JournalEntry) for result in outcome.values()), outcome
    numbers = {result.pk: result.erp_document_number for result in outcome.values()}
    assert numbers == {entry.pk: f"SAP-{entry.pk}" for entry in entries}
    assert AuditEvent.objects.filter(subject="journal_entry", action="acknowledge").count() == 2
    # Both entries acknowledged at once from two connections: the statement is posted, once.
    statement.refresh_from_db()
    assert statement.status == StatementStatus.POSTED
    assert AuditEvent.objects.filter(subject="statement", action="post").count() == 1


@_on_postgresql
def test_postgresql_refuses_an_unbalanced_or_edited_entry(jworld):
    from django.db import IntegrityError

    entry = _approved(jworld).journal_entries.get(kind="chargeback")
    line = entry.lines.first()
    attempts = [
        lambda: JournalLine.objects.filter(pk=line.pk).update(debit_cents=line.debit_cents + 1),
        lambda: JournalLine.objects.filter(pk=line.pk).delete(),
        lambda: JournalEntry.objects.filter(pk=entry.pk).update(memo="edited"),
        lambda: JournalEntry.objects.filter(pk=entry.pk).update(lines_json="[]"),
        lambda: JournalEntry.objects.filter(pk=entry.pk).update(total_cents=1),
        lambda: JournalEntry.objects.filter(pk=entry.pk).delete(),
    ]
    for attempt in attempts:
        with pytest.raises(IntegrityError, match="never"), transaction.atomic():
            attempt()
    # Debits equal credits is checked when the transaction commits; made immediate here.
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        connection.cursor().execute("SET CONSTRAINTS ALL IMMEDIATE")
        JournalLine.objects.create(entry=entry, line_no=99, gl_account="6100", debit_cents=1, description="stray")
    acknowledged = journal_entry_acknowledge(entry=entry, document_number="JE-9", actor=jworld["erp"])
    with pytest.raises(IntegrityError, match="never edited"), transaction.atomic():
        JournalEntry.objects.filter(pk=acknowledged.pk).update(erp_document_number="JE-10")
