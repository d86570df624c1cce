"""Organization as code: `load_org` creates, updates, and refuses an invalid file whole."""

import datetime
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from allocation.models import CostCenter, Feature, Team, Tenant
from allocation.services.org import org_load, org_load_file
from pricing.errors import NotFound, ValidationFailed

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "org"

VALID_CC = """\
  - code: CC-1
    name: One
    owner: Owner
    gl_expense_account: "6420-1"
    gl_recovery_account: "6490-1"
    active_from: 2024-01-01
"""


def _counts() -> tuple[int, int, int, int]:
    return CostCenter.objects.count(), Team.objects.count(), Feature.objects.count(), Tenant.objects.count()


def _snapshot() -> list[tuple]:
    """Every cost object's fields, to prove a refused load changed nothing."""
    return [
        *CostCenter.objects.values_list(
            "code",
            "name",
            "owner",
            "gl_expense_account",
            "gl_recovery_account",
            "parent__code",
            "active_from",
            "active_to",
        ),
        *Team.objects.values_list("code", "name", "cost_center__code"),
        *Feature.objects.values_list("code", "name", "team__code"),
        *Tenant.objects.values_list("code", "name"),
    ]


def _run(path: Path) -> dict:
    out = []

    class Out:
        def write(self, text: str) -> None:
            out.append(text)

    call_command("load_org", str(path), stdout=Out())
    return json.loads("".join(out))


def test_load_org_creates_the_organization_then_changes_nothing_on_a_second_run():
    first = _run(FIXTURES / "valid.yaml")

    assert first["cost_centers"] == {"created": 3, "updated": 0, "unchanged": 0}
    assert first["teams"] == {"created": 3, "updated": 0, "unchanged": 0}
    assert first["features"] == {"created": 4, "updated": 0, "unchanged": 0}
    assert first["tenants"] == {"created": 2, "updated": 0, "unchanged": 0}
    assert first["created"] == 12
    support = CostCenter.objects.get(code="CC-120")
    assert support.parent.code == "CC-100"
    assert support.owner == "Alan Turing"
    assert support.gl_expense_account == "6420-120"
    assert support.gl_recovery_account == "6490-120"
    assert support.active_from == datetime.date(2024, 3, 1)  # quoted in the file
    assert support.active_to == datetime.date(2025, 12, 31)
    assert CostCenter.objects.get(code="CC-100").parent is None
    assert Team.objects.get(code="ranking").cost_center.code == "CC-110"
    assert Feature.objects.get(code="rerank").team.code == "ranking"
    assert Tenant.objects.get(code="acme").name == "Acme Corp"
    before = _snapshot()

    second = _run(FIXTURES / "valid.yaml")

    assert second["created"] == 0
    assert second["updated"] == 0
    assert second["unchanged"] == 12
    assert _snapshot() == before


def test_load_org_updates_what_changed_and_reports_it():
    _run(FIXTURES / "valid.yaml")

    result = _run(FIXTURES / "updated.yaml")

    assert result["cost_centers"] == {"created": 0, "updated": 1, "unchanged": 2}
    assert result["teams"] == {"created": 0, "updated": 1, "unchanged": 2}
    assert result["features"] == {"created": 0, "updated": 0, "unchanged": 4}
    assert result["tenants"] == {"created": 1, "updated": 0, "unchanged": 2}
    assert CostCenter.objects.get(code="CC-110").owner == "Barbara Liskov"
    assert Team.objects.get(code="ranking").cost_center.code == "CC-120"
    assert _counts() == (3, 3, 4, 3)


def test_references_may_point_at_the_database(tmp_path):
    _run(FIXTURES / "valid.yaml")
    text = """\
cost_centers:
  - code: CC-130
    name: Ranking
    owner: Owner
    gl_expense_account: "6420-130"
    gl_recovery_account: "6490-130"
    parent: CC-100
    active_from: 2025-01-01
teams:
  - {code: ads, name: Ads, cost_center: CC-110}
features:
  - {code: ad-copy, name: Ad copy, team: support-ai}
"""
    path = tmp_path / "more.yaml"
    path.write_text(text)

    result = org_load_file(path=path)

    assert result.created == 3
    assert CostCenter.objects.get(code="CC-130").parent.code == "CC-100"
    assert Feature.objects.get(code="ad-copy").team.cost_center.code == "CC-120"


