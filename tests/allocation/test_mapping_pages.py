"""The mapping pages as finance users use them: draft, edit, preview and sign off over HTTP."""

import datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from allocation.access import Permission, access_allows
from allocation.models import (
    ActivityCount,
    AllocationRun,
    MappingRule,
    MappingVersion,
    MappingVersionEvent,
    SharedCostPool,
)
from allocation.selectors.mapping import mapping_version_in_force
from allocation.services.mapping.drafts import mapping_draft_rule_move
from allocation.services.mapping.files import mapping_content, mapping_load
from pricing.config_files import yaml_parse
from pricing.errors import ValidationFailed
from pricing.periods import Period
from tests.page_reading import page_text, table_rows

from .runs_world import (
    MONTH,
    SCENARIO_INVOICE,
    build_mapping,
    build_org,
    build_prices,
    load_invoice,
    load_usage,
    make_approver,
    scenario_events,
)

pytestmark = pytest.mark.django_db

SEARCH_RULE = 5  # {team: search} -> CC-110, direct, in runs_world.MAPPING


def _member(django_user_model, username: str, *groups: str):
    user = django_user_model.objects.create_user(username=username, password="x")
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


@pytest.fixture
def world(tmp_path, django_user_model):
    centers = build_org()
    build_prices()
    approver = make_approver(django_user_model)
    signed = build_mapping(tmp_path, approver)
    load_usage(scenario_events())
    load_invoice(tmp_path, SCENARIO_INVOICE)
    ActivityCount.objects.create(period=MONTH, driver="jobs_run", cost_center=centers["CC-110"], count=3)
    ActivityCount.objects.create(period=MONTH, driver="jobs_run", cost_center=centers["CC-130"], count=1)
    return {"centers": centers, "approver": approver, "signed": signed}


@pytest.fixture
def analyst(django_user_model):
    return _member(django_user_model, "ana", "finance_analyst")


@pytest.fixture
def as_approver(client, world):
    client.force_login(world["approver"])
    return client


@pytest.fixture
def draft(world) -> MappingVersion:
    """v2: a draft copy of the signed v1, made through the page."""
    client = Client()
    client.force_login(world["approver"])
    response = client.post(
        "/mappings/", {"name": "Search moves to support", "effective_from": "2026-11", "copy_from": "1"}
    )
    assert response.status_code == 302, page_text(response)
    return MappingVersion.objects.get(number=2)


def _rule_post(**fields: str) -> dict[str, str]:
    data = {"cost_center": "CC-120", "charge_model": "direct", "treatment": "chargeback"}
    data.update(fields)
    return data


def _rules(version: MappingVersion) -> list[tuple]:
    return [
        (rule.position, rule.match, rule.cost_center.code, rule.charge_model)
        for rule in version.rules.select_related("cost_center").order_by("position")
    ]


def _counts() -> tuple[int, int, int, int]:
    return (
        MappingVersion.objects.count(),
        MappingRule.objects.count(),
        SharedCostPool.objects.count(),
        MappingVersionEvent.objects.count(),
    )


def test_page_url_names_lead_to_the_pages(world):
    rule = world["signed"].rules.get(position=1)
    assert reverse("mapping-versions") == "/mappings/"
    assert reverse("mapping-version", args=[1]) == "/mappings/1/"
    assert reverse("mapping-version-preview", args=[1]) == "/mappings/1/preview/"
    assert reverse("mapping-version-sign", args=[1]) == "/mappings/1/sign/"
    assert reverse("mapping-version-export", args=[1]) == "/mappings/1/mapping.yaml"
    assert reverse("mapping-rule-add", args=[1]) == "/mappings/1/rules/"
    assert reverse("mapping-rule-edit", args=[1, rule.pk]) == f"/mappings/1/rules/{rule.pk}/"
    assert reverse("mapping-rule-delete", args=[1, rule.pk]) == f"/mappings/1/rules/{rule.pk}/delete/"
    assert reverse("mapping-rule-move", args=[1, rule.pk]) == f"/mappings/1/rules/{rule.pk}/move/"


