"""Mapping versions as code: a draft loaded from YAML, and a version exported to it.

A file is refused whole when anything in it is invalid: every check runs
before the first write, all errors are collected and name the file line, the
rule or pool and the field. The field checks here are the ones the draft
editing pages use too (`drafts`).
"""

import datetime
import hashlib
import json
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction

from allocation.choices import (
    MAPPING_RULE_TAGS,
    POOL_MATCH_FIELDS,
    ChargeModel,
    PoolDriver,
    PoolMethod,
    Treatment,
)
from allocation.models import (
    CostCenter,
    MappingRule,
    MappingVersion,
    SharedCostPool,
)
from pricing.choices import PriceBookKind
from pricing.config_files import ConfigErrors, yaml_parse
from pricing.errors import NotFound, ValidationFailed
from pricing.models import PriceBook
from pricing.money import decimal_text, parse_decimal

__all__ = [
    "ERROR_CODE",
    "field_date",
    "field_text",
    "mapping_content",
    "mapping_content_hash",
    "mapping_export",
    "mapping_load",
    "mapping_load_file",
    "match_patterns",
    "rule_problems",
]

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


class _Errors(ConfigErrors):
    """A mapping file's problems: "rules[3] (team=search): cost_center is required"."""

    def __init__(self, source: str, lines: Mapping[tuple, int] | None):
        super().__init__(source, lines, code=ERROR_CODE)

    def add_at(self, section: str, index: int | None, field_name: str | None, message: str, label: str = "") -> None:
        where = (section if index is None else f"{section}[{index}]") + label
        if field_name:
            text = f"{where}: {field_name} {message}"
        else:
            # A top-level field reads as a sentence: "effective_from must be ...".
            text = f"{where} {message}" if index is None else f"{where}: {message}"
        self.add(text, at=(section, index, field_name))


def field_text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def field_date(value: Any) -> tuple[datetime.date | None, str | None]:
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


def match_patterns(value: Any, allowed: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
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


def rule_problems(
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
        errors.add_at("rules", None, None, f"must be a list of rules, got {type(entries).__name__}")
        return []
    cleaned: list[dict] = []
    for index, entry in enumerate(entries):
        label = f" (rule {index + 1})"

        def add(field_name: str | None, message: str, index: int = index, label: str = label) -> None:
            errors.add_at("rules", index, field_name, message, label)

        if not isinstance(entry, Mapping):
            add(None, f"must be a mapping of fields, got {type(entry).__name__}")
            continue
        for key in entry:
            if key not in RULE_FIELDS:
                add(str(key), f"is not a known field; fields are {', '.join(RULE_FIELDS)}")
        match, problems = match_patterns(entry.get("match"), MAPPING_RULE_TAGS)
        for problem in problems:
            add("match", problem)
        clean: dict[str, Any] = {"position": index + 1, "match": match}
        for name in ("cost_center", "service_owner"):
            code = entry.get(name)
            clean[name] = None
            if code is None:
                if name == "cost_center":
                    add(name, "is required")
            elif field_text(code) is None:
                add(name, f"must be a cost center code (text), got {code!r}")
            elif field_text(code) not in cost_centers:
                add(name, f"{code!r} is not a known cost center code")
            else:
                clean[name] = cost_centers[field_text(code)]
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
            if field_text(card_code) not in books:
                add("rate_card", f"{card_code!r} is not a known price book code")
            else:
                clean["rate_card"] = books[field_text(card_code)]
        card_unknown = card_code is not None and clean["rate_card"] is None
        for field_name, message in rule_problems(
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
        errors.add_at("pools", None, None, f"must be a list of pools, got {type(entries).__name__}")
        return []
    cleaned: list[dict] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        code = field_text(entry.get("code")) if isinstance(entry, Mapping) else None
        label = f" (code={code})" if code else ""

        def add(field_name: str | None, message: str, index: int = index, label: str = label) -> None:
            errors.add_at("pools", index, field_name, message, label)

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
        name = field_text(entry.get("name"))
        if name is None:
            add("name", "is required")
        match, problems = match_patterns(entry.get("match"), POOL_MATCH_FIELDS)
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
        elif method == PoolMethod.ACTIVITY and field_text(driver) is None:
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
            if field_text(target) not in cost_centers:
                add("cost_centers", f"{target!r} is not a known cost center code")
            else:
                targets.append(cost_centers[field_text(target)])
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


def mapping_load(
    *, document: Any, source: str, lines: Mapping[tuple, int] | None = None, created_by=None
) -> MappingVersion:
    """A new DRAFT version with its rules and pools from a parsed document; refused whole when invalid."""
    errors = _Errors(source, lines)
    if not isinstance(document, Mapping):
        errors.add("the file is empty" if document is None else f"expected a mapping, got {type(document).__name__}")
        errors.refuse_if_any()
    for key in document:
        if key not in TOP_FIELDS:
            errors.add_at(str(key), None, None, f"is not a known field; fields are {', '.join(TOP_FIELDS)}")
    name = field_text(document.get("name"))
    if name is None:
        errors.add_at("name", None, None, "is required")
    effective_from, problem = (None, "is required")
    if document.get("effective_from") is not None:
        effective_from, problem = field_date(document.get("effective_from"))
    if problem:
        errors.add_at("effective_from", None, None, problem)
    cost_centers = {cc.code: cc for cc in CostCenter.objects.all()}
    books = {book.code: book for book in PriceBook.objects.all()}
    with transaction.atomic():
        rules = _validate_rules(document.get("rules"), errors, cost_centers, books)
        pools = _validate_pools(document.get("pools"), errors, cost_centers)
        if not rules and not errors.messages:
            errors.add_at("rules", None, None, "must hold at least one rule")
        errors.refuse_if_any()
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


def mapping_content_hash(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- Export: a version as the file it could be loaded from ----------------------------


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
