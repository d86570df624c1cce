"""Mapping versions as code: load a draft, refuse an invalid file whole, sign it off once, match rules."""

import datetime
import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from allocation.models import CostCenter, MappingRule, MappingVersion, MappingVersionEvent, SharedCostPool
from allocation.selectors.mapping import mapping_rule_for, mapping_version_in_force
from allocation.services.mapping.drafts import (
    MappingAlreadySigned,
    SignedVersionImmutable,
    mapping_draft_rule_add,
    mapping_sign,
)
from allocation.services.mapping.files import mapping_load, mapping_load_file
from pricing.config_files import yaml_parse
from pricing.errors import NotAllowed, ValidationFailed
from pricing.models import PriceBook
from pricing.periods import Period

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "mapping"


@pytest.fixture
def org(db) -> dict[str, CostCenter]:
    centers = {}
    for code, name in (("CC-100", "Technology"), ("CC-110", "Search"), ("CC-120", "Support")):
        centers[code] = CostCenter.objects.create(
            code=code,
            name=name,
            owner="Owner",
            gl_expense_account=f"6420-{code[3:]}",
            gl_recovery_account=f"6490-{code[3:]}",
            active_from=datetime.date(2024, 1, 1),
        )
    PriceBook.objects.create(code="RC-RERANK", name="Rerank card", kind="rate_card", service="ranking")
    PriceBook.objects.create(code="LIST-OPENAI", name="OpenAI list", kind="list")
    return centers


@pytest.fixture
def approver(django_user_model):
    user = django_user_model.objects.create_user(username="fiona", password="x")
    user.groups.add(Group.objects.get_or_create(name="finance_approver")[0])
    return user


def _rows() -> tuple[int, int, int, int]:
    return (
        MappingVersion.objects.count(),
        MappingRule.objects.count(),
        SharedCostPool.objects.count(),
        MappingVersionEvent.objects.count(),
    )


def _command(*args: str) -> dict:
    out: list[str] = []

    class Out:
        def write(self, text: str) -> None:
            out.append(text)

    call_command(*args, stdout=Out())
    return json.loads("".join(out))


def _load(text: str) -> MappingVersion:
    document, lines = yaml_parse(text=text, source="inline.yaml", error_code="mapping_invalid")
    return mapping_load(document=document, source="inline.yaml", lines=lines)


def test_load_mapping_creates_a_draft_with_every_charge_model_and_both_pools(org):
    result = _command("load_mapping", str(FIXTURES / "valid.yaml"))

    assert result == {"version": 1, "status": "draft", "rules": 7, "pools": 2}
    version = MappingVersion.objects.get(number=1)
    assert version.effective_from == datetime.date(2026, 1, 1)
    assert version.signed_by is None and version.content_hash == ""
    rules = list(version.rules.order_by("position"))
    assert [r.charge_model for r in rules] == [
        "direct",
        "passthrough",
        "rate_card",
        "hybrid",
        "cost_plus",
        "fixed_fee",
        "direct",
    ]
    assert rules[0].match == {"team": "search", "environment": "prod*"}
    assert rules[1].margin_percent == Decimal("5") and rules[1].service_owner.code == "CC-100"
    assert rules[2].treatment == "showback" and rules[2].rate_card.code == "RC-RERANK"
    assert rules[2].service_owner.code == "CC-100"
    assert rules[3].rate_card.code == "RC-RERANK"
    assert rules[4].margin_percent == Decimal("12.5")
    assert rules[5].fixed_fee == Decimal("1500.00")
    platform = version.pools.get(code="platform")
    assert (platform.method, platform.driver, platform.treatment) == ("proportional", "tokens", "chargeback")
    assert sorted(platform.target_cost_centers.values_list("code", flat=True)) == ["CC-110", "CC-120"]
    vector = version.pools.get(code="vector-store")
    assert (vector.method, vector.driver, vector.treatment) == ("activity", "jobs_run", "showback")
    assert not vector.target_cost_centers.exists()  # empty = all active cost centers

    second = _command("load_mapping", str(FIXTURES / "valid.yaml"))
    assert second["version"] == 2  # a new draft each load; versions are never rewritten


