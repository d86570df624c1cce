"""Serializers of the allocation API: small, one per resource or command."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from allocation.choices import UsageSourceFormat
from allocation.models import AllocationRun, CostCenter, Feature, Team, Tenant, UsageBatch
from pricing.money import decimal_text
from pricing.periods import PeriodSerializerField
from pricing.uploads import validate_upload_name

__all__ = [
    "CostCenterSerializer",
    "FeatureSerializer",
    "TeamSerializer",
    "TenantSerializer",
    "UsageBatchSerializer",
    "UsageBatchUploadSerializer",
    "UsageEventsInputSerializer",
    "TagCoverageInputSerializer",
    "TagCoverageSerializer",
    "UsageEventResultSerializer",
    "UsageEventsResultSerializer",
    "UsageSummaryGroupSerializer",
    "UsageSummaryInputSerializer",
    "usage_summary_json",
]

MAX_EVENTS_PER_REQUEST = 10_000


class CostCenterSerializer(serializers.ModelSerializer):
    # A top-level cost center has none: null, and the schema says so.
    parent = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)

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


# Bytes in a multipart part: drf-spectacular would say a URI (a file field's answer), and
# a client generating from the schema would send a URL as text.
@extend_schema_field({"type": "string", "format": "binary"})
class _UploadField(serializers.FileField):
    pass


class UsageBatchUploadSerializer(serializers.Serializer):
    file = _UploadField(validators=[validate_upload_name])
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


class UsageSummaryGroupSerializer(serializers.Serializer):
    """One group of the usage summary: a text value per key asked for in `group_by`
    (`provider`, `team`, ...), beside these figures. Documents the answer; the view
    writes the figures with `usage_summary_json`."""

    quantity = serializers.CharField(help_text="Summed quantity, an exact decimal as text")
    line_count = serializers.IntegerField()
    cost = serializers.CharField(allow_null=True, help_text="Rated cost as text; null until the month is rated")
    unpriced_line_count = serializers.IntegerField()


class TagCoverageSerializer(serializers.Serializer):
    """One source format's tag coverage; shares are decimals (0.0000 to 1.0000) as text."""

    source = serializers.CharField()
    lines = serializers.IntegerField()
    quantity = serializers.CharField()
    untagged_lines = serializers.IntegerField()
    untagged_quantity = serializers.CharField()
    untagged_line_share = serializers.CharField()
    team_line_share = serializers.CharField()
    team_quantity_share = serializers.CharField()
    feature_line_share = serializers.CharField()
    feature_quantity_share = serializers.CharField()
    environment_line_share = serializers.CharField()
    environment_quantity_share = serializers.CharField()


class TagCoverageInputSerializer(serializers.Serializer):
    period = PeriodSerializerField()


class UsageEventResultSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The event's place in the request, from 1")
    event_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["accepted", "duplicate", "rejected"])
    field = serializers.CharField(required=False, help_text="Rejected events only: the field at fault")
    reason = serializers.CharField(required=False, help_text="Rejected events only: why")


class UsageEventsResultSerializer(serializers.Serializer):
    batch_id = serializers.IntegerField()
    accepted = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = UsageEventResultSerializer(many=True)


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
