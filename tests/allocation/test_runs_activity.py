"""Activity counts as code: loaded, replaced on a repeat, refused whole when bad."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from allocation.models import ActivityCount

from .runs_world import build_org

pytestmark = pytest.mark.django_db


def test_counts_load_and_a_repeat_replaces_them(tmp_path):
    build_org()
    path = tmp_path / "activity.csv"
    path.write_text("period,driver,cost_center,count\n2026-10,jobs_run,CC-110,3\n2026-10,jobs_run,CC-130,1.5\n")
    out = io.StringIO()
    call_command("load_activity", str(path), stdout=out)
    assert json.loads(out.getvalue()) | {"path": None} == {"path": None, "rows": 2, "created": 2, "updated": 0}
    path.write_text("period,driver,cost_center,count\n2026-10,jobs_run,CC-110,4\n")
    call_command("load_activity", str(path), stdout=io.StringIO())
    assert sorted(ActivityCount.objects.values_list("cost_center__code", "count")) == [("CC-110", 4), ("CC-130", 1.5)]


def test_a_bad_file_is_refused_whole_naming_line_and_field(tmp_path):
    build_org()
    path = tmp_path / "bad.csv"
    path.write_text(
        "period,driver,cost_center,count\n"
        "2026-10,jobs_run,CC-110,3\n"
        "2026-13,jobs_run,CC-110,3\n"
        "2026-10,,CC-999,-1\n"
        "2026-10,jobs_run,CC-110,7\n"
    )
    with pytest.raises(CommandError) as caught:
        call_command("load_activity", str(path), stdout=io.StringIO())
    message = str(caught.value)
    assert "bad.csv:3: period '2026-13' is not YYYY-MM" in message
    assert "bad.csv:4: driver is required" in message
    assert "bad.csv:4: cost_center 'CC-999' is not a known cost center code" in message
    assert "bad.csv:4: count out of range: -1" in message
    assert "bad.csv:5: 2026-10 jobs_run CC-110 is also on line 2" in message
    assert not ActivityCount.objects.exists()