def test_an_invalid_file_is_refused_whole_naming_line_rule_and_field(org):
    before = _rows()
    path = FIXTURES / "invalid_many.yaml"

    with pytest.raises(ValidationFailed) as caught:
        mapping_load_file(path=path)

    assert caught.value.code == "mapping_invalid"
    errors = caught.value.extra["errors"]
    text = "\n".join(errors)
    assert f"{path}:2: effective_from must be a period start (the first of a month), not 2026-01-15" in text
    assert f"{path}:4: rules[0] (rule 1): match has an unknown key 'colour'" in text
    assert f"{path}:5: rules[0] (rule 1): cost_center 'CC-999' is not a known cost center code" in text
    assert f"{path}:9: rules[1] (rule 2): charge_model 'bartering' is not a charge model" in text
    assert "rules[2] (rule 3): rate_card is required for charge model rate_card" in text
    assert "rules[3] (rule 4): rate_card 'LIST-OPENAI' is a list price book, not a rate card" in text
    assert "rules[4] (rule 5): margin_percent must not be negative: -3" in text
    assert "pools[1] (code=platform): code 'platform' is also defined at pools[0]" in text
    assert "pools[1] (code=platform): driver 'vibes' is not a measured driver" in text
    assert len(errors) == 9
    assert errors == sorted(errors, key=lambda m: int(m.split(":")[1]))  # in file order
    assert _rows() == before


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("effective_from: '2026-02-30'\nrules: [{cost_center: CC-100, charge_model: direct}]", "is not a date"),
        ("effective_from: '2026-02-01'\nrules: [{cost_center: CC-100, charge_model: direct}]", "name is required"),
        ("name: x\neffective_from: '2026-02-01'\nrules: []", "must hold at least one rule"),
        (
            "name: x\neffective_from: '2026-02-01'\nrules: [{cost_center: CC-100, charge_model: fixed_fee}]",
            "fixed_fee is required",
        ),
        (
            "name: x\neffective_from: '2026-02-01'\n"
            "rules: [{cost_center: CC-100, charge_model: direct, margin_percent: '2'}]",
            "margin_percent applies only to passthrough, hybrid and cost_plus",
        ),
        (
            "name: x\neffective_from: '2026-02-01'\nrules: [{cost_center: CC-100, charge_model: direct}]\n"
            "pools: [{code: p, name: P, match: {region: eu}, method: even}]",
            "match has an unknown key 'region'",
        ),
        (
            "name: x\neffective_from: '2026-02-01'\nrules: [{cost_center: CC-100, charge_model: direct}]\n"
            "pools: [{code: p, name: P, match: {provider: x}, method: activity}]",
            "driver is required",
        ),
        (
            "name: x\neffective_from: '2026-02-01'\nrules: [{cost_center: CC-100, charge_model: direct, colour: 1}]",
            "colour is not a known field",
        ),
    ],
)
def test_each_kind_of_invalid_document_is_refused_with_nothing_written(org, body, expected):
    before = _rows()
    with pytest.raises(ValidationFailed) as caught:
        _load(body)
    assert expected in "\n".join(caught.value.extra["errors"])
    assert _rows() == before


def test_load_mapping_command_reports_every_error_on_stderr(org, capsys):
    with pytest.raises(CommandError, match="refused: 9 error"):
        call_command("load_mapping", str(FIXTURES / "invalid_many.yaml"))
    assert "CC-999" in capsys.readouterr().err
    assert MappingVersion.objects.count() == 0


def test_a_finance_approver_signs_off_once_with_an_audit_row(org, approver):
    version = mapping_load_file(path=FIXTURES / "valid.yaml")

    signed = mapping_sign(version=version, actor=approver, reason="Reviewed in PR 42")

    signed.refresh_from_db()
    assert signed.status == "signed" and signed.signed_by == approver and signed.signed_at is not None
    assert len(signed.content_hash) == 64
    event = MappingVersionEvent.objects.get(version=signed)
    assert (event.actor, event.from_status, event.to_status, event.reason) == (
        approver,
        "draft",
        "signed",
        "Reviewed in PR 42",
    )
    assert event.snapshot["content_hash"] == signed.content_hash
    assert [r["charge_model"] for r in event.snapshot["rules"]][:2] == ["direct", "passthrough"]
    assert event.snapshot["rules"][1]["margin_percent"] == "5"

    with pytest.raises(MappingAlreadySigned) as caught:
        mapping_sign(version=signed, actor=approver)
    assert caught.value.code == "already_signed"
    assert MappingVersionEvent.objects.count() == 1

    # The hash covers the version's number, so two signed versions never share one.
    again = mapping_sign(version=mapping_load_file(path=FIXTURES / "valid.yaml"), actor=approver)
    assert again.content_hash != signed.content_hash  # the number is part of the content
    assert again.number == 2


def test_a_non_approver_cannot_sign(org, django_user_model):
    analyst = django_user_model.objects.create_user(username="ana", password="x")
    analyst.groups.add(Group.objects.get_or_create(name="finance_analyst")[0])
    version = mapping_load_file(path=FIXTURES / "valid.yaml")

    with pytest.raises(NotAllowed) as caught:
        mapping_sign(version=version, actor=analyst)

    assert caught.value.code == "not_finance_approver"
    version.refresh_from_db()
    assert version.status == "draft" and version.signed_by is None
    assert MappingVersionEvent.objects.count() == 0


def test_a_signed_version_refuses_edits_and_a_draft_takes_them(org, approver):
    version = mapping_load_file(path=FIXTURES / "valid.yaml")
    rule = mapping_draft_rule_add(
        version=version, cost_center=org["CC-110"], charge_model="cost_plus", margin_percent=Decimal("3")
    )
    assert rule.position == 8
    with pytest.raises(ValidationFailed, match="rate_card is required"):
        mapping_draft_rule_add(version=version, cost_center=org["CC-110"], charge_model="hybrid")

    mapping_sign(version=version, actor=approver)
    with pytest.raises(SignedVersionImmutable) as caught:
        mapping_draft_rule_add(version=version, cost_center=org["CC-110"], charge_model="direct")
    assert caught.value.code == "signed_version_immutable"
    assert version.rules.count() == 8


