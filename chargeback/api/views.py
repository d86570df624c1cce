"""The close's API: periods, statements and their lines, disputes, journal entries. Thin: reads through
the selectors (scoped by `cost_center_scope`, as the pages are), changes through the
services, which check roles, states and windows again. Every write takes an
`Idempotency-Key`. Access rules per URL are in allocation/access.py."""

import json

from django.db.models import Count
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from allocation.access import cost_center_scope
from allocation.api.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from allocation.views.ledger import csv_download
from chargeback.api.pagination import JournalCursorPagination
from chargeback.api.serializers import (
    DisputeAcceptSerializer,
    DisputeFileSerializer,
    DisputeSerializer,
    JournalEntryAcknowledgeSerializer,
    JournalEntrySerializer,
    NoBodySerializer,
    PeriodSerializer,
    ReasonSerializer,
    StatementLineSerializer,
    StatementLinesQuerySerializer,
    StatementSerializer,
    journal_entry_documents,
)
from chargeback.filtersets import DisputeFilterSet, JournalEntryFilterSet, StatementFilterSet
from chargeback.models import Dispute, JournalEntry, Statement, StatementLine
from chargeback.selectors.journals import (
    JOURNAL_CSV_HEADER,
    journal_csv_rows,
    journal_entries_visible,
)
from chargeback.selectors.periods import period_overview, periods_overview
from chargeback.selectors.statements import (
    STATEMENT_LINE_HEADER,
    disputes_visible,
    statement_file_name,
    statement_line_rows,
    statements_visible,
)
from chargeback.services.disputes import dispute_accept, dispute_file, dispute_reject, dispute_review
from chargeback.services.journals import journal_entry_acknowledge
from chargeback.services.periods import period_close, period_reopen
from chargeback.services.statements import statement_approve, statement_reopen, statement_return, statement_submit
from pricing.errors import NotFound
from pricing.periods import Period

__all__ = ["DisputeViewSet", "JournalEntryViewSet", "PeriodViewSet", "StatementViewSet"]

# --- examples, for the docs ---------------------------------------------------------

PERIOD_EXAMPLE = OpenApiExample(
    "A month in review",
    value={
        "period": "2026-10",
        "status": "closing",
        "closed_at": None,
        "closed_by": None,
        "statements": 4,
        "statements_by_status": {"draft": 0, "in_review": 1, "approved": 3, "posted": 0},
        "total": "18250.40",
        "disputes_open": 1,
    },
    response_only=True,
)
REASON_EXAMPLE = OpenApiExample(
    "A reason", value={"reason": "The October invoice was restated; rebuilding CC-110."}, request_only=True
)
STATEMENT_EXAMPLE = OpenApiExample(
    "A statement in review",
    value={
        "id": 12,
        "period": "2026-10",
        "cost_center": "CC-110",
        "cost_center_name": "Search",
        "status": "in_review",
        "currency": "USD",
        "total": "5120.75",
        "chargeback": "4980.00",
        "showback": "140.75",
        "unallocated": "0.00",
        "corrections": "0.00",
        "adjustments": "0.00",
        "previous_total": "4870.10",
        "line_count": 38,
        "content_hash": "",
        "run": 3,
        "built_at": "2026-11-02T08:10:00Z",
        "submitted_at": "2026-11-02T09:00:00Z",
        "approved_at": None,
        "approved_by": None,
        "posted_at": None,
        "revision": 1,
        "replaces": None,
        "replaced_by": None,
        "reopened_at": None,
        "reopened_by": None,
        "reopen_reason": "",
        "journal_entry_count": 0,
        "lines_url": "/api/v1/statements/12/lines",
    },
    response_only=True,
)
REOPEN_EXAMPLE = OpenApiExample(
    "Why it is reopened",
    value={"reason": "The platform fee pool used last month's driver; CC-110 was overcharged."},
    request_only=True,
)
LINE_EXAMPLE = OpenApiExample(
    "A charge line",
    value={
        "id": 301,
        "kind": "charge",
        "source_period": "2026-10",
        "provider": "openai",
        "model": "gpt-4o",
        "modality": "text",
        "team": "search",
        "feature": "answers",
        "environment": "production",
        "treatment": "chargeback",
        "category": "usage",
        "method": "direct",
        "reason": "",
        "description": "",
        "unit": "input_token",
        "quantity": "125000000",
        "line_count": 48210,
        "amount": "312.50",
    },
    response_only=True,
)
DISPUTE_EXAMPLE = OpenApiExample(
    "An open dispute",
    value={
        "id": 7,
        "statement": 12,
        "line": 301,
        "period": "2026-10",
        "cost_center": "CC-110",
        "status": "open",
        "amount": "120.00",
        "reason": "The eval traffic of 14 October was the platform team's load test.",
        "evidence_ids": ["trace-8f2a", "trace-8f2b"],
        "has_evidence_file": False,
        "counterpart": "CC-130",
        "filed_by": "sam",
        "filed_at": "2026-11-03T10:00:00Z",
        "due_at": "2026-11-13T10:00:00Z",
        "overdue": False,
        "decided_by": None,
        "decided_at": None,
        "decision_reason": "",
    },
    response_only=True,
)
DISPUTE_FILE_EXAMPLE = OpenApiExample(
    "Filing a dispute",
    value={
        "line": 301,
        "amount": "120.00",
        "reason": "The eval traffic of 14 October was the platform team's load test.",
        "evidence_ids": ["trace-8f2a", "trace-8f2b"],
        "counterpart": "CC-130",
    },
    request_only=True,
)
ACCEPT_EXAMPLE = OpenApiExample(
    "Accepting, charged to the platform team",
    value={"reason": "Confirmed: a load test.", "counterpart": "CC-130"},
    request_only=True,
)
ERROR_EXAMPLE = OpenApiExample(
    "A refusal",
    value={
        "code": "statements_not_signed_off",
        "message": "2026-10 can't close: 1 statements are not signed off (CC-110)",
        "extra": {"period": "2026-10", "cost_centers": ["CC-110"]},
    },
    response_only=True,
    status_codes=["409"],
)
REPLAY_EXAMPLE = OpenApiExample(
    "A key reused for another request",
    value={
        "code": "idempotency_key_reused",
        "message": "Idempotency-Key 'a1b2' was used for another request (POST /api/v1/disputes); "
        "send a new key for a new request",
        "extra": {"key": "a1b2", "method": "POST", "path": "/api/v1/disputes"},
    },
    response_only=True,
    status_codes=["409"],
)
_WRITE = {"parameters": [IDEMPOTENCY_KEY_PARAMETER]}


