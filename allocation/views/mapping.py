"""Pages of mapping versions: the versions, a version's rules and pools with the
editing of a draft, what a draft would move in a month, and the sign-off.

Views are thin: they read through selectors and write through the mapping
services, which check roles and drafts; views only shape values for display
(money goes to the templates as Decimals and becomes "$27.55" through the `money`
template filters of `pricing.formatting`, never floats).
"""

import re
from collections.abc import Callable
from decimal import Decimal
from functools import wraps

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from allocation.access import GRANTS, Permission, access_allows
from allocation.choices import ChargeModel, MappingVersionStatus, PoolDriver, PoolMethod, UnallocatedReason
from allocation.forms.mapping import (
    MappingDraftForm,
    MappingPreviewForm,
    MappingRuleForm,
    MappingSignForm,
    service_errors_to_form,
)
from allocation.models import MappingRule, MappingVersion
from allocation.selectors.ledger import usage_latest_period
from allocation.selectors.mapping import mapping_preview_inputs, mapping_version_in_force, mapping_versions
from allocation.services.mapping.drafts import (
    NOT_MAPPING_EDITOR,
    SignedVersionImmutable,
    mapping_draft_create,
    mapping_draft_rule_add,
    mapping_draft_rule_delete,
    mapping_draft_rule_move,
    mapping_draft_rule_update,
    mapping_sign,
)
from allocation.services.mapping.files import mapping_export
from allocation.services.mapping.preview import mapping_preview
from pricing.errors import ApplicationError, NotAllowed, ValidationFailed
from pricing.periods import Period

__all__ = [
    "mapping_rule_add",
    "mapping_rule_delete",
    "mapping_rule_edit",
    "mapping_rule_move",
    "mapping_sign_off",
    "mapping_version_detail",
    "mapping_version_export",
    "mapping_version_list",
    "mapping_version_preview",
]

CHARGE_MODEL_LABELS: dict[str, str] = {
    ChargeModel.DIRECT: "Direct",
    ChargeModel.PASSTHROUGH: "Passthrough",
    ChargeModel.RATE_CARD: "Rate card",
    ChargeModel.HYBRID: "Hybrid",
    ChargeModel.COST_PLUS: "Cost plus",
    ChargeModel.FIXED_FEE: "Fixed fee",
}
UNALLOCATED_PREFIX = "unallocated:"
EDITORS_TEXT = "finance approvers, finance analysts and platform admins"


def _source_text(source: str) -> str:
    """Where a version came from, for a reader: a loaded file by its name alone (the server's
    directories mean nothing to a user and say too much), else the origin as recorded."""
    source = source.strip()
    if not source:
        return ""
    name = re.split(r"[\\/]", source.rstrip("\\/"))[-1]
    if name != source or name.lower().endswith((".yaml", ".yml")):
        return f"Loaded from {name}"
    return source[:1].upper() + source[1:]


def _where_label(code: str, names: dict[str, str]) -> str:
    """A cost center as "CC-110 Search"; an unallocated bucket by its reason."""
    if code.startswith(UNALLOCATED_PREFIX):
        reason = code.removeprefix(UNALLOCATED_PREFIX)
        return f"Unallocated: {UnallocatedReason(reason).label.lower()}" if reason in UnallocatedReason.values else code
    return f"{code} {names.get(code, '')}".strip()


def _refused(request: HttpRequest, error: ApplicationError, version: MappingVersion | None = None) -> HttpResponse:
    """A refusal the user can act on: what was refused, why, and the way back."""
    context = {
        "error": error,
        "version": version,
        "editors_text": EDITORS_TEXT,
        "user_can_edit": access_allows(request.user, Permission.EDIT_MAPPING),
    }
    return render(request, "allocation/mapping/mapping_refused.html", context, status=error.http_status)


def _not_an_editor(request: HttpRequest, version: MappingVersion | None) -> HttpResponse:
    error = NotAllowed(
        f"{request.user.get_username()} may not edit mapping drafts: that is for {EDITORS_TEXT} "
        f"(groups {', '.join(sorted(GRANTS[Permission.EDIT_MAPPING]))}).",
        code=NOT_MAPPING_EDITOR,
    )
    return _refused(request, error, version)


