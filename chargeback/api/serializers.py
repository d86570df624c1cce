"""Serializers of the close's API: periods, statements and their lines, disputes, and
the bodies of their actions. Money is a decimal in a string, never a float."""

import json
from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from allocation.models import CostCenter
from allocation.models.runs import ALLOCATED_DECIMAL_PLACES, ALLOCATED_MAX_DIGITS
from chargeback.choices import (
    UNDECIDED_DISPUTES,
    JournalEntryKind,
    JournalEntryStatus,
    PeriodStatus,
    StatementLineKind,
)
from chargeback.models import Dispute, JournalEntry, Statement, StatementLine
from chargeback.models.statements import STATEMENT_LINE_CONTENT
from pricing.money import QUANTITY_DECIMAL_PLACES, QUANTITY_MAX_DIGITS

__all__ = [
    "DisputeAcceptSerializer",
    "DisputeFileSerializer",
    "DisputeSerializer",
    "JournalEntryAcknowledgeSerializer",
    "JournalEntrySerializer",
    "JournalLineSerializer",
    "journal_entry_documents",
    "PeriodSerializer",
    "ReasonSerializer",
    "StatementLineSerializer",
    "StatementLinesQuerySerializer",
    "StatementSerializer",
]

_MONEY = {"max_digits": ALLOCATED_MAX_DIGITS, "decimal_places": ALLOCATED_DECIMAL_PLACES, "read_only": True}
MAX_REASON = 5000
MAX_EVIDENCE_IDS = 100


class StatementCountsSerializer(serializers.Serializer):
    draft = serializers.IntegerField()
    in_review = serializers.IntegerField()
    approved = serializers.IntegerField()
    posted = serializers.IntegerField()


class PeriodSerializer(serializers.Serializer):
    """A month in its close; statement counts and totals are of the caller's cost centers."""

    period = serializers.CharField(help_text="YYYY-MM")
    status = serializers.ChoiceField(choices=PeriodStatus.choices)
    closed_at = serializers.DateTimeField(allow_null=True)
    closed_by = serializers.CharField(allow_null=True)
    statements = serializers.IntegerField(help_text="Statements of the month")
    statements_by_status = StatementCountsSerializer()
    total = serializers.DecimalField(**_MONEY)
    disputes_open = serializers.IntegerField(help_text="Disputes open or under review")


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=MAX_REASON, help_text="Why, in words; kept in the audit trail")


class NoBodySerializer(serializers.Serializer):
    """An action that takes no fields (close, submit, approve, review): an empty object."""


class StatementSerializer(serializers.ModelSerializer):
    cost_center = serializers.CharField(source="cost_center.code", read_only=True)
    cost_center_name = serializers.CharField(source="cost_center.name", read_only=True)
    run = serializers.IntegerField(source="run_id", read_only=True, help_text="The allocation run it was built from")
    approved_by = serializers.CharField(source="approved_by.username", default=None, read_only=True, allow_null=True)
    total = serializers.DecimalField(**_MONEY)
    chargeback = serializers.DecimalField(**_MONEY)
    showback = serializers.DecimalField(**_MONEY)
    unallocated = serializers.DecimalField(**_MONEY)
    corrections = serializers.DecimalField(**_MONEY)
    adjustments = serializers.DecimalField(**_MONEY)
    previous_total = serializers.DecimalField(**_MONEY, allow_null=True)
    replaces = serializers.IntegerField(
        source="replaces_id", read_only=True, allow_null=True, help_text="The reopened revision this one replaces"
    )
    replaced_by = serializers.SerializerMethodField(help_text="The revision that replaced it, once reopened")
    reopened_by = serializers.CharField(source="reopened_by.username", default=None, read_only=True, allow_null=True)
    journal_entry_count = serializers.IntegerField(
        read_only=True,
        help_text="Its journal entries, reversals included. 0 on a signed-off statement with no chargeback "
        "(showback only): nothing to post, so it is `posted` at its sign-off (`posted_at` = `approved_at`)",
    )
    lines_url = serializers.SerializerMethodField()

    class Meta:
        model = Statement
        fields = [
            "id",
            "period",
            "cost_center",
            "cost_center_name",
            "status",
            "currency",
            "total",
            "chargeback",
            "showback",
            "unallocated",
            "corrections",
            "adjustments",
            "previous_total",
            "line_count",
            "content_hash",
            "run",
            "built_at",
            "submitted_at",
            "approved_at",
            "approved_by",
            "posted_at",
            "revision",
            "replaces",
            "replaced_by",
            "reopened_at",
            "reopened_by",
            "reopen_reason",
            "journal_entry_count",
            "lines_url",
        ]
        read_only_fields = fields

    def get_replaced_by(self, statement: Statement) -> int | None:
        revision = getattr(statement, "replaced_by", None)
        return revision.pk if revision is not None else None

    def get_lines_url(self, statement: Statement) -> str:
        return f"/api/v1/statements/{statement.pk}/lines"


