"""Forms of the mapping pages: they gather input for the mapping services.

The forms check types (a known cost center, a number); whether the fields make
sense together (a rate card for a card model, a fee for a fixed fee) is the
services' rule, one way to check it, and its messages are put next to the field.
"""

import datetime

from django import forms

from allocation.choices import MAPPING_RULE_TAGS, ChargeModel, Treatment
from allocation.models import CostCenter, MappingRule, MappingVersion
from allocation.models.mapping import FEE_DECIMAL_PLACES, FEE_MAX_DIGITS, MARGIN_DECIMAL_PLACES, MARGIN_MAX_DIGITS
from pricing.choices import PriceBookKind
from pricing.models import PriceBook
from pricing.periods import PeriodFormField

__all__ = [
    "MATCH_FIELD_PREFIX",
    "MappingDraftForm",
    "MappingPreviewForm",
    "MappingRuleForm",
    "MappingSignForm",
    "service_errors_to_form",
]

MATCH_FIELD_PREFIX = "match_"
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
# How the mapping pages word a month they cannot read (PeriodFormField's own keys).
MONTH_ERRORS = {
    "invalid": "Enter a month as YYYY-MM.",
    "not_a_month": "%(value)s is not a month; enter it as YYYY-MM.",
}


class _CostCenterChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: CostCenter) -> str:
        return f"{obj.code} · {obj.name}"


class _RateCardChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: PriceBook) -> str:
        return f"{obj.code} · {obj.name}"


class MappingDraftForm(forms.Form):
    name = forms.CharField(label="Name", max_length=200, error_messages={"required": "Enter a name for the draft."})
    effective_from = PeriodFormField(
        label="First month it applies to",
        help_text="YYYY-MM. A mapping takes effect at a month's start only.",
        error_messages={
            "required": "Enter the first month as YYYY-MM.",
            **MONTH_ERRORS,
        },
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
        return self.cleaned_data["effective_from"].first_day

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


class MappingPreviewForm(forms.Form):
    period = PeriodFormField(
        label="Month",
        error_messages={
            "required": "Enter a month as YYYY-MM.",
            **MONTH_ERRORS,
        },
    )


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
