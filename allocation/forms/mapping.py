"""Forms of the mapping pages: they gather input for the mapping services.

The forms check types (a known cost center, a number); whether the fields make
sense together (a rate card for a card model, a fee for a fixed fee) is the
services' rule, one way to check it, and its messages are put next to the field.
"""

import datetime
import re

from django import forms

from allocation.choices import MAPPING_RULE_TAGS, ChargeModel, Treatment
from allocation.models import CostCenter, MappingRule, MappingVersion
from allocation.models.mapping import FEE_DECIMAL_PLACES, FEE_MAX_DIGITS, MARGIN_DECIMAL_PLACES, MARGIN_MAX_DIGITS
from pricing.choices import PriceBookKind
from pricing.models import PriceBook

__all__ = [
    "MATCH_FIELD_PREFIX",
    "MappingDraftForm",
    "MappingPreviewForm",
    "MappingRuleForm",
    "MappingSignForm",
    "service_errors_to_form",
]

MATCH_FIELD_PREFIX = "match_"
_MONTH = re.compile(r"(\d{4})-(\d{2})")
_MONTH_WIDGET = {"type": "month", "pattern": r"\d{4}-\d{2}", "placeholder": "YYYY-MM"}
# Short enough for a select; the rules table explains each in full on hover.
CHARGE_MODEL_CHOICES = [
    (ChargeModel.DIRECT, "Direct attribution"),
    (ChargeModel.PASSTHROUGH, "Passthrough (cost + margin)"),
    (ChargeModel.RATE_CARD, "Rate card (showback)"),
    (ChargeModel.HYBRID, "Hybrid (card + passthrough)"),
    (ChargeModel.COST_PLUS, "Cost plus margin"),
    (ChargeModel.FIXED_FEE, "Fixed monthly fee"),
]
EMPTY_COPY = "empty"


class _CostCenterChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: CostCenter) -> str:
        return f"{obj.code} · {obj.name}"


class _RateCardChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: PriceBook) -> str:
        return f"{obj.code} · {obj.name}"


def _month(value: str) -> datetime.date:
    """The first day of a month written YYYY-MM."""
    found = _MONTH.fullmatch(value.strip())
    if found is None:
        raise forms.ValidationError("Enter a month as YYYY-MM.")
    try:
        return datetime.date(int(found[1]), int(found[2]), 1)
    except ValueError:
        raise forms.ValidationError(f"{value} is not a month; enter it as YYYY-MM.") from None


