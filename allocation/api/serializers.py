"""Serializers of the allocation API: small, one per resource or command."""

from rest_framework import serializers

from allocation.choices import UsageSourceFormat
from allocation.models import AllocationRun, CostCenter, Feature, Team, Tenant, UsageBatch
from pricing.money import decimal_text
from pricing.periods import PeriodSerializerField

__all__ = [
    "CostCenterSerializer",
    "FeatureSerializer",
    "TeamSerializer",
    "TenantSerializer",
    "UsageBatchSerializer",
    "UsageBatchUploadSerializer",
    "UsageEventsInputSerializer",
    "UsageSummaryInputSerializer",
    "usage_summary_json",
]

MAX_EVENTS_PER_REQUEST = 10_000


class CostCenterSerializer(serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = CostCenter
        fields = [
            "id",
            "code",
            "name",
            "owner",
            "gl_expense_account",
            "gl_recovery_account",
            "parent",
            "active_from",
            "active_to",
        ]


class TeamSerializer(serializers.ModelSerializer):
    cost_center = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Team
        fields = ["id", "code", "name", "cost_center"]


class FeatureSerializer(serializers.ModelSerializer):
    team = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Feature
        fields = ["id", "code", "name", "team"]


class TenantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["id", "code", "name"]


class UsageBatchSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True, allow_null=True)
    rejections_url = serializers.SerializerMethodField()
    sent_by = serializers.CharField(read_only=True, help_text="Who or what sent it; empty for an operator's command")

    class Meta:
        model = UsageBatch
        fields = [
            "id",
            "source_format",
            "source_name",
            "status",
            "rows_read",
            "inserted",
            "duplicate",
            "rejected",
            "lines_inserted",
            "restated",
            "bytes_total",
            "bytes_read",
            "progress",
            "error",
            "sent_by",
            "created_at",
            "started_at",
            "finished_at",
            "rejections_url",
        ]

    def get_rejections_url(self, batch: UsageBatch) -> str:
        return f"/api/v1/usage/batches/{batch.pk}/rejections"


class UsageBatchUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=[f for f in UsageSourceFormat.values if f != UsageSourceFormat.API])


class UsageEventsInputSerializer(serializers.Serializer):
    """Events are validated one by one by the ingestion service, which answers
    per event; here only the envelope is checked."""

    events = serializers.ListField(child=serializers.JSONField(), allow_empty=False, max_length=MAX_EVENTS_PER_REQUEST)
    source = serializers.CharField(required=False, max_length=200)


class UsageSummaryInputSerializer(serializers.Serializer):
    period = PeriodSerializerField()
    group_by = serializers.CharField(default="provider,model,unit")

    def validate_group_by(self, value: str) -> list[str]:
        return [key.strip() for key in value.split(",") if key.strip()]


def usage_summary_json(groups: list[dict]) -> list[dict]:
    """Summary groups as the API and `usage_summary` print them: exact decimals as text."""
    return [
        {
            **group,
            "quantity": decimal_text(group["quantity"]),
            "cost": None if group["cost"] is None else decimal_text(group["cost"]),
        }
        for group in groups
    ]


class AllocationRunSerializer(serializers.ModelSerializer):
    mapping_version = serializers.IntegerField(source="mapping_version.number", read_only=True)
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)

    class Meta:
        model = AllocationRun
        fields = [
            "id",
            "period",
            "status",
            "fingerprint",
            "mapping_version",
            "rating_run",
            "tolerance",
            "is_flagged",
            "invoice_total",
            "allocated",
            "unallocated",
            "superseded_by",
            "closed_at",
            "created_by",
            "created_at",
            "seconds",
        ]


class AllocationRunStartSerializer(serializers.Serializer):
    period = PeriodSerializerField()


__all__ += ["AllocationRunSerializer", "AllocationRunStartSerializer"]
