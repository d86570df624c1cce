"""The allocation API: read-only cost objects, usage ingestion and summaries."""

from decimal import Decimal

from django.http import StreamingHttpResponse
from drf_spectacular.plumbing import build_array_type, build_basic_type
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from allocation.access import batches_visible, cost_center_scope
from allocation.api.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from allocation.api.serializers import (
    AllocationRunSerializer,
    AllocationRunStartSerializer,
    CostCenterSerializer,
    FeatureSerializer,
    TagCoverageInputSerializer,
    TagCoverageSerializer,
    TeamSerializer,
    TenantSerializer,
    UsageBatchSerializer,
    UsageBatchUploadSerializer,
    UsageEventsInputSerializer,
    UsageEventsResultSerializer,
    UsageSummaryGroupSerializer,
    UsageSummaryInputSerializer,
    usage_summary_json,
)
from allocation.filtersets import AllocationRunFilterSet
from allocation.models import CostCenter, Feature, Team, Tenant
from allocation.selectors.ledger import tag_coverage, usage_batches, usage_rejection_rows
from allocation.selectors.rating import usage_summary
from allocation.selectors.runs import allocation_run_summary, allocation_runs
from allocation.services.ledger import usage_ingest_events, usage_upload_queue
from allocation.services.runs.progress import allocation_progress
from allocation.services.runs.run import allocation_run_queue
from allocation.views.ledger import csv_download
from pricing.money import decimal_text

__all__ = [
    "AllocationRunViewSet",
    "CostCenterViewSet",
    "FeatureViewSet",
    "TagCoverageApi",
    "TeamViewSet",
    "TenantViewSet",
    "UsageBatchViewSet",
    "UsageEventsIngestApi",
    "UsageSummaryApi",
]


# Report rows whose keys follow the query (`group_by`), so the schema says only "objects".
_ROWS = build_array_type(build_basic_type(OpenApiTypes.OBJECT))


COST_CENTER_EXAMPLE = OpenApiExample(
    "A cost center",
    value={
        "id": 3,
        "code": "CC-110",
        "name": "Search",
        "owner": "Olivia Owens",
        "gl_expense_account": "6410",
        "gl_recovery_account": "6490",
        "parent": "CC-100",
        "active_from": "2026-01-01",
        "active_to": None,
    },
    response_only=True,
)
TEAM_EXAMPLE = OpenApiExample(
    "A team", value={"id": 5, "code": "search", "name": "Search", "cost_center": "CC-110"}, response_only=True
)
FEATURE_EXAMPLE = OpenApiExample(
    "A feature", value={"id": 9, "code": "answers", "name": "Answers", "team": "search"}, response_only=True
)
RUN_EXAMPLE = OpenApiExample(
    "A completed run",
    value={
        "id": 3,
        "period": "2026-10",
        "status": "completed",
        "fingerprint": "5d0c0b7a6a1e2c9f8e7d6c5b4a392817161514131211100f0e0d0c0b0a090807",
        "mapping_version": 2,
        "rating_run": 4,
        "tolerance": "0.0050",
        "is_flagged": False,
        "invoice_total": "18250.40",
        "allocated": "18100.00",
        "unallocated": "150.40",
        "superseded_by": None,
        "closed_at": None,
        "created_by": "fiona",
        "created_at": "2026-11-02T07:55:00Z",
        "seconds": "4.200",
    },
    response_only=True,
)


@extend_schema_view(
    list=extend_schema(examples=[COST_CENTER_EXAMPLE]), retrieve=extend_schema(examples=[COST_CENTER_EXAMPLE])
)
class CostCenterViewSet(viewsets.ReadOnlyModelViewSet):
    """Cost centers; a team member sees theirs (and, as an owner, the ones below)."""

    queryset = CostCenter.objects.select_related("parent")
    serializer_class = CostCenterSerializer
    filterset_fields = ["code", "parent__code"]

    def get_queryset(self):
        return cost_center_scope(self.request.user).filter(super().get_queryset(), "pk")


@extend_schema_view(list=extend_schema(examples=[TEAM_EXAMPLE]), retrieve=extend_schema(examples=[TEAM_EXAMPLE]))
class TeamViewSet(viewsets.ReadOnlyModelViewSet):
    """Teams; a team member sees the teams of their cost centers."""

    queryset = Team.objects.select_related("cost_center")
    serializer_class = TeamSerializer
    filterset_fields = ["code", "cost_center__code"]

    def get_queryset(self):
        return cost_center_scope(self.request.user).filter(super().get_queryset())


@extend_schema_view(list=extend_schema(examples=[FEATURE_EXAMPLE]), retrieve=extend_schema(examples=[FEATURE_EXAMPLE]))
class FeatureViewSet(viewsets.ReadOnlyModelViewSet):
    """Features; a team member sees the features of their cost centers' teams."""

    queryset = Feature.objects.select_related("team")
    serializer_class = FeatureSerializer
    filterset_fields = ["code", "team__code"]

    def get_queryset(self):
        return cost_center_scope(self.request.user).filter(super().get_queryset(), "team__cost_center")


class TenantViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Tenant.objects.all()
    serializer_class = TenantSerializer
    filterset_fields = ["code"]


class UsageBatchViewSet(viewsets.ReadOnlyModelViewSet):
    """Ingestion batches: counts, progress, and their rejected records."""

    queryset = usage_batches()
    serializer_class = UsageBatchSerializer
    filterset_fields = ["status", "source_format"]

    def get_queryset(self):
        return batches_visible(self.request.user, super().get_queryset())

    # A file travels as multipart only; a JSON body can carry no file.
    @extend_schema(request={"multipart/form-data": UsageBatchUploadSerializer}, responses={202: UsageBatchSerializer})
    def create(self, request: Request) -> Response:
        """Upload a usage file; it is ingested in the background (poll the batch)."""
        payload = UsageBatchUploadSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        batch = usage_upload_queue(
            uploaded_file=payload.validated_data["file"],
            source_format=payload.validated_data["format"],
            actor=request.user,
        )
        return Response(UsageBatchSerializer(batch).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={(200, "text/csv"): str})
    @action(detail=True, methods=["get"])
    def rejections(self, request: Request, pk: str | None = None) -> StreamingHttpResponse:
        """Every rejected record of the batch as CSV: line, field, reason, raw."""
        batch = self.get_object()
        return csv_download(usage_rejection_rows(batch=batch), filename=f"batch-{batch.pk}-rejections.csv")


class UsageEventsIngestApi(APIView):
    """For gateways: a batch of events, idempotent by event id, answered per event."""

    @extend_schema(request=UsageEventsInputSerializer, responses=UsageEventsResultSerializer)
    def post(self, request: Request) -> Response:
        payload = UsageEventsInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        source = payload.validated_data.get("source") or f"api:{request.user.get_username()}"
        batch, results = usage_ingest_events(
            events=payload.validated_data["events"], source_name=source, actor=request.user
        )
        return Response(
            {
                "batch_id": batch.pk,
                "accepted": batch.inserted,
                "duplicate": batch.duplicate,
                "rejected": batch.rejected,
                "results": [
                    {"index": r.index, "event_id": r.event_id, "status": r.status}
                    | ({"field": r.field, "reason": r.reason} if r.status == "rejected" else {})
                    for r in results
                ],
            }
        )


class UsageSummaryApi(APIView):
    """Quantity and line count per group for a period (any tag can be a key)."""

    @extend_schema(parameters=[UsageSummaryInputSerializer], responses=UsageSummaryGroupSerializer(many=True))
    def get(self, request: Request) -> Response:
        params = UsageSummaryInputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        groups = usage_summary(period=params.validated_data["period"], group_by=params.validated_data["group_by"])
        return Response(usage_summary_json(groups))


class TagCoverageApi(APIView):
    """Per source: the share of lines and quantity carrying team, feature, environment."""

    @extend_schema(parameters=[TagCoverageInputSerializer], responses=TagCoverageSerializer(many=True))
    def get(self, request: Request) -> Response:
        params = TagCoverageInputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        report = tag_coverage(period=params.validated_data["period"])
        return Response(
            [{k: decimal_text(v) if isinstance(v, Decimal) else v for k, v in row.items()} for row in report]
        )


@extend_schema_view(list=extend_schema(examples=[RUN_EXAMPLE]), retrieve=extend_schema(examples=[RUN_EXAMPLE]))
class AllocationRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Allocation runs, newest first; `?period=YYYY-MM` and `?status=` filter them."""

    queryset = allocation_runs()
    serializer_class = AllocationRunSerializer
    filterset_class = AllocationRunFilterSet

    @extend_schema(
        request=AllocationRunStartSerializer,
        responses={202: dict},
        examples=[
            OpenApiExample("Run October", value={"period": "2026-10"}, request_only=True),
            OpenApiExample(
                "Queued",
                value={"period": "2026-10", "progress": {"state": "queued", "percent": 0}},
                response_only=True,
                status_codes=["202"],
            ),
        ],
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
    )
    @idempotent
    def create(self, request: Request) -> Response:
        """Start a run of a period in the background; poll `progress?period=` or the run list.
        With an `Idempotency-Key`, a retry answers as the first request did rather than
        queueing a second run (or being refused as one already running)."""
        payload = AllocationRunStartSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        period = payload.validated_data["period"]
        allocation_run_queue(period=period, actor=request.user)
        return Response(
            {"period": str(period), "progress": allocation_progress(period=period)}, status=status.HTTP_202_ACCEPTED
        )

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def summary(self, request: Request, pk: str | None = None) -> Response:
        """Per provider: invoice total, allocated, unallocated by reason, variance; per cost center: totals."""
        return Response(allocation_run_summary(run=self.get_object()))

    @extend_schema(parameters=[AllocationRunStartSerializer], responses={200: dict})
    @action(detail=False, methods=["get"])
    def progress(self, request: Request) -> Response:
        """What the period's run is doing now: state, step, percent, who, since."""
        params = AllocationRunStartSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        period = params.validated_data["period"]
        return Response({"period": str(period), "progress": allocation_progress(period=period)})