def test_rules_match_in_order_with_wildcards_and_missing_tags_as_empty(org):
    version = mapping_load_file(path=FIXTURES / "valid.yaml")

    def position(**tags: str) -> int | None:
        rule = mapping_rule_for(version=version, tags=tags)
        return rule.position if rule else None

    assert position(team="search", environment="production") == 1
    assert position(team="search", environment="staging") == 7  # falls through to the catch-all
    assert position(team="search", environment="production", caller="x", feature="summarize") == 1  # first wins
    assert position(caller="support-ai", feature="summarize-ticket") == 2
    assert position(feature="summarize-ticket") == 2  # "*" matches a missing caller too
    assert position(feature="rerank") == 3
    assert position(feature="embeddings") == 4
    assert position(team="ml-research") == 5
    assert position(team="ML-research") == 7  # case-sensitive
    assert position(tenant="acme") == 6
    assert position() == 7

    narrow = _load(
        "name: n\neffective_from: '2026-01-01'\n"
        "rules: [{match: {team: search, feature: '?ank'}, cost_center: CC-110, charge_model: direct}]"
    )
    assert mapping_rule_for(version=narrow, tags={"team": "search", "feature": "rank"}) is not None
    assert mapping_rule_for(version=narrow, tags={"team": "search"}) is None


def test_the_version_in_force_is_the_latest_signed_one_started_by_the_period(org, approver):
    def version(effective_from: str) -> MappingVersion:
        return _load(
            f"name: v\neffective_from: '{effective_from}'\nrules: [{{cost_center: CC-100, charge_model: direct}}]"
        )

    january = mapping_sign(version=version("2026-01-01"), actor=approver)
    april = mapping_sign(version=version("2026-04-01"), actor=approver)
    version("2026-02-01")  # a draft is never in force

    assert mapping_version_in_force(period=Period(2025, 12)) is None
    assert mapping_version_in_force(period=Period(2026, 1)) == january
    assert mapping_version_in_force(period=Period(2026, 3)) == january
    assert mapping_version_in_force(period=Period.of(datetime.date(2026, 4, 17))) == april
    assert mapping_version_in_force(period=Period(2026, 9)) == april


def test_sign_mapping_command_prints_the_sign_off(org, approver, django_user_model):
    _command("load_mapping", str(FIXTURES / "valid.yaml"))

    result = _command("sign_mapping", "1", "--user", "fiona")

    version = MappingVersion.objects.get(number=1)
    assert result == {
        "version": 1,
        "signed_by": "fiona",
        "signed_at": version.signed_at.isoformat(),
        "content_hash": version.content_hash,
    }
    with pytest.raises(CommandError, match="already_signed"):
        call_command("sign_mapping", "1", "--user", "fiona")
    django_user_model.objects.create_user(username="bob", password="x")
    _command("load_mapping", str(FIXTURES / "valid.yaml"))
    with pytest.raises(CommandError, match="not_finance_approver"):
        call_command("sign_mapping", "2", "--user", "bob")


def test_admin_shows_a_signed_version_read_only_and_a_draft_editable(org, approver, admin_client):
    draft = mapping_load_file(path=FIXTURES / "valid.yaml")
    signed = mapping_sign(version=mapping_load_file(path=FIXTURES / "valid.yaml"), actor=approver)

    signed_page = admin_client.get(f"/admin/allocation/mappingversion/{signed.pk}/change/")
    draft_page = admin_client.get(f"/admin/allocation/mappingversion/{draft.pk}/change/")

    assert signed_page.status_code == 200 and draft_page.status_code == 200
    assert 'name="_save"' not in signed_page.content.decode()
    assert 'name="_save"' in draft_page.content.decode()
    posted = admin_client.post(f"/admin/allocation/mappingversion/{signed.pk}/change/", {"name": "renamed"})
    assert posted.status_code == 403
    signed.refresh_from_db()
    assert signed.name == "FY26 H1 mapping"


def test_a_draft_without_rules_cannot_be_signed(org, approver):
    from allocation.services.mapping.drafts import mapping_draft_create
    from pricing.errors import ValidationFailed

    approver.groups.add(Group.objects.get_or_create(name="finance_analyst")[0])
    draft = mapping_draft_create(name="Empty", effective_from=datetime.date(2026, 11, 1), actor=approver)
    with pytest.raises(ValidationFailed, match="has no rules: signed, it would leave all usage unallocated"):
        mapping_sign(version=draft, actor=approver)
    draft.refresh_from_db()
    assert draft.status == "draft" and not MappingVersionEvent.objects.filter(version=draft).exists()
