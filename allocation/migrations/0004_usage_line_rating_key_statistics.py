"""On PostgreSQL, multi-column statistics of the rating keys: without them the
planner multiplies each column's distinct count, expects a group per line and
will not aggregate a month in parallel."""

from django.db import migrations

CREATE = """
CREATE STATISTICS IF NOT EXISTS usage_line_rating_keys (ndistinct)
    ON ((occurred_at AT TIME ZONE 'UTC')::date), provider, model, unit, service_tier, tier, context_band
    FROM allocation_usageline;
"""
DROP = "DROP STATISTICS IF EXISTS usage_line_rating_keys;"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("allocation", "0003_rated_usage_by_rating_keys")]

    operations = [migrations.RunPython(create, drop)]
