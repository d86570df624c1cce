"""The dispute form a team member fills in, and finance's decision form."""

from django import forms

from allocation.models import CostCenter
from pricing.uploads import validate_upload_name

__all__ = ["DisputeDecisionForm", "DisputeFileForm", "ReasonForm"]


class DisputeFileForm(forms.Form):
    # Text: the service parses it with the project's one parser (pricing.money.parse_decimal)
    # and says what is wrong with it, under this field.
    amount = forms.CharField(max_length=40, help_text="How much of the line is wrong")
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), max_length=4000, help_text="Why the line is wrong"
    )
    evidence_ids = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=4000,
        label="Evidence ids",
        help_text="Trace, request or session ids, one per line",
    )
    evidence_file = forms.FileField(
        required=False, validators=[validate_upload_name], help_text="A file that shows it (10 MB at most)"
    )
    counterpart = forms.ModelChoiceField(
        queryset=CostCenter.objects.order_by("code"),
        required=False,
        to_field_name="code",
        label="Who should bear it",
        help_text="The cost center that caused the spend, if you know it",
    )


class DisputeDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("accept", "Accept"), ("reject", "Reject")], widget=forms.RadioSelect)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000, help_text="Told to the filer")
    counterpart = forms.ModelChoiceField(
        queryset=CostCenter.objects.order_by("code"),
        required=False,
        to_field_name="code",
        label="Charge it to",
        help_text="On accepting: the cost center that bears the amount (empty: left unallocated)",
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)
