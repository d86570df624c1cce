"""A BRIN index on the ledger's batch, PostgreSQL only.

Lines are written batch after batch, so batch ids follow the table's physical
order and a block-range index finds the lines of the batches after a mark by
reading a few blocks: a rating extending another reads only those lines, not
the month. It is a few hundred kilobytes at 10,000,000 lines and costs
ingestion next to nothing (ranges are summarized by vacuum, not per row).
SQLite has no such index; there the rating reads the period's lines.
"""

from django.db import migrations

INDEX = "usage_line_batch_brin"


def create(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON allocation_usageline USING brin (batch_id)")


def drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("allocation", "0008_rating_sums_for_allocation")]

    operations = [migrations.RunPython(create, drop)]
