"""Drafting a mapping version in the web UI and signing it off.

A signed version is immutable; the one transition draft -> signed is
`mapping_sign`, which checks the actor's role, locks the row and writes its audit
event in the same transaction.
"""

import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from allocation.access import FINANCE_APPROVER, GRANTS, Permission, access_require
from allocation.choices import (
    MAPPING_RULE_TAGS,
    ChargeModel,
    MappingVersionStatus,
    Treatment,
)
from allocation.models import (
    CostCenter,
    MappingRule,
    MappingVersion,
    MappingVersionEvent,
    SharedCostPool,
)
from allocation.services.mapping.files import (
    ERROR_CODE,
    field_date,
    field_text,
    mapping_content,
    mapping_content_hash,
    match_patterns,
    rule_problems,
)
from pricing.errors import Conflict, NotFound, ValidationFailed
from pricing.models import PriceBook

__all__ = [
    "MappingAlreadySigned",
    "NOT_FINANCE_APPROVER",
    "NOT_MAPPING_EDITOR",
    "SignedVersionImmutable",
    "mapping_draft_create",
    "mapping_draft_rule_add",
    "mapping_draft_rule_delete",
    "mapping_draft_rule_move",
    "mapping_draft_rule_update",
    "mapping_sign",
]


class MappingAlreadySigned(Conflict):
    code = "already_signed"


class SignedVersionImmutable(Conflict):
    code = "signed_version_immutable"


NOT_MAPPING_EDITOR = "not_mapping_editor"
NOT_FINANCE_APPROVER = "not_finance_approver"


def _require_editor(actor) -> None:
    name = getattr(actor, "username", None) or "nobody"
    editors = ", ".join(sorted(GRANTS[Permission.EDIT_MAPPING]))
    access_require(
        actor,
        Permission.EDIT_MAPPING,
        doing="edit mapping drafts",
        code=NOT_MAPPING_EDITOR,
        message=f"{name} may not edit mapping drafts; that takes one of the groups {editors}",
    )


def _require_approver(actor) -> None:
    name = getattr(actor, "username", None) or "nobody"
    access_require(
        actor,
        Permission.SIGN_OFF,
        doing="sign a mapping off",
        code=NOT_FINANCE_APPROVER,
        message=f"{name} is not a finance approver; only the {FINANCE_APPROVER} group may sign a mapping off",
    )


@transaction.atomic
def mapping_sign(*, version: MappingVersion, actor, reason: str = "") -> MappingVersion:
    """Draft -> signed: the only transition. From then on the version is immutable."""
    _require_approver(actor)
    locked = MappingVersion.objects.select_for_update().get(pk=version.pk)
    if locked.status != MappingVersionStatus.DRAFT:
        raise MappingAlreadySigned(
            f"mapping version {locked.number} is already signed (by {locked.signed_by}, {locked.signed_at:%Y-%m-%d})",
            extra={"version": locked.number},
        )
    if not locked.rules.exists():
        raise ValidationFailed(
            f"mapping version {locked.number} has no rules: signed, it would leave all usage unallocated",
            code="mapping_empty",
            extra={"version": locked.number},
        )
    content = mapping_content(version=locked)
    from_status = locked.status
    locked.content_hash = mapping_content_hash(content)
    locked.status = MappingVersionStatus.SIGNED
    locked.signed_by = actor
    locked.signed_at = timezone.now()
    locked.save(update_fields=["content_hash", "status", "signed_by", "signed_at"])
    MappingVersionEvent.objects.create(
        version=locked,
        actor=actor,
        from_status=from_status,
        to_status=locked.status,
        reason=reason,
        snapshot={"content_hash": locked.content_hash, **content},
    )
    return locked


def _locked_draft(version: MappingVersion) -> MappingVersion:
    """The version's row, locked; a signed version is refused (it is immutable)."""
    locked = MappingVersion.objects.select_for_update().get(pk=version.pk)
    if locked.status != MappingVersionStatus.DRAFT:
        raise SignedVersionImmutable(
            f"mapping version {locked.number} is signed and cannot change; load a new version instead",
            extra={"version": locked.number},
        )
    return locked