def test_a_file_with_many_errors_is_refused_whole_naming_each_entry_and_field(capsys):
    before = _counts()

    with pytest.raises(CommandError, match="refused: 9 error"):
        call_command("load_org", str(FIXTURES / "invalid_many.yaml"))

    stderr = capsys.readouterr().err.splitlines()
    source = str(FIXTURES / "invalid_many.yaml")
    assert stderr == [
        f"{source}:13: cost_centers[1] (code=CC-201): gl_expense_account must be text, got int 6420 (quote it)",
        f"{source}:15: cost_centers[1] (code=CC-201): active_from is not a date (YYYY-MM-DD): '2024-13-01'",
        f"{source}:22: cost_centers[2] (code=CC-202): active_to 2025-01-31 is before active_from 2025-06-01",
        f"{source}:23: cost_centers[2] (code=CC-202): colour is not a known field; fields are code, name, owner, "
        "gl_expense_account, gl_recovery_account, parent, active_from, active_to",
        f"{source}:29: cost_centers[3] (code=CC-203): parent makes a cycle: CC-203 -> CC-204 -> CC-203",
        f"{source}:38: cost_centers[5] (code=CC-200): code 'CC-200' is also defined at cost_centers[0]",
        f"{source}:47: teams[1] (code=nameless): name is required",
        f"{source}:48: teams[2] (code=lost): cost_center 'CC-999' is not defined in the file or the database",
        f"{source}:51: features[0] (code=orphan): team 'nobody' is not defined in the file or the database",
    ]
    # The valid entries of the file (CC-200, team search, tenant acme) were not written either.
    assert _counts() == before == (0, 0, 0, 0)