def test_pages_send_anonymous_users_to_login(client, world):
    for url in ("/mappings/", "/mappings/1/", "/mappings/1/preview/", "/mappings/1/mapping.yaml"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url
    response = client.post("/mappings/1/sign/", {"reason": "x"})
    assert response.status_code == 302
    assert MappingVersion.objects.get(number=1).events.count() == 1  # only the sign-off of the fixture


def test_only_finance_and_platform_groups_may_edit_drafts(django_user_model):
    assert access_allows(_member(django_user_model, "fiona", "finance_approver"), Permission.EDIT_MAPPING)
    assert access_allows(_member(django_user_model, "ana", "finance_analyst"), Permission.EDIT_MAPPING)
    assert access_allows(_member(django_user_model, "pat", "platform_admin"), Permission.EDIT_MAPPING)
    assert not access_allows(_member(django_user_model, "tim", "team_member"), Permission.EDIT_MAPPING)
    assert not access_allows(_member(django_user_model, "nobody"), Permission.EDIT_MAPPING)
    root = django_user_model.objects.create_superuser(username="root", password="x")
    assert not access_allows(root, Permission.EDIT_MAPPING)  # roles are groups, as for signing off
    gone = _member(django_user_model, "gone", "finance_analyst")
    gone.is_active = False
    gone.save()
    assert not access_allows(gone, Permission.EDIT_MAPPING)
    assert not access_allows(None, Permission.EDIT_MAPPING)


def test_the_list_shows_each_version_its_status_and_the_one_in_force(client, world, analyst):
    client.force_login(analyst)
    created = client.post("/mappings/", {"name": "Next year", "effective_from": "2026-12", "copy_from": "empty"})
    assert created.status_code == 302, page_text(created)

    response = client.get("/mappings/")

    assert response.status_code == 200
    rows = table_rows(response)
    assert rows[0] == [
        "Version",
        "Name",
        "Status",
        "Applies from",
        "Rules",
        "Signed off by",
        "Signed off at",
        "Content hash",
    ]
    signed = world["signed"]
    assert rows[1][:6] == ["v2", "Next year", "Draft", "2026-12", "0", "not yet"]
    in_force_now = mapping_version_in_force(period=Period.of(datetime.date.today())) == signed
    assert rows[2][:6] == [
        "v1",
        "Hand-computed scenario",
        "Signed off In force now" if in_force_now else "Signed off Scheduled",
        "2026-10",
        "5",
        "fiona",
    ]
    assert rows[2][6] == f"{signed.signed_at:%Y-%m-%d %H:%M}"
    assert rows[2][7] == signed.content_hash[:12]
    assert "Create draft" in page_text(response)


def test_a_new_draft_copies_the_rules_and_pools_of_the_version_in_force(as_approver, world):
    signed = world["signed"]
    before = _counts()

    response = as_approver.post(
        "/mappings/", {"name": "Search moves to support", "effective_from": "2026-11", "copy_from": "1"}
    )

    assert response.status_code == 302 and response["Location"] == "/mappings/2/"
    draft = MappingVersion.objects.get(number=2)
    assert (draft.status, draft.effective_from, draft.created_by) == (
        "draft",
        datetime.date(2026, 11, 1),
        world["approver"],
    )
    assert draft.source == "copy of version 1"
    copied, original = mapping_content(version=draft), mapping_content(version=signed)
    assert copied["rules"] == original["rules"] and copied["pools"] == original["pools"]
    assert _counts() == (before[0] + 1, before[1] + 5, before[2] + 2, before[3])
    page = page_text(as_approver.get("/mappings/2/"))
    assert "Created draft v2, a copy of v1." in page
    assert "Add a rule" in page and "Sign off v2" in page


def test_a_new_draft_can_start_empty(as_approver, world):
    response = as_approver.post(
        "/mappings/", {"name": "Clean slate", "effective_from": "2027-01", "copy_from": "empty"}
    )

    assert response.status_code == 302
    draft = MappingVersion.objects.get(number=2)
    assert (draft.rules.count(), draft.pools.count()) == (0, 0)
    assert "No rules yet: add the first one below." in page_text(as_approver.get("/mappings/2/"))


def test_a_draft_with_a_bad_month_or_no_name_is_refused_beside_the_fields(as_approver, world):
    before = _counts()

    response = as_approver.post("/mappings/", {"name": " ", "effective_from": "2026-13", "copy_from": "1"})

    assert response.status_code == 400
    page = page_text(response)
    assert '<ul class="errorlist" id="id_name_error"><li>Enter a name for the draft.</li></ul>' in page
    assert (
        '<ul class="errorlist" id="id_effective_from_error"><li>2026-13 is not a month; enter it as YYYY-MM.</li></ul>'
        in page
    )
    assert 'value="2026-13"' in page and 'type="text" name="effective_from"' in page
    assert _counts() == before


def test_adding_a_rule_appends_it_after_the_others(as_approver, draft):
    response = as_approver.post(
        "/mappings/2/rules/",
        _rule_post(match_team="support", match_environment="prod*", charge_model="cost_plus", margin_percent="12.5"),
    )

    rule = draft.rules.get(position=6)
    assert response.status_code == 302 and response["Location"] == f"/mappings/2/#rule-{rule.pk}"
    assert (rule.match, rule.cost_center.code, rule.charge_model, rule.margin_percent) == (
        {"team": "support", "environment": "prod*"},
        "CC-120",
        "cost_plus",
        Decimal("12.5"),
    )
    rows = table_rows(as_approver.get("/mappings/2/"))
    assert rows[6][:9] == [
        "6",
        "environment = prod* team = support",
        "CC-120 Support",
        "Cost plus",
        "Chargeback",
        "12.5%",
        "—",
        "—",
        "—",
    ]


def test_an_invalid_rule_shows_the_error_beside_its_field_and_writes_nothing(as_approver, draft):
    before = _counts()

    # A hybrid rule needs a rate card: the service's check, shown beside the field.
    response = as_approver.post("/mappings/2/rules/", _rule_post(match_feature="embed", charge_model="hybrid"))

    assert response.status_code == 400
    page = page_text(response)
    assert (
        '<ul class="errorlist" id="id_rate_card_error"><li>Rate card is required for charge model hybrid.</li></ul>'
        in page
    )
    assert '<a href="#id_rate_card">Rate card is required for charge model hybrid.</a>' in page
    assert 'value="embed"' in page  # what was typed stays in the form
    assert _counts() == before

    # A margin that is no number, and a margin where the charge model takes none.
    response = as_approver.post("/mappings/2/rules/", _rule_post(margin_percent="ten"))
    assert response.status_code == 400
    assert '<ul class="errorlist" id="id_margin_percent_error"><li>Enter a number.</li></ul>' in page_text(response)
    response = as_approver.post("/mappings/2/rules/", _rule_post(margin_percent="5"))
    assert response.status_code == 400
    assert "Margin % applies only to passthrough, hybrid and cost_plus, not direct." in page_text(response)
    assert _counts() == before


def test_editing_a_rule_replaces_its_fields_and_keeps_its_place(as_approver, draft):
    rule = draft.rules.get(position=SEARCH_RULE)
    form = as_approver.get(f"/mappings/2/rules/{rule.pk}/")
    assert form.status_code == 200
    page = page_text(form)
    assert 'name="match_team" value="search"' in page
    assert '<option value="CC-110" selected>CC-110 · Search</option>' in page

    response = as_approver.post(f"/mappings/2/rules/{rule.pk}/", _rule_post(match_team="search"))

    assert response.status_code == 302 and response["Location"] == f"/mappings/2/#rule-{rule.pk}"
    rule.refresh_from_db()
    assert (rule.position, rule.match, rule.cost_center.code) == (SEARCH_RULE, {"team": "search"}, "CC-120")

    before = _counts()
    refused = as_approver.post(f"/mappings/2/rules/{rule.pk}/", _rule_post(charge_model="fixed_fee"))
    assert refused.status_code == 400
    assert "Fixed monthly fee is required for charge model fixed_fee." in page_text(refused)
    rule.refresh_from_db()
    assert rule.charge_model == "direct" and _counts() == before


def test_moving_and_deleting_rules_keeps_them_numbered_in_order(as_approver, draft):
    original = _rules(draft)
    last = draft.rules.get(position=5)

    response = as_approver.post(f"/mappings/2/rules/{last.pk}/move/", {"position": "4"})

    assert response.status_code == 302
    assert [r[1] for r in _rules(draft)] == [r[1] for r in original[:3] + [original[4], original[3]]]
    first = draft.rules.get(position=1)
    as_approver.post(f"/mappings/2/rules/{first.pk}/move/", {"position": "2"})
    assert [r[0] for r in _rules(draft)] == [1, 2, 3, 4, 5]
    assert draft.rules.get(position=2).pk == first.pk

    # A service call can move a rule any distance; out of range is refused.
    mapping_draft_rule_move(rule=first, position=5)
    assert draft.rules.get(position=5).pk == first.pk
    with pytest.raises(ValidationFailed, match="position must be between 1 and 5, not 6"):
        mapping_draft_rule_move(rule=first, position=6)

    doomed = draft.rules.get(position=2)
    response = as_approver.post(f"/mappings/2/rules/{doomed.pk}/delete/")
    assert response.status_code == 302
    assert not MappingRule.objects.filter(pk=doomed.pk).exists()
    assert [r[0] for r in _rules(draft)] == [1, 2, 3, 4]
    assert "Deleted rule 2; the rules after it moved up one place." in page_text(as_approver.get("/mappings/2/"))


def test_someone_outside_the_editor_groups_sees_no_controls_and_is_refused(client, draft, django_user_model):
    member = _member(django_user_model, "tim", "team_member")
    client.force_login(member)
    rule = draft.rules.get(position=1)
    before = _counts()

    # Mapping versions are company-wide: a team member's access rule refuses the page itself.
    response = client.get("/mappings/2/")
    assert response.status_code == 403
    assert "tim may not open this page: only finance and the platform team may" in page_text(response)

    for url, data in (
        ("/mappings/2/rules/", _rule_post()),
        (f"/mappings/2/rules/{rule.pk}/", _rule_post()),
        (f"/mappings/2/rules/{rule.pk}/delete/", {}),
        (f"/mappings/2/rules/{rule.pk}/move/", {"position": "2"}),
        ("/mappings/", {"name": "Mine", "effective_from": "2027-01", "copy_from": "empty"}),
    ):
        response = client.post(url, data)
        assert response.status_code == 403, url
        assert "tim may not do this: only finance and the platform team may" in page_text(response), url
    assert client.get(f"/mappings/2/rules/{rule.pk}/").status_code == 403
    assert _counts() == before


def test_a_signed_version_shows_no_edit_controls_and_refuses_edits(as_approver, world):
    rule = world["signed"].rules.get(position=1)
    before = _counts()

    page = page_text(as_approver.get("/mappings/1/"))
    assert "Signed off and immutable." in page
    assert "Add a rule" not in page and "/rules/" not in page and "Sign off v1" not in page
    assert "Start a new draft from v1" in page

    for url, data in (
        ("/mappings/1/rules/", _rule_post()),
        (f"/mappings/1/rules/{rule.pk}/", _rule_post()),
        (f"/mappings/1/rules/{rule.pk}/delete/", {}),
        (f"/mappings/1/rules/{rule.pk}/move/", {"position": "2"}),
    ):
        response = as_approver.post(url, data)
        assert response.status_code == 409, url
        assert "cannot change" in page_text(response), url
    assert as_approver.get(f"/mappings/1/rules/{rule.pk}/").status_code == 409
    response = as_approver.post("/mappings/1/sign/", {"reason": "again"})
    assert response.status_code == 409
    assert "mapping version 1 is already signed" in page_text(response)
    assert _counts() == before


def test_a_finance_approver_signs_the_draft_off_and_the_audit_row_is_written(as_approver, world, draft):
    approver = world["approver"]

    response = as_approver.post("/mappings/2/sign/", {"reason": "Reviewed with the search lead"})

    assert response.status_code == 302 and response["Location"] == "/mappings/2/"
    draft.refresh_from_db()
    assert (draft.status, draft.signed_by) == ("signed", approver)
    assert len(draft.content_hash) == 64
    event = MappingVersionEvent.objects.get(version=draft)
    assert (event.actor, event.from_status, event.to_status, event.reason) == (
        approver,
        "draft",
        "signed",
        "Reviewed with the search lead",
    )
    assert event.snapshot["content_hash"] == draft.content_hash
    assert len(event.snapshot["rules"]) == 5
    page = as_approver.get("/mappings/2/")
    text = page_text(page)
    assert "Signed off v2. It is immutable now and applies from 2026-11 on." in text
    assert draft.content_hash in text
    assert table_rows(page)[-1] == [
        f"{event.at:%Y-%m-%d %H:%M}",
        "fiona",
        "Draft → Signed off",
        "Reviewed with the search lead",
        draft.content_hash[:12],
    ]


def test_an_analyst_may_edit_but_not_sign(client, draft, analyst):
    client.force_login(analyst)
    page = page_text(client.get("/mappings/2/"))
    assert "Add a rule" in page and "Sign off v2" not in page

    response = client.post("/mappings/2/sign/", {"reason": "please"})

    assert response.status_code == 403
    assert "ana may not do this: only a finance approver may" in page_text(response)
    draft.refresh_from_db()
    assert (draft.status, draft.signed_by, draft.content_hash) == ("draft", None, "")
    assert not draft.events.exists()


def test_the_preview_shows_the_money_that_moves_from_search_to_support(as_approver, draft):
    """The draft sends team search to CC-120 instead of CC-110. What moves in 2026-10:

    search's direct usage 14.14 (14.00 rated, trued up by 1.01), its share of the tax
    (a tenth: 1.41) and of the platform fee by tokens (its own 12M of 59M tokens of
    59.00: 12.00). Its rerank calls stay on CC-110 (paid at the card by the caller,
    search), and so does the vector store (by jobs run). 14.14 + 1.41 + 12.00 + its tax 1.20 = 28.75.
    """
    search = draft.rules.get(position=SEARCH_RULE)
    as_approver.post(f"/mappings/2/rules/{search.pk}/", _rule_post(match_team="search"))

    response = as_approver.get("/mappings/2/preview/?period=2026-10")

    assert response.status_code == 200
    page = page_text(response)
    assert "What v2 would change in 2026-10" in page
    assert "$28.75 would move between cost centers, largest first." in page
    rows = table_rows(response)
    moves = rows[rows.index(["From (pays less)", "", "To (pays more)", "Amount"]) + 1 :]
    assert moves[0] == ["CC-110 Search", "→", "CC-120 Support", "$28.75"]
    centers = rows[rows.index(["Cost center", "Now, with v1", "With v2 (draft)", "Change"]) + 1 :]
    assert centers == [
        ["CC-100 Platform", "−$8.47", "−$8.47", "— no change"],
        ["CC-110 Search", "$68.00", "$39.25", "−$28.75"],
        ["CC-120 Support", "$63.86", "$92.61", "+$28.75"],
        ["CC-130 Research", "$46.73", "$46.73", "— no change"],
        ["Unallocated: failed or moderated calls of a shared service", "$1.11", "$1.11", "— no change"],
        ["Unallocated: untagged usage no rule maps", "$3.33", "$3.33", "— no change"],
        ["All of 2026-10", "$174.56", "$174.56", "—"],
    ]
    assert "v2 applies from 2026-11, after 2026-10" in page
    # Nothing of the two trial runs is kept.
    assert not AllocationRun.objects.exists()


def test_the_preview_defaults_to_the_latest_month_with_usage(as_approver, draft):
    response = as_approver.get("/mappings/2/preview/")

    assert response.status_code == 200
    page = page_text(response)
    assert "What v2 would change in 2026-10" in page
    assert "Nothing would move: every cent of 2026-10 lands where it lands with v1." in page


def test_the_preview_says_plainly_when_the_month_has_no_invoice(as_approver, draft):
    response = as_approver.get("/mappings/2/preview/?period=2026-09")

    assert response.status_code == 200
    assert (
        "There is no provider invoice for 2026-09, so there is no money to move yet, "
        "and no usage was recorded in that month either." in page_text(response)
    )

    bad = as_approver.get("/mappings/2/preview/?period=October")
    assert bad.status_code == 400
    assert '<ul class="errorlist" id="id_period_error"><li>Enter a month as YYYY-MM.</li></ul>' in page_text(bad)


def test_the_yaml_export_loads_back_as_the_same_rules_and_pools(as_approver, world):
    response = as_approver.get("/mappings/1/mapping.yaml")

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="mapping-v1.yaml"'
    text = response.content.decode()
    document, lines = yaml_parse(text=text, source="mapping-v1.yaml", error_code="mapping_invalid")
    loaded = mapping_load(document=document, source="mapping-v1.yaml", lines=lines)
    again, original = mapping_content(version=loaded), mapping_content(version=world["signed"])
    assert {**again, "number": 1} == original


def test_the_sign_off_warns_when_the_first_month_has_already_begun(as_approver, world):
    for name, month in (("Back-dated", "2020-01"), ("Far ahead", "2090-01")):
        as_approver.post("/mappings/", {"name": name, "effective_from": month, "copy_from": "1"})

    back_dated = page_text(as_approver.get("/mappings/2/"))
    ahead = page_text(as_approver.get("/mappings/3/"))

    warning = "has already begun: signed, v{} would re-map that month and every later one at their next allocation run."
    assert "2020-01 " + warning.format(2) in back_dated
    assert "would re-map" not in ahead


def test_a_move_out_of_range_is_refused_and_changes_nothing(as_approver, draft):
    rule = draft.rules.get(position=1)
    before = _rules(draft)

    response = as_approver.post(f"/mappings/2/rules/{rule.pk}/move/", {"position": "9"})

    assert response.status_code == 400
    assert "position must be between 1 and 5, not 9" in page_text(response)
    assert _rules(draft) == before


def test_a_loaded_version_names_its_file_without_the_servers_directories(as_approver, world, draft):
    signed = world["signed"]
    assert signed.source.endswith("/mapping.yaml") and signed.source.startswith("/")  # as load_mapping recorded it
    body = as_approver.get(reverse("mapping-version", args=[signed.number])).content.decode()
    assert "Loaded from mapping.yaml" in body
    directory = signed.source.rsplit("/", 1)[0]
    assert directory not in body and signed.source not in body

    MappingVersion.objects.filter(pk=signed.pk).update(source=r"C:\configs\finance\mapping-fy26.yml")
    body = as_approver.get(reverse("mapping-version", args=[signed.number])).content.decode()
    assert "Loaded from mapping-fy26.yml" in body and "configs" not in body

    copied = as_approver.get(reverse("mapping-version", args=[draft.number]))
    assert f"Copy of version {signed.number}" in page_text(copied)