class _MonthField(forms.CharField):
    """A month as YYYY-MM; plain text once it holds an error, so the user sees what they typed."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 7)
        kwargs.setdefault("widget", forms.TextInput(attrs=dict(_MONTH_WIDGET)))
        super().__init__(**kwargs)


class _MonthForm(forms.Form):
    def full_clean(self) -> None:
        super().full_clean()
        for name in self.errors:
            if name in self.fields and isinstance(self.fields[name], _MonthField):
                # A month input cannot hold a malformed value; browsers blank it.
                self.fields[name].widget.input_type = "text"


class MappingDraftForm(_MonthForm):
    name = forms.CharField(label="Name", max_length=200, error_messages={"required": "Enter a name for the draft."})
    effective_from = _MonthField(
        label="First month it applies to",
        help_text="YYYY-MM. A mapping takes effect at a month's start only.",
        error_messages={"required": "Enter the first month as YYYY-MM."},
    )
    copy_from = forms.ChoiceField(label="Start from")

    def __init__(self, *args, versions: list[MappingVersion], in_force: MappingVersion | None, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [
            (str(v.number), f"A copy of v{v.number} · {v.name} ({v.get_status_display().lower()})") for v in versions
        ]
        choices.append((EMPTY_COPY, "Empty: no rules, no pools"))
        self.fields["copy_from"].choices = choices
        self.fields["copy_from"].initial = str(in_force.number) if in_force else (choices[0][0])
        self._versions = {str(v.number): v for v in versions}

    def clean_effective_from(self) -> datetime.date:
        return _month(self.cleaned_data["effective_from"])

    def clean_copy_from(self) -> MappingVersion | None:
        value = self.cleaned_data["copy_from"]
        return None if value == EMPTY_COPY else self._versions[value]


class MappingRuleForm(forms.Form):
    """One rule: a pattern per tag (blank = any value), then who pays and how."""

    cost_center = _CostCenterChoice(
        label="Cost center",
        queryset=CostCenter.objects.order_by("code"),
        to_field_name="code",
        empty_label="Choose a cost center",
        error_messages={"required": "Choose the cost center that pays."},
    )
    charge_model = forms.ChoiceField(label="Charge model", choices=CHARGE_MODEL_CHOICES, initial=ChargeModel.DIRECT)
    treatment = forms.ChoiceField(label="Treatment", choices=Treatment.choices, initial=Treatment.CHARGEBACK)
    margin_percent = forms.DecimalField(
        label="Margin %",
        required=False,
        min_value=0,
        max_digits=MARGIN_MAX_DIGITS,
        decimal_places=MARGIN_DECIMAL_PLACES,
        help_text="Passthrough, hybrid and cost plus only.",
        widget=forms.TextInput(attrs={"inputmode": "decimal"}),
    )
    rate_card = _RateCardChoice(
        label="Rate card",
        required=False,
        queryset=PriceBook.objects.filter(kind=PriceBookKind.RATE_CARD).order_by("code"),
        to_field_name="code",
        empty_label="None",
        help_text="Rate card and hybrid only.",
    )
    fixed_fee = forms.DecimalField(
        label="Fixed monthly fee",
        required=False,
        min_value=0,
        max_digits=FEE_MAX_DIGITS,
        decimal_places=FEE_DECIMAL_PLACES,
        help_text="Fixed fee only.",
        widget=forms.TextInput(attrs={"inputmode": "decimal"}),
    )
    service_owner = _CostCenterChoice(
        label="Service owner",
        required=False,
        queryset=CostCenter.objects.order_by("code"),
        to_field_name="code",
        empty_label="None",
        help_text="The cost center providing a shared service.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for tag in MAPPING_RULE_TAGS:
            attrs = {"autocomplete": "off", "spellcheck": "false"}
            self.fields[f"{MATCH_FIELD_PREFIX}{tag}"] = forms.CharField(
                label=tag.replace("_", " ").capitalize(),
                required=False,
                max_length=200,
                strip=True,
                widget=forms.TextInput(attrs=attrs),
            )

    @classmethod
    def initial_for(cls, rule: MappingRule) -> dict:
        initial = {
            "cost_center": rule.cost_center.code,
            "charge_model": rule.charge_model,
            "treatment": rule.treatment,
            "margin_percent": rule.margin_percent,
            "rate_card": rule.rate_card.code if rule.rate_card else None,
            "fixed_fee": rule.fixed_fee,
            "service_owner": rule.service_owner.code if rule.service_owner else None,
        }
        initial.update({f"{MATCH_FIELD_PREFIX}{tag}": pattern for tag, pattern in rule.match.items()})
        return initial

    def match_fields(self) -> list:
        return [self[f"{MATCH_FIELD_PREFIX}{tag}"] for tag in MAPPING_RULE_TAGS]

    def setting_fields(self) -> list:
        return [self[name] for name in self.declared_fields]

    def service_arguments(self) -> dict:
        """The cleaned values as the rule services take them."""
        data = self.cleaned_data
        return {
            "match": {
                tag: data[f"{MATCH_FIELD_PREFIX}{tag}"]
                for tag in MAPPING_RULE_TAGS
                if data.get(f"{MATCH_FIELD_PREFIX}{tag}")
            },
            **{name: data.get(name) for name in self.declared_fields},
        }


class MappingSignForm(forms.Form):
    reason = forms.CharField(
        label="Note for the audit trail (optional)",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="For example the review or ticket that approved it.",
    )


class MappingPreviewForm(_MonthForm):
    period = _MonthField(label="Month", error_messages={"required": "Enter a month as YYYY-MM."})

    def clean_period(self) -> str:
        return f"{_month(self.cleaned_data['period']):%Y-%m}"


def service_errors_to_form(form: forms.Form, extra: dict, fallback: str) -> None:
    """A service's refusal, each message beside the field it names ("Rate card is required ...")."""
    fields = extra.get("fields") or {}
    if not fields:
        form.add_error(None, fallback)
        return
    for name, messages in fields.items():
        target = name if name in form.fields else None
        label = form.fields[name].label if target else name.replace("_", " ").capitalize()
        for message in messages:
            form.add_error(target, f"{label} {message}.")