def _draft_rule_checked(
    *,
    match: dict[str, str] | None,
    charge_model: str,
    treatment: str,
    margin_percent: Decimal | None,
    rate_card: PriceBook | None,
    fixed_fee: Decimal | None,
) -> dict[str, str]:
    """The rule's clean match patterns; a rule with problems is refused, naming each field.

    `extra["fields"]` maps each field to its messages, so a form can show them beside it.
    """
    clean, problems = match_patterns(match or {}, MAPPING_RULE_TAGS)
    found: list[tuple[str, str]] = [("match", problem) for problem in problems]
    if charge_model not in ChargeModel.values:
        found.append(("charge_model", f"{charge_model!r} is not a charge model"))
    if treatment not in Treatment.values:
        found.append(("treatment", f"{treatment!r} is not a treatment"))
    if margin_percent is not None and margin_percent < 0:
        found.append(("margin_percent", f"must not be negative: {margin_percent}"))
    if fixed_fee is not None and fixed_fee < 0:
        found.append(("fixed_fee", f"must not be negative: {fixed_fee}"))
    found += rule_problems(
        charge_model=charge_model, margin_percent=margin_percent, rate_card=rate_card, fixed_fee=fixed_fee
    )
    if found:
        messages = [f"{field_name} {message}" for field_name, message in found]
        fields: dict[str, list[str]] = {}
        for field_name, message in found:
            fields.setdefault(field_name, []).append(message)
        raise ValidationFailed(
            f"rule refused: {'; '.join(messages)}", code=ERROR_CODE, extra={"errors": messages, "fields": fields}
        )
    return clean


@transaction.atomic
def mapping_draft_rule_add(
    *,
    version: MappingVersion,
    cost_center: CostCenter,
    charge_model: str,
    match: dict[str, str] | None = None,
    treatment: str = Treatment.CHARGEBACK,
    margin_percent: Decimal | None = None,
    rate_card: PriceBook | None = None,
    fixed_fee: Decimal | None = None,
    service_owner: CostCenter | None = None,
) -> MappingRule:
    """Append a rule to a draft version; a signed version is refused."""
    locked = _locked_draft(version)
    clean = _draft_rule_checked(
        match=match,
        charge_model=charge_model,
        treatment=treatment,
        margin_percent=margin_percent,
        rate_card=rate_card,
        fixed_fee=fixed_fee,
    )
    position = (locked.rules.aggregate(last=Max("position"))["last"] or 0) + 1
    return MappingRule.objects.create(
        version=locked,
        position=position,
        match=clean,
        cost_center=cost_center,
        charge_model=charge_model,
        treatment=treatment,
        margin_percent=margin_percent,
        rate_card=rate_card,
        fixed_fee=fixed_fee,
        service_owner=service_owner,
    )


# Positions are moved through a band above any real one, so that no row ever
# collides with the unique (version, position) while the rules are renumbered.
_RENUMBER_OFFSET = 1_000_000


