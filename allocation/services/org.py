"""Organization as code: cost centers, teams, features and tenants from one YAML file.

A file is refused whole when any entry is invalid: every check runs before the
first write, all errors are collected, and the writes happen in one
transaction. Loading is idempotent: entries are matched by code, and a second
load of the same file changes nothing.
"""

import datetime
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import models, transaction

from allocation.models import CostCenter, Feature, Team, Tenant
from pricing.config_files import ConfigErrors, yaml_parse
from pricing.errors import NotFound, ValidationFailed

__all__ = ["OrgKindCounts", "OrgLoadResult", "org_load", "org_load_file", "org_parse"]

SECTIONS: tuple[str, ...] = ("cost_centers", "teams", "features", "tenants")

# Per section: field -> (required, kind). Kinds: "text", "ref" (a code of
# another entry), "date". Everything not listed is an unknown key.
_SCHEMA: dict[str, dict[str, tuple[bool, str]]] = {
    "cost_centers": {
        "code": (True, "text"),
        "name": (True, "text"),
        "owner": (True, "text"),
        "gl_expense_account": (True, "text"),
        "gl_recovery_account": (True, "text"),
        "parent": (False, "ref"),
        "active_from": (True, "date"),
        "active_to": (False, "date"),
    },
    "teams": {"code": (True, "text"), "name": (True, "text"), "cost_center": (True, "ref")},
    "features": {"code": (True, "text"), "name": (True, "text"), "team": (True, "ref")},
    "tenants": {"code": (True, "text"), "name": (True, "text")},
}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MODELS: dict[str, type[models.Model]] = {
    "cost_centers": CostCenter,
    "teams": Team,
    "features": Feature,
    "tenants": Tenant,
}


@dataclass
class OrgKindCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class OrgLoadResult:
    source: str
    counts: dict[str, OrgKindCounts] = field(default_factory=lambda: {s: OrgKindCounts() for s in SECTIONS})

    @property
    def created(self) -> int:
        return sum(c.created for c in self.counts.values())

    @property
    def updated(self) -> int:
        return sum(c.updated for c in self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            **{kind: vars(c).copy() for kind, c in self.counts.items()},
            "created": self.created,
            "updated": self.updated,
            "unchanged": sum(c.unchanged for c in self.counts.values()),
        }


class _Errors(ConfigErrors):
    """An organization file's problems: "cost_centers[1] (code=CC-201): active_from is not a date"."""

    def __init__(self, source: str, lines: Mapping[tuple, int] | None):
        super().__init__(source, lines, code="org_invalid", name_unlocated=False)

    def add_at(self, section: str, index: int | None, entry: Any, field_name: str | None, message: str) -> None:
        where = section if index is None else f"{section}[{index}]"
        if isinstance(entry, Mapping) and isinstance(entry.get("code"), str):
            where += f" (code={entry['code']})"
        text = f"{field_name} {message}" if field_name else message
        self.add(f"{where}: {text}", at=(section, index, field_name))


def _max_length(model: type[models.Model], name: str) -> int | None:
    return getattr(model._meta.get_field(name), "max_length", None)


def _check_value(value: Any, kind: str, max_length: int | None) -> tuple[Any, str | None]:
    """The cleaned value and an error message (or None)."""
    if kind == "date":
        # Files give text (see _OrgLoader); a caller passing a parsed document may give dates.
        if isinstance(value, datetime.datetime):
            return None, f"must be a date (YYYY-MM-DD), not a date and time: {value.isoformat()}"
        if isinstance(value, datetime.date):
            return value, None
        if isinstance(value, str):
            # fromisoformat alone would also take 20250131 and 2025-W05-5.
            if _DATE.fullmatch(value.strip()):
                try:
                    return datetime.date.fromisoformat(value.strip()), None
                except ValueError:
                    pass
            return None, f"is not a date (YYYY-MM-DD): {value!r}"
        return None, f"must be a date (YYYY-MM-DD), got {type(value).__name__} {value!r}"
    if not isinstance(value, str):
        # Accounts and codes are text: YAML would read 0610 as a number and lose the zero.
        hint = " (quote it)" if isinstance(value, int | float) else ""
        return None, f"must be text, got {type(value).__name__} {value!r}{hint}"
    text = value.strip()
    if not text:
        return None, "must not be empty"
    if max_length is not None and len(text) > max_length:
        return None, f"is longer than {max_length} characters"
    return text, None


