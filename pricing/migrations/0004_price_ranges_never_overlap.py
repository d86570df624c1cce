"""On PostgreSQL the database itself refuses overlapping effective ranges of
the same price key within a version (services check the same on SQLite)."""

from django.db import migrations

CREATE = """
CREATE EXTENSION IF NOT EXISTS btree_gist;
ALTER TABLE pricing_price ADD CONSTRAINT price_ranges_never_overlap EXCLUDE USING gist (
    version_id WITH =,
    (coalesce(model_id, 0)) WITH =,
    unit WITH =,
    service_tier WITH =,
    tier WITH =,
    context_above WITH =,
    daterange(effective_from, effective_to, '[)') WITH &&
);
"""
DROP = "ALTER TABLE pricing_price DROP CONSTRAINT IF EXISTS price_ranges_never_overlap;"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("pricing", "0003_catalog_and_price_books")]

    operations = [migrations.RunPython(create, drop)]