def _editors_only(view: Callable) -> Callable:
    """Editing views answer 403 to anyone outside the editor groups (`Permission.EDIT_MAPPING`)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not access_allows(request.user, Permission.EDIT_MAPPING):
            return _not_an_editor(request, MappingVersion.objects.filter(number=kwargs.get("number")).first())
        return view(request, *args, **kwargs)

    return wrapped


def _rule_row(rule: MappingRule) -> dict:
    return {
        "rule": rule,
        "match": sorted(rule.match.items()),
        "charge_model": CHARGE_MODEL_LABELS.get(rule.charge_model, rule.charge_model),
        "charge_model_long": rule.get_charge_model_display(),
        "treatment": rule.treatment.capitalize(),
        "margin": f"{rule.margin_percent.normalize():f}%" if rule.margin_percent is not None else "",
        "fee": rule.fixed_fee,
    }


def _pool_row(pool) -> dict:
    return {
        "pool": pool,
        "match": sorted(pool.match.items()),
        "method": PoolMethod(pool.method).label if pool.method in PoolMethod.values else pool.method,
        "driver": PoolDriver(pool.driver).label if pool.driver in PoolDriver.values else pool.driver,
        "targets": [center.code for center in pool.target_cost_centers.all()],
        "treatment": pool.treatment.capitalize(),
    }


def _version_or_404(number: int) -> MappingVersion:
    return get_object_or_404(MappingVersion.objects.select_related("signed_by", "created_by"), number=number)


# --- The versions ---------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def mapping_version_list(request: HttpRequest) -> HttpResponse:
    versions = list(mapping_versions())
    in_force = mapping_version_in_force(period=Period.current())
    can_edit = access_allows(request.user, Permission.EDIT_MAPPING)
    if request.method == "POST" and not can_edit:
        return _not_an_editor(request, None)
    form = MappingDraftForm(
        request.POST if request.method == "POST" else None,
        versions=versions,
        in_force=in_force,
        initial={
            # The usual first month of a new draft: no month is re-mapped while it runs.
            "effective_from": Period.current().next,
            **({"copy_from": request.GET["from"]} if "from" in request.GET else {}),
        },
    )
    if request.method == "POST" and form.is_valid():
        try:
            draft = mapping_draft_create(
                name=form.cleaned_data["name"],
                effective_from=form.cleaned_data["effective_from"],
                from_version=form.cleaned_data["copy_from"],
                actor=request.user,
            )
        except ValidationFailed as error:
            service_errors_to_form(form, error.extra, error.message)
        else:
            copied = form.cleaned_data["copy_from"]
            source = f"a copy of v{copied.number}" if copied else "empty"
            messages.success(
                request, f"Created draft v{draft.number}, {source}. Edit its rules, preview, then sign off."
            )
            return redirect("mapping-version", number=draft.number)
    today = timezone.now().date()
    rows = [
        {
            "version": version,
            "in_force": in_force is not None and version.pk == in_force.pk,
            "scheduled": version.status == MappingVersionStatus.SIGNED and version.effective_from > today,
        }
        for version in versions
    ]
    context = {"rows": rows, "in_force": in_force, "form": form, "can_edit": can_edit, "editors_text": EDITORS_TEXT}
    return render(request, "allocation/mapping/mapping_version_list.html", context, status=400 if form.errors else 200)


def _detail_context(
    request: HttpRequest,
    version: MappingVersion,
    *,
    rule_form: MappingRuleForm | None = None,
    sign_form: MappingSignForm | None = None,
) -> dict:
    is_draft = version.status == MappingVersionStatus.DRAFT
    user_can_edit = access_allows(request.user, Permission.EDIT_MAPPING)
    can_edit = is_draft and user_can_edit
    rules = list(version.rules.select_related("cost_center", "service_owner", "rate_card").order_by("position"))
    in_force = mapping_version_in_force(period=Period.current())
    return {
        "version": version,
        "source": _source_text(version.source),
        "is_draft": is_draft,
        "can_edit": can_edit,
        "user_can_edit": user_can_edit,
        "can_sign": is_draft and access_allows(request.user, Permission.SIGN_OFF),
        "in_force": in_force,
        "is_in_force": in_force is not None and in_force.pk == version.pk,
        # A draft for a month already begun would re-map it at its next run: say so before sign-off.
        "starts_before_next_month": is_draft and Period.of(version.effective_from) <= Period.current(),
        "rules": [_rule_row(rule) for rule in rules],
        "rule_count": len(rules),
        "pools": [_pool_row(pool) for pool in version.pools.prefetch_related("target_cost_centers").order_by("code")],
        "events": list(version.events.select_related("actor").order_by("at", "id")),
        "rule_form": rule_form if rule_form is not None else (MappingRuleForm() if can_edit else None),
        "sign_form": sign_form if sign_form is not None else MappingSignForm(),
        "editors_text": EDITORS_TEXT,
    }


@require_GET
def mapping_version_detail(request: HttpRequest, number: int) -> HttpResponse:
    version = _version_or_404(number)
    return render(request, "allocation/mapping/mapping_version_detail.html", _detail_context(request, version))


@require_GET
def mapping_version_export(request: HttpRequest, number: int) -> HttpResponse:
    version = _version_or_404(number)
    response = HttpResponse(mapping_export(version=version), content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="mapping-v{version.number}.yaml"'
    return response


# --- Editing a draft ------------------------------------------------------------------


def _rule_url(rule: MappingRule | None, version: MappingVersion) -> str:
    url = reverse("mapping-version", kwargs={"number": version.number})
    return f"{url}#rule-{rule.pk}" if rule is not None else f"{url}#rules-heading"


@require_POST
@_editors_only
def mapping_rule_add(request: HttpRequest, number: int) -> HttpResponse:
    version = _version_or_404(number)
    form = MappingRuleForm(request.POST)
    if form.is_valid():
        try:
            rule = mapping_draft_rule_add(version=version, **form.service_arguments())
        except ValidationFailed as error:
            service_errors_to_form(form, error.extra, error.message)
        except ApplicationError as error:
            return _refused(request, error, version)
        else:
            messages.success(request, f"Added rule {rule.position}: it is matched after the rules above it.")
            return redirect(_rule_url(rule, version))
    context = _detail_context(request, version, rule_form=form)
    return render(request, "allocation/mapping/mapping_version_detail.html", context, status=400)


@require_http_methods(["GET", "POST"])
@_editors_only
def mapping_rule_edit(request: HttpRequest, number: int, rule_id: int) -> HttpResponse:
    version = _version_or_404(number)
    rule = get_object_or_404(MappingRule.objects.select_related("cost_center"), pk=rule_id, version=version)
    if version.status != MappingVersionStatus.DRAFT:
        # The service refuses it too; a signed version offers no form to fill in vain.
        return _refused(request, _signed_error(version), version)
    if request.method == "POST":
        form = MappingRuleForm(request.POST)
        if form.is_valid():
            try:
                mapping_draft_rule_update(rule=rule, **form.service_arguments())
            except ValidationFailed as error:
                service_errors_to_form(form, error.extra, error.message)
            except ApplicationError as error:
                return _refused(request, error, version)
            else:
                messages.success(request, f"Saved rule {rule.position}.")
                return redirect(_rule_url(rule, version))
    else:
        form = MappingRuleForm(initial=MappingRuleForm.initial_for(rule))
    context = {"version": version, "rule": rule, "row": _rule_row(rule), "form": form}
    return render(request, "allocation/mapping/mapping_rule_edit.html", context, status=400 if form.errors else 200)


def _signed_error(version: MappingVersion) -> ApplicationError:
    return SignedVersionImmutable(
        f"Mapping v{version.number} is signed off and cannot change. Start a new draft from it instead.",
        extra={"version": version.number},
    )


@require_POST
@_editors_only
def mapping_rule_delete(request: HttpRequest, number: int, rule_id: int) -> HttpResponse:
    version = _version_or_404(number)
    rule = get_object_or_404(MappingRule, pk=rule_id, version=version)
    try:
        mapping_draft_rule_delete(rule=rule)
    except ApplicationError as error:
        return _refused(request, error, version)
    messages.success(request, f"Deleted rule {rule.position}; the rules after it moved up one place.")
    return redirect(_rule_url(None, version))


@require_POST
@_editors_only
def mapping_rule_move(request: HttpRequest, number: int, rule_id: int) -> HttpResponse:
    version = _version_or_404(number)
    rule = get_object_or_404(MappingRule, pk=rule_id, version=version)
    try:
        position = int(request.POST.get("position", ""))
    except ValueError:
        position = 0
    try:
        moved = mapping_draft_rule_move(rule=rule, position=position)
    except ApplicationError as error:
        return _refused(request, error, version)
    messages.success(request, f"Moved rule {rule.position} to position {moved.position}.")
    return redirect(_rule_url(moved, version))


# --- Sign-off -------------------------------------------------------------------------


@require_POST
def mapping_sign_off(request: HttpRequest, number: int) -> HttpResponse:
    version = _version_or_404(number)
    form = MappingSignForm(request.POST)
    if not form.is_valid():
        context = _detail_context(request, version, sign_form=form)
        return render(request, "allocation/mapping/mapping_version_detail.html", context, status=400)
    try:
        signed = mapping_sign(version=version, actor=request.user, reason=form.cleaned_data["reason"])
    except ApplicationError as error:
        return _refused(request, error, version)
    messages.success(
        request,
        f"Signed off v{signed.number}. It is immutable now and applies from {signed.effective_from:%Y-%m} on.",
    )
    return redirect("mapping-version", number=signed.number)


# --- Preview --------------------------------------------------------------------------


def _preview_context(version: MappingVersion, period: Period) -> dict:
    inputs = mapping_preview_inputs(period=period)
    context: dict = {"inputs": inputs, "period": period}
    if not inputs["invoices"]:
        return context
    try:
        preview = mapping_preview(version=version, period=period)
    except ApplicationError as error:
        context["preview_error"] = error.message
        return context
    names = {row["code"]: row["name"] for row in preview["cost_centers"]}
    centers = [
        {
            "label": _where_label(row["code"], names),
            "code": row["code"],
            "unallocated": row["code"].startswith(UNALLOCATED_PREFIX),
            "current": row["current"],
            "draft": row["draft"],
            "change": row["change"],
            "direction": "" if not row["change"] else ("up" if row["change"] > 0 else "down"),
        }
        for row in preview["cost_centers"]
    ]
    moved = sum((move["amount"] for move in preview["moves"]), Decimal(0))
    context.update(
        preview=preview,
        centers=centers,
        changed_count=sum(1 for row in preview["cost_centers"] if row["change"]),
        moves=[
            {
                "from": _where_label(move["from"], names),
                "to": _where_label(move["to"], names),
                "amount": move["amount"],
            }
            for move in preview["moves"]
        ],
        moved_total=moved,
        total_current=sum((row["current"] for row in preview["cost_centers"]), Decimal(0)),
        total_draft=sum((row["draft"] for row in preview["cost_centers"]), Decimal(0)),
        total_change=sum((row["change"] for row in preview["cost_centers"]), Decimal(0)),
        same_version=preview["current_version"] == version.number,
    )
    return context


@require_GET
def mapping_version_preview(request: HttpRequest, number: int) -> HttpResponse:
    version = _version_or_404(number)
    form = MappingPreviewForm({"period": request.GET.get("period") or usage_latest_period()})
    context: dict = {"version": version, "form": form, "is_draft": version.status == MappingVersionStatus.DRAFT}
    if form.is_valid():
        period = form.cleaned_data["period"]
        context.update(_preview_context(version, period))
        context["takes_effect_later"] = Period.of(version.effective_from) > period
    return render(
        request, "allocation/mapping/mapping_version_preview.html", context, status=400 if form.errors else 200
    )