def _validate_entries(document: Mapping, errors: _Errors) -> dict[str, list[dict]]:
    """Shape, types and duplicates of each section; returns the cleaned entries."""
    cleaned: dict[str, list[dict]] = {s: [] for s in SECTIONS}
    for key in document:
        if key not in SECTIONS:
            errors.add_at(str(key), None, None, None, f"unknown section; sections are {', '.join(SECTIONS)}")
    for section in SECTIONS:
        entries = document.get(section)
        if entries is None:
            continue
        if not isinstance(entries, list):
            errors.add_at(section, None, None, None, f"must be a list of entries, got {type(entries).__name__}")
            continue
        schema = _SCHEMA[section]
        model = _MODELS[section]
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                errors.add_at(section, index, None, None, f"must be a mapping of fields, got {type(entry).__name__}")
                continue
            # A field that fails its check is None here; the entry is kept so the
            # reference checks still see its other fields.
            clean: dict[str, Any] = {"_index": index, "_entry": entry}
            for key in entry:
                if key not in schema:
                    errors.add_at(
                        section, index, entry, str(key), f"is not a known field; fields are {', '.join(schema)}"
                    )
            for name, (required, kind) in schema.items():
                value = entry.get(name)
                if value is None or (isinstance(value, str) and not value.strip() and not required):
                    if required:
                        errors.add_at(section, index, entry, name, "is required")
                    clean[name] = None
                    continue
                value, problem = _check_value(value, kind, _max_length(model, name))
                if problem:
                    errors.add_at(section, index, entry, name, problem)
                clean[name] = value
            start, end = clean.get("active_from"), clean.get("active_to")
            if start and end and end < start:
                errors.add_at(section, index, entry, "active_to", f"{end} is before active_from {start}")
            code = clean.get("code")
            if code is not None:
                if code in seen:
                    errors.add_at(section, index, entry, "code", f"{code!r} is also defined at {section}[{seen[code]}]")
                    continue
                seen[code] = index
            cleaned[section].append(clean)
    return cleaned


def _validate_references(cleaned: dict[str, list[dict]], raw: Mapping, errors: _Errors) -> None:
    """References to entries in the file or the database, and parent cycles."""

    def codes_in_file(section: str) -> set[str]:
        # Entries rejected for another reason still define their code, so one
        # bad field does not cascade into "not defined" errors elsewhere.
        entries = raw.get(section) if isinstance(raw.get(section), list) else []
        return {e["code"].strip() for e in entries if isinstance(e, Mapping) and isinstance(e.get("code"), str)}

    refs = (
        ("cost_centers", "parent", "cost_centers", CostCenter),
        ("teams", "cost_center", "cost_centers", CostCenter),
        ("features", "team", "teams", Team),
    )
    for section, name, target, model in refs:
        wanted = {e[name] for e in cleaned[section] if e.get(name)}
        known = codes_in_file(target) | set(model.objects.filter(code__in=wanted).values_list("code", flat=True))
        for entry in cleaned[section]:
            value = entry.get(name)
            if value and value not in known:
                errors.add_at(
                    section,
                    entry["_index"],
                    entry["_entry"],
                    name,
                    f"{value!r} is not defined in the file or the database",
                )

    # The parent graph as it would be after the load: the file overrides the database.
    parents: dict[str, str | None] = dict(CostCenter.objects.values_list("code", "parent__code"))
    for entry in cleaned["cost_centers"]:
        if entry["code"] is not None:
            parents[entry["code"]] = entry["parent"]
    reported: set[str] = set()
    for entry in cleaned["cost_centers"]:
        if entry["code"] is None:
            continue
        path: list[str] = [entry["code"]]
        node = entry["parent"]
        while node is not None and node not in path and len(path) <= len(parents):
            path.append(node)
            node = parents.get(node)
        if node is not None and node in path:
            cycle = path[path.index(node) :]
            if entry["code"] in cycle and not reported.intersection(cycle):
                reported.update(cycle)
                errors.add_at(
                    "cost_centers",
                    entry["_index"],
                    entry["_entry"],
                    "parent",
                    f"makes a cycle: {' -> '.join([*cycle, node])}",
                )