def _write_schema(*, request, response, examples: list, summary: str, description: str, status_code: int = 200):
    return extend_schema(
        request=request,
        responses={status_code: response},
        examples=[*examples, ERROR_EXAMPLE, REPLAY_EXAMPLE],
        summary=summary,
        description=description,
        **_WRITE,
    )


# --- periods ---------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Months in their close, newest first",
        description="Each month with a close row or a statement: its status, its statements by status and "
        "its open disputes. A team member's counts are of their cost centers only.",
        examples=[PERIOD_EXAMPLE],
    ),
    retrieve=extend_schema(
        summary="One month in its close",
        description="Any month `YYYY-MM`; one with no statement yet is `open` and empty.",
        parameters=[OpenApiParameter("period", str, OpenApiParameter.PATH, description="YYYY-MM")],
        examples=[PERIOD_EXAMPLE],
    ),
)
class PeriodViewSet(viewsets.GenericViewSet):
    serializer_class = PeriodSerializer
    lookup_field = "period"
    filter_backends: list = []
    queryset = Statement.objects.none()  # the rows are the selector's dicts; the schema wants a model

    def list(self, request: Request) -> Response:
        rows = periods_overview(scope=cost_center_scope(request.user))
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(PeriodSerializer(page, many=True).data)

    def retrieve(self, request: Request, period: str) -> Response:
        return Response(self._overview(request, Period.parse(period)))

    def _overview(self, request: Request, period: Period) -> dict:
        return PeriodSerializer(period_overview(scope=cost_center_scope(request.user), period=period)).data

    @_write_schema(
        request=NoBodySerializer,
        response=PeriodSerializer,
        examples=[PERIOD_EXAMPLE],
        summary="Close a month (finance approver)",
        description="Every statement of the month must be signed off; nothing in it changes again.",
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def close(self, request: Request, period: str) -> Response:
        month = Period.parse(period)
        period_close(period=month, actor=request.user)
        return Response(self._overview(request, month))

    @_write_schema(
        request=ReasonSerializer,
        response=PeriodSerializer,
        examples=[REASON_EXAMPLE, PERIOD_EXAMPLE],
        summary="Reopen a closed month (finance approver), with a reason",
        description="The month goes back to closing; signed-off statements stay as they are.",
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def reopen(self, request: Request, period: str) -> Response:
        month = Period.parse(period)
        payload = ReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        period_reopen(period=month, actor=request.user, reason=payload.validated_data["reason"])
        return Response(self._overview(request, month))


# --- statements ------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Statements, by period, status and cost center",
        description="A team member sees their cost centers' statements (and those below the ones they own).",
        examples=[STATEMENT_EXAMPLE],
    ),
    retrieve=extend_schema(summary="One statement", examples=[STATEMENT_EXAMPLE]),
)
class StatementViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = StatementSerializer
    filterset_class = StatementFilterSet
    queryset = Statement.objects.none()

    def get_queryset(self):
        return self._visible().order_by("-period", "cost_center__code", "id")

    def _visible(self):
        return statements_visible(self.request.user).annotate(journal_entry_count=Count("journal_entries"))

    def filter_queryset(self, queryset):
        # One statement is found by its id, a superseded revision too; a list shows the
        # live revisions unless `include_superseded`.
        return queryset if self.action == "retrieve" else super().filter_queryset(queryset)

    @extend_schema(
        summary="A statement's lines, paged",
        parameters=[StatementLinesQuerySerializer],
        responses=StatementLineSerializer(many=True),
        examples=[LINE_EXAMPLE],
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def lines(self, request: Request, pk: str) -> Response:
        statement = self.get_object()
        params = StatementLinesQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        lines = StatementLine.objects.filter(statement=statement).order_by("kind", "-amount", "id")
        if kind := params.validated_data.get("kind"):
            lines = lines.filter(kind=kind)
        page = self.paginate_queryset(lines)
        return self.get_paginated_response(StatementLineSerializer(page, many=True).data)

    @extend_schema(
        summary="A statement's lines as CSV",
        description="The page's download (`/statements/{id}/lines.csv`), for API tokens: every line, "
        "through the one CSV writer (cells never run as spreadsheet formulas).",
        responses={(200, "text/csv"): str},
    )
    @action(detail=True, methods=["get"], url_path="lines.csv", url_name="lines-csv", filter_backends=[])
    def lines_csv(self, request: Request, pk: str) -> StreamingHttpResponse:
        statement = self.get_object()
        rows = [STATEMENT_LINE_HEADER, *statement_line_rows(statement=statement)]
        return csv_download(rows, filename=statement_file_name(statement, "csv"))

    @_write_schema(
        request=NoBodySerializer,
        response=StatementSerializer,
        examples=[STATEMENT_EXAMPLE],
        summary="Send a draft for review (finance)",
        description="The cost center's members see it and may dispute its lines.",
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    @idempotent
    def submit(self, request: Request, pk: str) -> Response:
        statement = statement_submit(statement=self.get_object(), actor=request.user)
        return Response(StatementSerializer(self._fresh(statement)).data)

    @_write_schema(
        request=ReasonSerializer,
        response=StatementSerializer,
        examples=[REASON_EXAMPLE, STATEMENT_EXAMPLE],
        summary="Return a statement in review to draft (finance), with a reason",
        description="A figure to fix before it is signed off.",
    )
    @action(detail=True, methods=["post"], url_path="return", url_name="return", filter_backends=[])
    @idempotent
    def return_(self, request: Request, pk: str) -> Response:
        payload = ReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        statement = statement_return(
            statement=self.get_object(), actor=request.user, reason=payload.validated_data["reason"]
        )
        return Response(StatementSerializer(self._fresh(statement)).data)

    @_write_schema(
        request=NoBodySerializer,
        response=StatementSerializer,
        examples=[STATEMENT_EXAMPLE],
        summary="Sign a statement off (finance approver)",
        description="Its content is hashed and never changes again; disputes are taken for the window after. "
        "Its journal entries are written; a statement with no chargeback has none and is `posted` at once "
        "(nothing for the ERP to post).",
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    @idempotent
    def approve(self, request: Request, pk: str) -> Response:
        statement = statement_approve(statement=self.get_object(), actor=request.user)
        return Response(StatementSerializer(self._fresh(statement)).data)

    @_write_schema(
        request=ReasonSerializer,
        response=StatementSerializer,
        examples=[REOPEN_EXAMPLE, STATEMENT_EXAMPLE],
        summary="Reopen a signed-off statement as a new revision (finance approver), with a reason",
        description="Only while its month is open (after close, a change is a correction in the next open "
        "month) and no dispute of it is undecided. The statement is never edited: it becomes `superseded`, "
        "each of its journal entries is reversed by a reversing entry, and a new draft revision "
        "(`revision` + 1, `replaces` it) is built from the month's current allocation run. Answers with "
        "the new revision.",
        status_code=status.HTTP_201_CREATED,
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    @idempotent
    def reopen(self, request: Request, pk: str) -> Response:
        payload = ReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        revision = statement_reopen(
            statement=self.get_object(), actor=request.user, reason=payload.validated_data["reason"]
        )
        return Response(StatementSerializer(self._fresh(revision)).data, status=status.HTTP_201_CREATED)

    def _fresh(self, statement: Statement) -> Statement:
        return self._visible().get(pk=statement.pk)


# --- disputes --------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Disputes, newest first",
        description="`?status=undecided` is finance's queue. A team member sees their cost centers' disputes.",
        examples=[DISPUTE_EXAMPLE],
    ),
    retrieve=extend_schema(summary="One dispute", examples=[DISPUTE_EXAMPLE]),
)
class DisputeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = DisputeSerializer
    filterset_class = DisputeFilterSet
    queryset = Dispute.objects.none()

    def get_queryset(self):
        return disputes_visible(scope=cost_center_scope(self.request.user)).order_by("-filed_at", "-id")

    @_write_schema(
        request=DisputeFileSerializer,
        response=DisputeSerializer,
        examples=[DISPUTE_FILE_EXAMPLE, DISPUTE_EXAMPLE],
        summary="File a dispute of a line of one's cost center's statement (team member)",
        description="While the statement is in review, or within the window after sign-off. "
        "The amount is a decimal string, more than 0 and at most the line's amount.",
        status_code=status.HTTP_201_CREATED,
    )
    @idempotent
    def create(self, request: Request) -> Response:
        payload = DisputeFileSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        line = StatementLine.objects.filter(pk=data["line"], statement__in=statements_visible(request.user)).first()
        if line is None:
            raise NotFound(f"statement line #{data['line']} is not one you can see", extra={"line": data["line"]})
        dispute = dispute_file(
            line=line,
            actor=request.user,
            amount=data["amount"],
            reason=data["reason"],
            evidence_ids="\n".join(data["evidence_ids"]),
            counterpart=data.get("counterpart"),
        )
        return Response(DisputeSerializer(self._fresh(dispute)).data, status=status.HTTP_201_CREATED)

    @_write_schema(
        request=NoBodySerializer,
        response=DisputeSerializer,
        examples=[DISPUTE_EXAMPLE],
        summary="Take an open dispute up (finance)",
        description="It is under review until accepted or rejected.",
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    @idempotent
    def review(self, request: Request, pk: str) -> Response:
        dispute = dispute_review(dispute=self.get_object(), actor=request.user)
        return Response(DisputeSerializer(self._fresh(dispute)).data)

    @_write_schema(
        request=DisputeAcceptSerializer,
        response=DisputeSerializer,
        examples=[ACCEPT_EXAMPLE, DISPUTE_EXAMPLE],
        summary="Accept a dispute (finance), with a reason",
        description="The amount moves as adjustments in the next open period: a credit on the disputing "
        "cost center and a charge on the counterpart.",
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    @idempotent
    def accept(self, request: Request, pk: str) -> Response:
        payload = DisputeAcceptSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        dispute = dispute_accept(
            dispute=self.get_object(),
            actor=request.user,
            reason=payload.validated_data["reason"],
            counterpart=payload.validated_data.get("counterpart"),
        )
        return Response(DisputeSerializer(self._fresh(dispute)).data)

    @_write_schema(
        request=ReasonSerializer,
        response=DisputeSerializer,
        examples=[REASON_EXAMPLE, DISPUTE_EXAMPLE],
        summary="Reject a dispute (finance), with a reason",
        description="The statement stands; the filer is told why.",
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    @idempotent
    def reject(self, request: Request, pk: str) -> Response:
        payload = ReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        dispute = dispute_reject(dispute=self.get_object(), actor=request.user, reason=payload.validated_data["reason"])
        return Response(DisputeSerializer(self._fresh(dispute)).data)

    def _fresh(self, dispute: Dispute) -> Dispute:
        return disputes_visible(scope=cost_center_scope(self.request.user)).get(pk=dispute.pk)


# --- journal entries -------------------------------------------------------------------

JOURNAL_ENTRY_EXAMPLE = OpenApiExample(
    "An entry the ERP has posted",
    value={
        "id": 41,
        "external_id": "CB-2026-10-CC-110-chargeback-1",
        "statement": 12,
        "company": "ACME-US",
        "period": "2026-10",
        "posting_date": "2026-10-31",
        "currency": "USD",
        "memo": "AI chargeback 2026-10, CC-110 Search",
        "cost_center": "CC-110",
        "kind": "chargeback",
        "status": "acknowledged",
        "reverses": None,
        "erp_document_number": "JE100041",
        "total_cents": 498000,
        "total": "4980.00",
        "exported_at": "2026-11-05T06:00:00Z",
        "acknowledged_at": "2026-11-05T06:00:02Z",
        "created_at": "2026-11-04T17:30:00Z",
        "updated_at": "2026-11-05T06:00:02Z",
        "lines": [
            {
                "line_no": 1,
                "gl_account": "6110",
                "cost_center": "CC-110",
                "debit_cents": 498000,
                "credit_cents": 0,
                "debit": "4980.00",
                "credit": "0.00",
                "modality": "text",
                "description": "CC-110 AI spend 2026-10, Text",
            },
            {
                "line_no": 2,
                "gl_account": "2190",
                "cost_center": None,
                "debit_cents": 0,
                "credit_cents": 498000,
                "debit": "0.00",
                "credit": "4980.00",
                "modality": "text",
                "description": "CC-110 AI spend 2026-10, Text (clearing)",
            },
        ],
    },
    response_only=True,
)
ACKNOWLEDGE_EXAMPLE = OpenApiExample(
    "The ERP's document number", value={"document_number": "JE100041"}, request_only=True
)
ACKNOWLEDGED_OTHERWISE_EXAMPLE = OpenApiExample(
    "Acknowledged before under another number",
    value={
        "code": "journal_entry_acknowledged",
        "message": "CB-2026-10-CC-110-chargeback-1 was acknowledged as document JE100041, not JE100042: "
        "it is posted once",
        "extra": {"entry": "CB-2026-10-CC-110-chargeback-1", "erp_document_number": "JE100041"},
    },
    response_only=True,
    status_codes=["409"],
)
_JOURNAL_LIST = (
    "Ordered by (`updated_at`, `id`) and paged by keyset: follow `next`, or keep `cursor` as the checkpoint "
    "of an incremental pull and ask `?cursor=` from it next time (what changed since comes after it). "
    "`updated_after` does the same from an instant. For finance, the platform team and the ERP's token; "
    "team members see their statements, not the ledger."
)


@extend_schema_view(
    list=extend_schema(
        summary="Journal entries, by period, status, cost center and `updated_after`",
        description=_JOURNAL_LIST,
        examples=[JOURNAL_ENTRY_EXAMPLE],
    ),
    retrieve=extend_schema(summary="One journal entry with its lines", examples=[JOURNAL_ENTRY_EXAMPLE]),
)
class JournalEntryViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = JournalEntrySerializer
    filterset_class = JournalEntryFilterSet
    pagination_class = JournalCursorPagination
    queryset = JournalEntry.objects.none()

    def get_queryset(self):
        return journal_entries_visible(self.request.user)

    def list(self, request: Request) -> HttpResponse:
        entries = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        # The entries' JSON texts joined as they are (see journal_entry_documents).
        paginator = self.paginator
        head = json.dumps({"next": paginator._next_link(), "cursor": paginator.cursor})[:-1]
        body = f'{head}, "results": [{", ".join(journal_entry_documents(entries))}]}}'
        return HttpResponse(body, content_type="application/json")

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(self._document(self.get_object()))

    def _document(self, entry: JournalEntry) -> dict:
        return json.loads(journal_entry_documents([entry])[0])

    @extend_schema(
        summary="Journal entries as CSV, a row per line",
        description="The same entries and filters as the list, every page at once, through the one CSV writer.",
        responses={(200, "text/csv"): str},
    )
    def csv(self, request: Request) -> StreamingHttpResponse:
        entries = self.filter_queryset(self.get_queryset())
        period = request.query_params.get("period") or "all"
        return csv_download([JOURNAL_CSV_HEADER, *journal_csv_rows(entries)], filename=f"journal-entries-{period}.csv")

    @extend_schema(
        request=JournalEntryAcknowledgeSerializer,
        responses={200: JournalEntrySerializer},
        examples=[ACKNOWLEDGE_EXAMPLE, JOURNAL_ENTRY_EXAMPLE, ACKNOWLEDGED_OTHERWISE_EXAMPLE, REPLAY_EXAMPLE],
        summary="The ERP posted an entry: its document number (the ERP's token)",
        description="Idempotent: the same number again answers 200 with the same body; another number for an "
        "entry already acknowledged is a 409 `journal_entry_acknowledged`. When a statement's last entry is "
        "acknowledged the statement is posted.",
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    @idempotent
    def acknowledge(self, request: Request, pk: str) -> Response:
        payload = JournalEntryAcknowledgeSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        entry = journal_entry_acknowledge(
            entry=self.get_object(), document_number=payload.validated_data["document_number"], actor=request.user
        )
        return Response(self._document(self.get_queryset().get(pk=entry.pk)))