def test_a_refused_file_leaves_an_existing_organization_as_it_was(tmp_path):
    _run(FIXTURES / "valid.yaml")
    before = _snapshot()
    text = (FIXTURES / "updated.yaml").read_text() + "  - {code: ghost, name: Ghost, team: nobody}\n"
    bad = tmp_path / "updated_and_broken.yaml"
    bad.write_text(text.replace("tenants:\n", "features_extra:\n  []\ntenants:\n"))

    with pytest.raises(ValidationFailed) as refused:
        org_load_file(path=bad)

    assert refused.value.code == "org_invalid"
    assert any("features_extra: unknown section" in e for e in refused.value.extra["errors"])
    assert any("tenants[3] (code=ghost): team is not a known field" in e for e in refused.value.extra["errors"])
    # The owner change and the team move in the same file were not applied.
    assert _snapshot() == before
    assert CostCenter.objects.get(code="CC-110").owner == "Grace Hopper"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "cost_centers:\n  - code: CC-1\n    name: One\n",
            [
                "source.yaml:2: cost_centers[0] (code=CC-1): owner is required",
                "source.yaml:2: cost_centers[0] (code=CC-1): gl_expense_account is required",
                "source.yaml:2: cost_centers[0] (code=CC-1): gl_recovery_account is required",
                "source.yaml:2: cost_centers[0] (code=CC-1): active_from is required",
            ],
            id="required-fields",
        ),
        pytest.param(
            "tenants:\n  - {code: 42, name: [a, b]}\n",
            [
                "source.yaml:2: tenants[0]: code must be text, got int 42 (quote it)",
                "source.yaml:2: tenants[0]: name must be text, got list ['a', 'b']",
            ],
            id="types",
        ),
        pytest.param(
            "cost_centers:\n" + VALID_CC.replace("2024-01-01", "2024-01-01 10:00"),
            ["source.yaml:7: cost_centers[0] (code=CC-1): active_from is not a date (YYYY-MM-DD): '2024-01-01 10:00'"],
            id="date-format",
        ),
        pytest.param(
            "cost_centers:\n" + VALID_CC + "    active_to: 2023-12-31\n",
            ["source.yaml:8: cost_centers[0] (code=CC-1): active_to 2023-12-31 is before active_from 2024-01-01"],
            id="active-to-before-active-from",
        ),
        pytest.param(
            "teams:\n  - {code: a, name: A, cost_center: CC-404, budget: 10}\n",
            [
                "source.yaml:2: teams[0] (code=a): budget is not a known field; fields are code, name, cost_center",
                "source.yaml:2: teams[0] (code=a): cost_center 'CC-404' is not defined in the file or the database",
            ],
            id="unknown-field-and-reference",
        ),
        pytest.param(
            "tenants:\n  - {code: acme, name: A}\n  - {code: acme, name: B}\n",
            ["source.yaml:3: tenants[1] (code=acme): code 'acme' is also defined at tenants[0]"],
            id="duplicate-code",
        ),
        pytest.param(
            "cost_centers:\n" + VALID_CC + "    parent: CC-1\n",
            ["source.yaml:8: cost_centers[0] (code=CC-1): parent makes a cycle: CC-1 -> CC-1"],
            id="own-parent",
        ),
        pytest.param(
            "cost_centers:\n" + VALID_CC + "    parent: CC-0\n",
            ["source.yaml:8: cost_centers[0] (code=CC-1): parent 'CC-0' is not defined in the file or the database"],
            id="unknown-parent",
        ),
        pytest.param(
            "features:\n  - {code: f, name: F, team: ghost}\n",
            ["source.yaml:2: features[0] (code=f): team 'ghost' is not defined in the file or the database"],
            id="unknown-team",
        ),
        pytest.param(
            "teams: {code: a}\ntenant: []\n",
            [
                "source.yaml:1: teams: must be a list of entries, got dict",
                "source.yaml:2: tenant: unknown section; sections are cost_centers, teams, features, tenants",
            ],
            id="sections",
        ),
        pytest.param(
            "tenants:\n  - acme\n",
            ["source.yaml:2: tenants[0]: must be a mapping of fields, got str"],
            id="entry-not-a-mapping",
        ),
        pytest.param(
            "tenants:\n  - {code: acme, name: Acme\n",
            [
                "source.yaml:3:1: YAML syntax error: expected ',' or '}', but got '<stream end>' "
                "(while parsing a flow mapping on line 2)"
            ],
            id="yaml-syntax",
        ),
        pytest.param("", ["source.yaml: the file is empty"], id="empty"),
        pytest.param(
            "- just a list\n",
            ["source.yaml: expected a mapping with cost_centers, teams, features, tenants, got list"],
            id="not-a-mapping",
        ),
        pytest.param(
            "cost_centers:\n" + VALID_CC.replace("2024-01-01", "'20240101'"),
            ["source.yaml:7: cost_centers[0] (code=CC-1): active_from is not a date (YYYY-MM-DD): '20240101'"],
            id="date-without-dashes",
        ),
        pytest.param(
            "cost_centers:\n" + VALID_CC.replace("2024-01-01", "20240101"),
            ["source.yaml:7: cost_centers[0] (code=CC-1): active_from must be a date (YYYY-MM-DD), got int 20240101"],
            id="date-as-number",
        ),
    ],
)
def test_each_kind_of_error_is_named_and_nothing_is_written(tmp_path, monkeypatch, text, expected):
    monkeypatch.chdir(tmp_path)
    Path("source.yaml").write_text(text)
    with pytest.raises(ValidationFailed) as refused:
        org_load_file(path="source.yaml")

    assert refused.value.extra["errors"] == expected
    assert refused.value.code == "org_invalid"
    assert _counts() == (0, 0, 0, 0)


def test_a_cycle_through_the_database_is_refused():
    _run(FIXTURES / "valid.yaml")
    document = {
        "cost_centers": [
            {
                "code": "CC-100",
                "name": "Technology",
                "owner": "Ada Lovelace",
                "gl_expense_account": "6420-100",
                "gl_recovery_account": "6490-100",
                "parent": "CC-110",
                "active_from": datetime.date(2024, 1, 1),
            }
        ]
    }

    with pytest.raises(ValidationFailed) as refused:
        org_load(document=document, source="api")

    assert refused.value.extra["errors"] == [
        "cost_centers[0] (code=CC-100): parent makes a cycle: CC-100 -> CC-110 -> CC-100"
    ]
    assert CostCenter.objects.get(code="CC-100").parent is None


def test_a_missing_file_is_not_found():
    with pytest.raises(NotFound):
        org_load_file(path=FIXTURES / "no-such-file.yaml")


def test_the_command_exits_non_zero_with_the_errors_on_stderr(capsys):
    with pytest.raises(CommandError) as refused:
        call_command("load_org", str(FIXTURES / "invalid_syntax.yaml"))

    assert "nothing was written" in str(refused.value)
    assert capsys.readouterr().err.strip() == (
        f"{FIXTURES / 'invalid_syntax.yaml'}:6:8: YAML syntax error: expected ',' or '}}', but got ':' "
        "(while parsing a flow mapping on line 5)"
    )