@transaction.atomic
def mapping_draft_create(
    *,
    name: str,
    effective_from: datetime.date | str,
    actor,
    from_version: MappingVersion | None = None,
) -> MappingVersion:
    """A new draft: a copy of `from_version`'s rules and pools, or empty when None.

    The copy is the usual way to change a signed mapping, which is immutable.
    """
    _require_editor(actor)
    found: dict[str, list[str]] = {}
    clean_name = field_text(name)
    if clean_name is None:
        found["name"] = ["is required"]
    elif len(clean_name) > MappingVersion._meta.get_field("name").max_length:
        found["name"] = [f"must be at most {MappingVersion._meta.get_field('name').max_length} characters"]
    day, problem = field_date(effective_from)
    if problem:
        found["effective_from"] = [problem]
    if found:
        messages = [f"{field_name} {message}" for field_name, items in found.items() for message in items]
        raise ValidationFailed(
            f"draft refused: {'; '.join(messages)}", code=ERROR_CODE, extra={"errors": messages, "fields": found}
        )
    # Lock the newest version so two drafts cannot take the same number.
    last = MappingVersion.objects.select_for_update().order_by("-number").first()
    version = MappingVersion.objects.create(
        number=(last.number if last else 0) + 1,
        name=clean_name,
        effective_from=day,
        source=f"copy of version {from_version.number}" if from_version else "",
        created_by=actor,
    )
    if from_version is None:
        return version
    MappingRule.objects.bulk_create(
        MappingRule(
            version=version,
            position=rule.position,
            match=dict(rule.match),
            cost_center_id=rule.cost_center_id,
            charge_model=rule.charge_model,
            treatment=rule.treatment,
            margin_percent=rule.margin_percent,
            rate_card_id=rule.rate_card_id,
            fixed_fee=rule.fixed_fee,
            service_owner_id=rule.service_owner_id,
        )
        for rule in from_version.rules.order_by("position")
    )
    for pool in from_version.pools.prefetch_related("target_cost_centers").order_by("code"):
        copy = SharedCostPool.objects.create(
            version=version,
            code=pool.code,
            name=pool.name,
            match=dict(pool.match),
            method=pool.method,
            driver=pool.driver,
            treatment=pool.treatment,
        )
        copy.target_cost_centers.set(pool.target_cost_centers.all())
    return version


@transaction.atomic
def mapping_draft_rule_update(
    *,
    rule: MappingRule,
    cost_center: CostCenter,
    charge_model: str,
    match: dict[str, str] | None = None,
    treatment: str = Treatment.CHARGEBACK,
    margin_percent: Decimal | None = None,
    rate_card: PriceBook | None = None,
    fixed_fee: Decimal | None = None,
    service_owner: CostCenter | None = None,
) -> MappingRule:
    """Replace every field of a draft's rule (its position stays); a signed version is refused."""
    _locked_draft(rule.version)
    clean = _draft_rule_checked(
        match=match,
        charge_model=charge_model,
        treatment=treatment,
        margin_percent=margin_percent,
        rate_card=rate_card,
        fixed_fee=fixed_fee,
    )
    rule = MappingRule.objects.get(pk=rule.pk)
    rule.match = clean
    rule.cost_center = cost_center
    rule.charge_model = charge_model
    rule.treatment = treatment
    rule.margin_percent = margin_percent
    rule.rate_card = rate_card
    rule.fixed_fee = fixed_fee
    rule.service_owner = service_owner
    rule.save()
    return rule


def _renumber(version: MappingVersion, rule_ids: list[int]) -> None:
    """Positions 1..n in the order given: two set-based passes, never a duplicate position."""
    version.rules.update(position=F("position") + _RENUMBER_OFFSET)
    MappingRule.objects.bulk_update(
        [MappingRule(pk=pk, position=index) for index, pk in enumerate(rule_ids, start=1)], ["position"]
    )


@transaction.atomic
def mapping_draft_rule_delete(*, rule: MappingRule) -> None:
    """Remove a draft's rule; the rules after it move up one place."""
    locked = _locked_draft(rule.version)
    MappingRule.objects.filter(pk=rule.pk, version=locked).delete()
    _renumber(locked, list(locked.rules.order_by("position").values_list("pk", flat=True)))


@transaction.atomic
def mapping_draft_rule_move(*, rule: MappingRule, position: int) -> MappingRule:
    """Move a draft's rule to `position` (1 = matched first); the others keep their order."""
    locked = _locked_draft(rule.version)
    order = list(locked.rules.order_by("position").values_list("pk", flat=True))
    if rule.pk not in order:
        raise NotFound(f"rule {rule.pk} is not in mapping version {locked.number}", code="rule_not_found")
    if not 1 <= position <= len(order):
        message = f"must be between 1 and {len(order)}, not {position}"
        raise ValidationFailed(
            f"rule refused: position {message}",
            code=ERROR_CODE,
            extra={"errors": [f"position {message}"], "fields": {"position": [message]}},
        )
    order.remove(rule.pk)
    order.insert(position - 1, rule.pk)
    _renumber(locked, order)
    return MappingRule.objects.get(pk=rule.pk)
