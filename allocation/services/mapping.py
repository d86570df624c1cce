"""Mapping versions as code: load a draft from YAML, sign it off, and read the one in force.

A file is refused whole when anything in it is invalid: every check runs
before the first write, all errors are collected and name the file line, the
rule or pool and the field. A signed version is immutable; the one transition
draft -> signed is `mapping_sign`, which checks the actor's role, locks the
row and writes its audit event in the same transaction.
"""

import datetime
import hashlib
import json
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction
from django.db.models import Count, F, Max, QuerySet
from django.utils import timezone

from allocation.choices import (
    MAPPING_RULE_TAGS,
    POOL_MATCH_FIELDS,
    ChargeModel,
    MappingVersionStatus,
    PoolDriver,
    PoolMethod,
    Treatment,
)
from allocation.models import (
    CostCenter,
    MappingRule,
    MappingVersion,
    MappingVersionEvent,
    ProviderInvoice,
    SharedCostPool,
)
from allocation.selectors.ledger import period_bounds, usage_lines_in_period
from allocation.services.roles import FINANCE_ANALYST, FINANCE_APPROVER, PLATFORM_ADMIN, has_role
from pricing.choices import PriceBookKind
from pricing.config_files import yaml_parse
from pricing.errors import ApplicationError, Conflict, NotFound, ValidationFailed
from pricing.models import PriceBook
from pricing.money import decimal_text, parse_decimal

__all__ = [
    "FINANCE_APPROVER_GROUP",
    "MAPPING_EDITOR_GROUPS",
    "NotFinanceApprover",
    "NotMappingEditor",
    "MappingAlreadySigned",
    "SignedVersionImmutable",
    "mapping_content",
    "mapping_draft_create",
    "mapping_draft_rule_add",
    "mapping_draft_rule_delete",
    "mapping_draft_rule_move",
    "mapping_draft_rule_update",
    "mapping_export",
    "mapping_load",
    "mapping_load_file",
    "mapping_preview_inputs",
    "mapping_rule_for",
    "mapping_sign",
    "mapping_user_can_edit",
    "mapping_user_can_sign",
    "mapping_version_in_force",
    "mapping_versions",
]

FINANCE_APPROVER_GROUP = FINANCE_APPROVER
# Who may draft and edit (never sign): DESIGN.md "Roles".
MAPPING_EDITOR_GROUPS: tuple[str, ...] = (FINANCE_APPROVER, FINANCE_ANALYST, PLATFORM_ADMIN)
ERROR_CODE = "mapping_invalid"
TOP_FIELDS: tuple[str, ...] = ("name", "effective_from", "rules", "pools")
RULE_FIELDS: tuple[str, ...] = (
    "match",
    "cost_center",
    "charge_model",
    "treatment",
    "margin_percent",
    "rate_card",
    "fixed_fee",
    "service_owner",
)
POOL_FIELDS: tuple[str, ...] = ("code", "name", "match", "method", "driver", "cost_centers", "treatment")
_CARD_MODELS = {ChargeModel.RATE_CARD, ChargeModel.HYBRID}
_MARGIN_MODELS = {ChargeModel.PASSTHROUGH, ChargeModel.COST_PLUS, ChargeModel.HYBRID}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class NotFinanceApprover(ApplicationError):
    code = "not_finance_approver"
    http_status = 403


class MappingAlreadySigned(Conflict):
    code = "already_signed"


class SignedVersionImmutable(Conflict):
    code = "signed_version_immutable"


class NotMappingEditor(ApplicationError):
    code = "not_mapping_editor"
    http_status = 403


class _Errors:
    """Messages naming file:line, the rule or pool, and the field; sorted in file order."""

    def __init__(self, source: str, lines: Mapping[tuple, int] | None):
        self.source = source
        self.lines = lines or {}
        self._found: list[tuple[float, int, str]] = []

    @property
    def messages(self) -> list[str]:
        return [message for *_, message in sorted(self._found)]

    def add(self, section: str, index: int | None, field_name: str | None, message: str, label: str = "") -> None:
        where = section if index is None else f"{section}[{index}]"
        where += label
        line = self.lines.get((section, index, field_name)) or self.lines.get((section, index, None))
        prefix = f"{self.source}:{line}: " if line else f"{self.source}: "
        if field_name:
            text = f"{where}: {field_name} {message}"
        else:
            # A top-level field reads as a sentence: "effective_from must be ...".
            text = f"{where} {message}" if index is None else f"{where}: {message}"
        self._found.append((line or float("inf"), len(self._found), f"{prefix}{text}"))


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _date(value: Any) -> tuple[datetime.date | None, str | None]:
    if isinstance(value, datetime.datetime):
        return None, "must be a date (YYYY-MM-DD)"
    if isinstance(value, datetime.date):
        day = value
    elif isinstance(value, str) and _DATE.fullmatch(value.strip()):
        try:
            day = datetime.date.fromisoformat(value.strip())
        except ValueError:
            return None, f"is not a date (YYYY-MM-DD): {value!r}"
    else:
        return None, f"is not a date (YYYY-MM-DD): {value!r}"
    if day.day != 1:
        return None, f"must be a period start (the first of a month), not {day.isoformat()}"
    return day, None


