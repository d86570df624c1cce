"""Forms of the usage pages: they carry input to selectors and services.

The period is parsed by `PeriodFormField` (one parser for every interface);
group keys are checked by the selector, whose message the page shows.
"""

from django import forms

from allocation.choices import UsageSourceFormat
from allocation.selectors.rating import SUMMARY_GROUP_KEYS
from allocation.services.ledger import FILE_FORMATS
from pricing.periods import PeriodFormField
from pricing.uploads import validate_upload_name

__all__ = ["DEFAULT_GROUP_BY", "UsageSummaryForm", "UsageUploadForm"]

DEFAULT_GROUP_BY: tuple[str, ...] = ("provider", "model", "unit")

# Labels for the group-by checkboxes; keys not listed fall back to the key.
_GROUP_LABELS = {
    "service_tier": "Service tier",
    "tier": "Unit tier",
    "context_band": "Context band",
    "user": "End user",
    "session_id": "Session ID",
    "trace_id": "Trace ID",
    "request_id": "Request ID",
    "api_key": "API key",
}


def group_label(key: str) -> str:
    """A column heading for a group key."""
    return _GROUP_LABELS.get(key, key.replace("_", " ").capitalize())


class _UncheckedMultipleChoiceField(forms.MultipleChoiceField):
    """Checkboxes whose values the selector validates, so its message is shown."""

    def valid_value(self, value: str) -> bool:
        return True


class UsageSummaryForm(forms.Form):
    period = PeriodFormField(
        label="Period",
        help_text="Month as YYYY-MM, in UTC.",
        error_messages={"required": "Enter a period as YYYY-MM."},
    )
    group_by = _UncheckedMultipleChoiceField(
        label="Group by",
        required=False,
        choices=[(key, group_label(key)) for key in SUMMARY_GROUP_KEYS],
        widget=forms.CheckboxSelectMultiple,
    )


class UsageUploadForm(forms.Form):
    file = forms.FileField(
        label="Usage file",
        validators=[validate_upload_name],
        widget=forms.FileInput(attrs={"aria-describedby": "upload-hint"}),
    )
    source_format = forms.ChoiceField(
        label="Format",
        choices=[(value, UsageSourceFormat(value).label) for value in FILE_FORMATS],
        initial=UsageSourceFormat.CSV,
    )