def _parent_first(entries: list[dict]) -> list[dict]:
    """Cost centers ordered so that a parent defined in the file is written before its children."""
    by_code = {e["code"]: e for e in entries}
    ordered: list[dict] = []
    done: set[str] = set()

    def visit(entry: dict) -> None:
        if entry["code"] in done:
            return
        done.add(entry["code"])
        parent = by_code.get(entry["parent"] or "")
        if parent is not None:
            visit(parent)
        ordered.append(entry)

    for entry in entries:
        visit(entry)
    return ordered


def _upsert(model: type[models.Model], code: str, values: dict[str, Any], counts: OrgKindCounts) -> models.Model:
    """Create or update one row by code, counting it; an identical row is not written."""
    obj = model.objects.filter(code=code).first()
    if obj is None:
        counts.created += 1
        return model.objects.create(code=code, **values)
    changed: list[str] = []
    for name, value in values.items():
        # Compare foreign keys by id, so an unchanged parent costs no query.
        if isinstance(value, models.Model) or (value is None and model._meta.get_field(name).is_relation):
            current, wanted = getattr(obj, f"{name}_id"), getattr(value, "pk", None)
        else:
            current, wanted = getattr(obj, name), value
        if current != wanted:
            setattr(obj, name, value)
            changed.append(name)
    if changed:
        obj.save(update_fields=changed)
        counts.updated += 1
    else:
        counts.unchanged += 1
    return obj


def org_load(*, document: Any, source: str, lines: Mapping[tuple, int] | None = None) -> OrgLoadResult:
    """Create or update the organization from a parsed document; refused whole when invalid.

    `lines` maps (section, index, field) to the file's line, so messages can
    point into the file; `org_load_file` builds it.
    """
    errors = _Errors(source, lines)
    if document is None:
        raise ValidationFailed(
            f"{source}: the file is empty", code="org_invalid", extra={"errors": [f"{source}: the file is empty"]}
        )
    if not isinstance(document, Mapping):
        message = f"{source}: expected a mapping with {', '.join(SECTIONS)}, got {type(document).__name__}"
        raise ValidationFailed(message, code="org_invalid", extra={"errors": [message]})
    result = OrgLoadResult(source=source)
    with transaction.atomic():
        cleaned = _validate_entries(document, errors)
        _validate_references(cleaned, document, errors)
        errors.refuse_if_any()
        cost_centers: dict[str, CostCenter] = {}
        for entry in _parent_first(cleaned["cost_centers"]):
            parent = None
            if entry["parent"]:
                parent = cost_centers.get(entry["parent"]) or CostCenter.objects.get(code=entry["parent"])
            values = {k: entry[k] for k in _SCHEMA["cost_centers"] if k not in ("code", "parent")}
            values["parent"] = parent
            cost_centers[entry["code"]] = _upsert(CostCenter, entry["code"], values, result.counts["cost_centers"])
        teams: dict[str, Team] = {}
        for entry in cleaned["teams"]:
            cost_center = cost_centers.get(entry["cost_center"]) or CostCenter.objects.get(code=entry["cost_center"])
            values = {"name": entry["name"], "cost_center": cost_center}
            teams[entry["code"]] = _upsert(Team, entry["code"], values, result.counts["teams"])
        for entry in cleaned["features"]:
            team = teams.get(entry["team"]) or Team.objects.get(code=entry["team"])
            _upsert(Feature, entry["code"], {"name": entry["name"], "team": team}, result.counts["features"])
        for entry in cleaned["tenants"]:
            _upsert(Tenant, entry["code"], {"name": entry["name"]}, result.counts["tenants"])
    return result


def org_parse(*, text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """The document in a YAML text and the line of each entry; a syntax error names its line."""
    return yaml_parse(text=text, source=source, error_code="org_invalid")


def org_load_file(*, path: str | os.PathLike) -> OrgLoadResult:
    """Load the organization from a YAML file (`python manage.py load_org`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        message = f"{path}: no such file"
        raise NotFound(message, code="file_not_found", extra={"errors": [message]}) from None
    except (OSError, UnicodeDecodeError) as exc:
        message = f"{path}: cannot read the file: {exc}"
        raise ValidationFailed(message, code="org_invalid", extra={"errors": [message]}) from None
    document, lines = org_parse(text=text, source=str(path))
    return org_load(document=document, source=str(path), lines=lines)