def _patterns(value: Any, allowed: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """The match patterns and the problems with them."""
    if value is None:
        return {}, []
    if not isinstance(value, Mapping):
        return {}, [f"must be a mapping of field -> pattern, got {type(value).__name__}"]
    problems: list[str] = []
    clean: dict[str, str] = {}
    for key, pattern in value.items():
        if key not in allowed:
            problems.append(f"has an unknown key {key!r}; keys are {', '.join(allowed)}")
        elif not isinstance(pattern, str):
            problems.append(f"{key} must be a text pattern, got {type(pattern).__name__} {pattern!r} (quote it)")
        else:
            clean[str(key)] = pattern
    return clean, problems


def _decimal(value: Any) -> tuple[Decimal | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, float):
        return None, f"must be written as text to stay exact (quote it): {value!r}"
    try:
        number = parse_decimal(value)
    except ValueError as exc:
        return None, str(exc)
    if number < 0:
        return None, f"must not be negative: {value}"
    return number, None


def _rule_problems(
    *,
    charge_model: str | None,
    margin_percent: Decimal | None,
    rate_card: PriceBook | None,
    fixed_fee: Decimal | None,
) -> list[tuple[str, str]]:
    """Charge-model consistency of a rule, as (field, message); shared by loading and editing."""
    problems: list[tuple[str, str]] = []
    if charge_model in _CARD_MODELS:
        if rate_card is None:
            problems.append(("rate_card", f"is required for charge model {charge_model}"))
        elif rate_card.kind != PriceBookKind.RATE_CARD:
            problems.append(("rate_card", f"{rate_card.code!r} is a {rate_card.kind} price book, not a rate card"))
    elif rate_card is not None and charge_model is not None:
        problems.append(("rate_card", f"applies only to rate_card and hybrid, not {charge_model}"))
    if margin_percent is not None and charge_model is not None and charge_model not in _MARGIN_MODELS:
        problems.append(("margin_percent", f"applies only to passthrough, hybrid and cost_plus, not {charge_model}"))
    if charge_model == ChargeModel.FIXED_FEE and fixed_fee is None:
        problems.append(("fixed_fee", "is required for charge model fixed_fee"))
    elif fixed_fee is not None and charge_model is not None and charge_model != ChargeModel.FIXED_FEE:
        problems.append(("fixed_fee", f"applies only to fixed_fee, not {charge_model}"))
    return problems


def _validate_rules(entries: Any, errors: _Errors, cost_centers: dict, books: dict) -> list[dict]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        errors.add("rules", None, None, f"must be a list of rules, got {type(entries).__name__}")
        return []
    cleaned: list[dict] = []
    for index, entry in enumerate(entries):
        label = f" (rule {index + 1})"

        def add(field_name: str | None, message: str, index: int = index, label: str = label) -> None:
            errors.add("rules", index, field_name, message, label)

        if not isinstance(entry, Mapping):
            add(None, f"must be a mapping of fields, got {type(entry).__name__}")
            continue
        for key in entry:
            if key not in RULE_FIELDS:
                add(str(key), f"is not a known field; fields are {', '.join(RULE_FIELDS)}")
        match, problems = _patterns(entry.get("match"), MAPPING_RULE_TAGS)
        for problem in problems:
            add("match", problem)
        clean: dict[str, Any] = {"position": index + 1, "match": match}
        for name in ("cost_center", "service_owner"):
            code = entry.get(name)
            clean[name] = None
            if code is None:
                if name == "cost_center":
                    add(name, "is required")
            elif _text(code) is None:
                add(name, f"must be a cost center code (text), got {code!r}")
            elif _text(code) not in cost_centers:
                add(name, f"{code!r} is not a known cost center code")
            else:
                clean[name] = cost_centers[_text(code)]
        charge_model = entry.get("charge_model")
        if charge_model is None:
            add("charge_model", "is required")
        elif charge_model not in ChargeModel.values:
            add("charge_model", f"{charge_model!r} is not a charge model; use one of {', '.join(ChargeModel.values)}")
            charge_model = None
        clean["charge_model"] = charge_model
        treatment = entry.get("treatment", Treatment.CHARGEBACK)
        if treatment not in Treatment.values:
            add("treatment", f"{treatment!r} is not a treatment; use one of {', '.join(Treatment.values)}")
        clean["treatment"] = treatment
        for name in ("margin_percent", "fixed_fee"):
            clean[name], problem = _decimal(entry.get(name))
            if problem:
                add(name, problem)
        card_code = entry.get("rate_card")
        clean["rate_card"] = None
        if card_code is not None:
            if _text(card_code) not in books:
                add("rate_card", f"{card_code!r} is not a known price book code")
            else:
                clean["rate_card"] = books[_text(card_code)]
        card_unknown = card_code is not None and clean["rate_card"] is None
        for field_name, message in _rule_problems(
            charge_model=charge_model,
            margin_percent=clean["margin_percent"],
            rate_card=clean["rate_card"],
            fixed_fee=clean["fixed_fee"],
        ):
            if not (field_name == "rate_card" and card_unknown):
                add(field_name, message)
        cleaned.append(clean)
    return cleaned


def _validate_pools(entries: Any, errors: _Errors, cost_centers: dict) -> list[dict]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        errors.add("pools", None, None, f"must be a list of pools, got {type(entries).__name__}")
        return []
    cleaned: list[dict] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        code = _text(entry.get("code")) if isinstance(entry, Mapping) else None
        label = f" (code={code})" if code else ""

        def add(field_name: str | None, message: str, index: int = index, label: str = label) -> None:
            errors.add("pools", index, field_name, message, label)

        if not isinstance(entry, Mapping):
            add(None, f"must be a mapping of fields, got {type(entry).__name__}")
            continue
        for key in entry:
            if key not in POOL_FIELDS:
                add(str(key), f"is not a known field; fields are {', '.join(POOL_FIELDS)}")
        if code is None:
            add("code", "is required")
        elif code in seen:
            add("code", f"{code!r} is also defined at pools[{seen[code]}]")
        else:
            seen[code] = index
        name = _text(entry.get("name"))
        if name is None:
            add("name", "is required")
        match, problems = _patterns(entry.get("match"), POOL_MATCH_FIELDS)
        for problem in problems:
            add("match", problem)
        if not match and not problems:
            add("match", "is required: a pool must say which invoice lines it takes")
        method = entry.get("method")
        driver = entry.get("driver")
        driver = driver.strip() if isinstance(driver, str) else driver
        if method not in PoolMethod.values:
            add("method", f"{method!r} is not a pool method; use one of {', '.join(PoolMethod.values)}")
        elif method == PoolMethod.PROPORTIONAL and driver not in PoolDriver.values:
            add("driver", f"{driver!r} is not a measured driver; use one of {', '.join(PoolDriver.values)}")
        elif method == PoolMethod.ACTIVITY and _text(driver) is None:
            add("driver", "is required: the name of the activity proxy (such as jobs_run)")
        elif method == PoolMethod.EVEN and driver:
            add("driver", "does not apply to an even split")
        treatment = entry.get("treatment", Treatment.CHARGEBACK)
        if treatment not in Treatment.values:
            add("treatment", f"{treatment!r} is not a treatment; use one of {', '.join(Treatment.values)}")
        targets: list[CostCenter] = []
        raw_targets = entry.get("cost_centers") or []
        if not isinstance(raw_targets, list):
            add("cost_centers", "must be a list of cost center codes")
            raw_targets = []
        for target in raw_targets:
            if _text(target) not in cost_centers:
                add("cost_centers", f"{target!r} is not a known cost center code")
            else:
                targets.append(cost_centers[_text(target)])
        cleaned.append(
            {
                "code": code,
                "name": name,
                "match": match,
                "method": method,
                "driver": driver or "",
                "targets": targets,
                "treatment": treatment,
            }
        )
    return cleaned


def _refuse(source: str, messages: list[str]) -> ValidationFailed:
    count = len(messages)
    return ValidationFailed(
        f"{source}: refused, {count} error{'s' if count != 1 else ''}; nothing was written. First: {messages[0]}",
        code=ERROR_CODE,
        extra={"errors": messages},
    )


def mapping_load(
    *, document: Any, source: str, lines: Mapping[tuple, int] | None = None, created_by=None
) -> MappingVersion:
    """A new DRAFT version with its rules and pools from a parsed document; refused whole when invalid."""
    if not isinstance(document, Mapping):
        got = "the file is empty" if document is None else f"expected a mapping, got {type(document).__name__}"
        raise _refuse(source, [f"{source}: {got}"])
    errors = _Errors(source, lines)
    for key in document:
        if key not in TOP_FIELDS:
            errors.add(str(key), None, None, f"is not a known field; fields are {', '.join(TOP_FIELDS)}")
    name = _text(document.get("name"))
    if name is None:
        errors.add("name", None, None, "is required")
    effective_from, problem = (None, "is required")
    if document.get("effective_from") is not None:
        effective_from, problem = _date(document.get("effective_from"))
    if problem:
        errors.add("effective_from", None, None, problem)
    cost_centers = {cc.code: cc for cc in CostCenter.objects.all()}
    books = {book.code: book for book in PriceBook.objects.all()}
    with transaction.atomic():
        rules = _validate_rules(document.get("rules"), errors, cost_centers, books)
        pools = _validate_pools(document.get("pools"), errors, cost_centers)
        if not rules and not errors.messages:
            errors.add("rules", None, None, "must hold at least one rule")
        if errors.messages:
            raise _refuse(source, errors.messages)
        # Lock the newest version so two loads cannot take the same number.
        last = MappingVersion.objects.select_for_update().order_by("-number").first()
        number = (last.number if last else 0) + 1
        version = MappingVersion.objects.create(
            number=number, name=name, effective_from=effective_from, source=source[:500], created_by=created_by
        )
        MappingRule.objects.bulk_create(
            MappingRule(
                version=version,
                position=rule["position"],
                match=rule["match"],
                cost_center=rule["cost_center"],
                charge_model=rule["charge_model"],
                treatment=rule["treatment"],
                margin_percent=rule["margin_percent"],
                rate_card=rule["rate_card"],
                fixed_fee=rule["fixed_fee"],
                service_owner=rule["service_owner"],
            )
            for rule in rules
        )
        for pool in pools:
            row = SharedCostPool.objects.create(
                version=version,
                code=pool["code"],
                name=pool["name"],
                match=pool["match"],
                method=pool["method"],
                driver=pool["driver"],
                treatment=pool["treatment"],
            )
            row.target_cost_centers.set(pool["targets"])
    return version


def mapping_load_file(*, path: str | os.PathLike, created_by=None) -> MappingVersion:
    """Load a draft mapping version from a YAML file (`python manage.py load_mapping`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        message = f"{path}: no such file"
        raise NotFound(message, code="file_not_found", extra={"errors": [message]}) from None
    except (OSError, UnicodeDecodeError) as exc:
        message = f"{path}: cannot read the file: {exc}"
        raise ValidationFailed(message, code=ERROR_CODE, extra={"errors": [message]}) from None
    document, lines = yaml_parse(text=text, source=str(path), error_code=ERROR_CODE)
    return mapping_load(document=document, source=str(path), lines=lines, created_by=created_by)


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value)


def mapping_content(*, version: MappingVersion) -> dict[str, Any]:
    """The canonical content of a version: what its hash covers and its sign-off snapshot."""
    rules = version.rules.select_related("cost_center", "service_owner", "rate_card").order_by("position")
    pools = version.pools.prefetch_related("target_cost_centers").order_by("code")
    return {
        "number": version.number,
        "name": version.name,
        "effective_from": version.effective_from.isoformat(),
        "rules": [
            {
                "position": rule.position,
                "match": dict(sorted(rule.match.items())),
                "cost_center": rule.cost_center.code,
                "charge_model": rule.charge_model,
                "treatment": rule.treatment,
                "margin_percent": _amount(rule.margin_percent),
                "rate_card": rule.rate_card.code if rule.rate_card else None,
                "fixed_fee": _amount(rule.fixed_fee),
                "service_owner": rule.service_owner.code if rule.service_owner else None,
            }
            for rule in rules
        ],
        "pools": [
            {
                "code": pool.code,
                "name": pool.name,
                "match": dict(sorted(pool.match.items())),
                "method": pool.method,
                "driver": pool.driver,
                "cost_centers": sorted(cc.code for cc in pool.target_cost_centers.all()),
                "treatment": pool.treatment,
            }
            for pool in pools
        ],
    }


def _content_hash(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def mapping_user_can_sign(*, user) -> bool:
    """Only a member of the finance_approver group signs a mapping off."""
    return has_role(user, (FINANCE_APPROVER_GROUP,))


def mapping_user_can_edit(*, user) -> bool:
    """Drafting and editing drafts: finance approvers and analysts, and platform admins."""
    return has_role(user, MAPPING_EDITOR_GROUPS)


def _require_editor(actor) -> None:
    if not mapping_user_can_edit(user=actor):
        name = getattr(actor, "username", None) or "nobody"
        raise NotMappingEditor(
            f"{name} may not edit mapping drafts; that takes one of the groups {', '.join(MAPPING_EDITOR_GROUPS)}",
            extra={"actor": name},
        )


def _require_approver(actor) -> None:
    if not mapping_user_can_sign(user=actor):
        name = getattr(actor, "username", None) or "nobody"
        raise NotFinanceApprover(
            f"{name} is not a finance approver; only the {FINANCE_APPROVER_GROUP} group may sign a mapping off",
            extra={"actor": name},
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
    locked.content_hash = _content_hash(content)
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
    clean, problems = _patterns(match or {}, MAPPING_RULE_TAGS)
    found: list[tuple[str, str]] = [("match", problem) for problem in problems]
    if charge_model not in ChargeModel.values:
        found.append(("charge_model", f"{charge_model!r} is not a charge model"))
    if treatment not in Treatment.values:
        found.append(("treatment", f"{treatment!r} is not a treatment"))
    if margin_percent is not None and margin_percent < 0:
        found.append(("margin_percent", f"must not be negative: {margin_percent}"))
    if fixed_fee is not None and fixed_fee < 0:
        found.append(("fixed_fee", f"must not be negative: {fixed_fee}"))
    found += _rule_problems(
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


def _period_start(period: datetime.date | str) -> datetime.date:
    if isinstance(period, str):
        try:
            year, month = (int(part) for part in period.split("-"))
            return datetime.date(year, month, 1)
        except ValueError:
            raise ValidationFailed(f"period {period!r} is not YYYY-MM", code="period_invalid") from None
    return period.replace(day=1)


def mapping_version_in_force(*, period: datetime.date | str) -> MappingVersion | None:
    """The signed version with the latest effective_from on or before the period's start."""
    return (
        MappingVersion.objects.filter(status=MappingVersionStatus.SIGNED, effective_from__lte=_period_start(period))
        .order_by("-effective_from", "-number")
        .first()
    )


def mapping_rule_for(*, version: MappingVersion, tags: Mapping[str, str | None]) -> MappingRule | None:
    """The first rule by position whose every pattern matches the tags (a missing tag is "")."""
    for rule in version.rules.select_related("cost_center", "service_owner", "rate_card").order_by("position"):
        if all(fnmatchcase(tags.get(tag) or "", pattern) for tag, pattern in rule.match.items()):
            return rule
    return None


# --- Drafting through the web pages: create, edit, reorder, delete, export ------------

# Positions are moved through a band above any real one, so that no row ever
# collides with the unique (version, position) while the rules are renumbered.
_RENUMBER_OFFSET = 1_000_000


def mapping_versions() -> QuerySet[MappingVersion]:
    """Every version, newest first, with who signed and how many rules it holds."""
    return (
        MappingVersion.objects.select_related("signed_by", "created_by")
        .annotate(rule_count=Count("rules"))
        .order_by("-number")
    )


def mapping_preview_inputs(*, period: str) -> dict[str, bool]:
    """Whether a period holds the invoices and usage a preview needs to show money."""
    start, end = period_bounds(period)
    invoices = ProviderInvoice.objects.filter(billing_period_start__gte=start, billing_period_start__lt=end)
    return {
        "invoices": invoices.exists(),
        "usage": usage_lines_in_period(period).exists(),
    }


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
    clean_name = _text(name)
    if clean_name is None:
        found["name"] = ["is required"]
    elif len(clean_name) > MappingVersion._meta.get_field("name").max_length:
        found["name"] = [f"must be at most {MappingVersion._meta.get_field('name').max_length} characters"]
    day, problem = _date(effective_from)
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


def mapping_export(*, version: MappingVersion) -> str:
    """A version as the YAML file `load_mapping` reads: loading it gives a draft with the same rules and pools."""
    content = mapping_content(version=version)
    rules = []
    for rule in content["rules"]:
        entry: dict[str, Any] = {"match": rule["match"]} if rule["match"] else {}
        entry.update({key: rule[key] for key in RULE_FIELDS if key != "match" and rule[key] is not None})
        rules.append(entry)
    pools = []
    for pool in content["pools"]:
        entry = {key: pool[key] for key in POOL_FIELDS if pool[key] not in ("", [])}
        pools.append(entry)
    document: dict[str, Any] = {"name": content["name"], "effective_from": content["effective_from"], "rules": rules}
    if pools:
        document["pools"] = pools
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