class StatementLineSerializer(serializers.ModelSerializer):
    amount = serializers.DecimalField(**_MONEY)
    quantity = serializers.DecimalField(
        max_digits=QUANTITY_MAX_DIGITS, decimal_places=QUANTITY_DECIMAL_PLACES, read_only=True, normalize_output=True
    )

    class Meta:
        model = StatementLine
        fields = ["id", *STATEMENT_LINE_CONTENT]
        read_only_fields = fields


class StatementLinesQuerySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=StatementLineKind.choices, required=False, help_text="Only lines of this kind"
    )


@extend_schema_field({"type": "string", "format": "decimal", "pattern": r"^[0-9]{1,15}(\.[0-9]{1,2})?$"})
class DecimalTextField(serializers.DecimalField):
    """Money in, as the API sends it out: a decimal in a string ("12.50"), never a JSON
    number, which many clients hold as a binary float."""

    def to_internal_value(self, data) -> Decimal:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class DisputeSerializer(serializers.ModelSerializer):
    statement = serializers.IntegerField(source="statement_id", read_only=True)
    line = serializers.IntegerField(source="line_id", read_only=True)
    period = serializers.CharField(source="statement.period", read_only=True)
    cost_center = serializers.CharField(source="cost_center.code", read_only=True)
    counterpart = serializers.CharField(source="counterpart.code", default=None, read_only=True, allow_null=True)
    amount = serializers.DecimalField(**_MONEY)
    evidence_ids = serializers.SerializerMethodField()
    has_evidence_file = serializers.SerializerMethodField()
    filed_by = serializers.CharField(source="filed_by.username", read_only=True)
    decided_by = serializers.CharField(source="decided_by.username", default=None, read_only=True, allow_null=True)
    overdue = serializers.SerializerMethodField()

    class Meta:
        model = Dispute
        fields = [
            "id",
            "statement",
            "line",
            "period",
            "cost_center",
            "status",
            "amount",
            "reason",
            "evidence_ids",
            "has_evidence_file",
            "counterpart",
            "filed_by",
            "filed_at",
            "due_at",
            "overdue",
            "decided_by",
            "decided_at",
            "decision_reason",
        ]
        read_only_fields = fields

    def get_evidence_ids(self, dispute: Dispute) -> list[str]:
        return [line for line in dispute.evidence_ids.splitlines() if line.strip()]

    def get_has_evidence_file(self, dispute: Dispute) -> bool:
        return bool(dispute.evidence_file)

    def get_overdue(self, dispute: Dispute) -> bool:
        return dispute.status in UNDECIDED_DISPUTES and dispute.due_at < timezone.now()


class DisputeFileSerializer(serializers.Serializer):
    line = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="The statement line's id")
    amount = DecimalTextField(max_digits=17, decimal_places=2, help_text='How much of the line, e.g. "120.00"')
    reason = serializers.CharField(max_length=MAX_REASON)
    evidence_ids = serializers.ListField(
        child=serializers.CharField(max_length=200),
        max_length=MAX_EVIDENCE_IDS,
        required=False,
        default=list,
        help_text="Trace, request or session ids that show the line is wrong",
    )
    counterpart = serializers.SlugRelatedField(
        slug_field="code",
        queryset=CostCenter.objects.all(),
        required=False,
        allow_null=True,
        help_text="The cost center that should bear the amount instead, by code",
    )


class DisputeAcceptSerializer(ReasonSerializer):
    counterpart = serializers.SlugRelatedField(
        slug_field="code",
        queryset=CostCenter.objects.all(),
        required=False,
        allow_null=True,
        help_text="Who bears the amount (else the filer's suggestion; else it is left unallocated)",
    )


__all__ += ["DecimalTextField", "NoBodySerializer"]


# --- journal entries -------------------------------------------------------------------


def _money_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"  # cents are never negative


class JournalLineSerializer(serializers.Serializer):
    """One line: a debit or a credit, in cents and as a decimal string (the other side 0)."""

    line_no = serializers.IntegerField()
    gl_account = serializers.CharField()
    cost_center = serializers.CharField(allow_null=True, help_text="Null on a clearing account's line")
    debit_cents = serializers.IntegerField(min_value=0)
    credit_cents = serializers.IntegerField(min_value=0)
    debit = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=True)
    credit = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=True)
    modality = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)


class JournalEntrySerializer(serializers.Serializer):
    """An entry's header and its balanced lines: the schema's description. The JSON is
    written by `journal_entry_documents` (a page holds up to 500 entries of 50 lines, too
    many for a field-by-field walk)."""

    id = serializers.IntegerField()
    external_id = serializers.CharField(help_text="Stable: the ERP's externalId / ReferenceDocument")
    statement = serializers.IntegerField()
    company = serializers.CharField()
    period = serializers.CharField(help_text="YYYY-MM")
    posting_date = serializers.DateField()
    currency = serializers.CharField()
    memo = serializers.CharField()
    cost_center = serializers.CharField(help_text="The cost center whose statement it is")
    kind = serializers.ChoiceField(choices=JournalEntryKind.choices)
    status = serializers.ChoiceField(choices=JournalEntryStatus.choices)
    reverses = serializers.CharField(allow_null=True, help_text="A reversal: the external id of the entry it undoes")
    erp_document_number = serializers.CharField(allow_blank=True)
    total_cents = serializers.IntegerField(help_text="The debits' sum, equal to the credits'")
    total = serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=True)
    exported_at = serializers.DateTimeField(allow_null=True)
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    lines = JournalLineSerializer(many=True)

    def to_representation(self, entry: JournalEntry) -> dict:
        return json.loads(journal_entry_documents([entry])[0])


def journal_entry_documents(entries: list[JournalEntry]) -> list[str]:
    """Each entry as the JSON text of `JournalEntrySerializer`: its header from Python, its
    lines as kept on it since they were written (`JournalEntry.lines_json`), joined
    without decoding them. A page of the list is these texts joined; one entry is one."""
    documents = []
    for entry in entries:
        total = entry.total_cents
        header = {
            "id": entry.pk,
            "external_id": entry.external_id,
            "statement": entry.statement_id,
            "company": entry.company,
            "period": entry.period,
            "posting_date": entry.posting_date.isoformat(),
            "currency": entry.currency,
            "memo": entry.memo,
            "cost_center": entry.cost_center.code,
            "kind": entry.kind,
            "status": entry.status,
            "reverses": entry.reverses.external_id if entry.reverses_id else None,
            "erp_document_number": entry.erp_document_number,
            "total_cents": total,
            "total": _money_text(total),
            "exported_at": _instant(entry.exported_at),
            "acknowledged_at": _instant(entry.acknowledged_at),
            "created_at": _instant(entry.created_at),
            "updated_at": _instant(entry.updated_at),
        }
        documents.append(f'{json.dumps(header)[:-1]}, "lines": {entry.lines_json}}}')
    return documents


def _instant(value) -> str | None:
    # As DRF's DateTimeField writes it, in UTC (the site's zone): "2026-11-02T08:10:00.123456Z".
    if value is None:
        return None
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class JournalEntryAcknowledgeSerializer(serializers.Serializer):
    document_number = serializers.CharField(
        min_length=1, max_length=64, help_text="The ERP's document number for the entry it posted"
    )
