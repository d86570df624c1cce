"""The ledger's indexes for the close's drill-down: a statement line's calls by its tags
and time (keyset pages), and one trace's calls. bench/close measures them on 10M lines;
each costs ingestion some server time a line (see bench/README.md).

On PostgreSQL, statistics of the six tags together: a feature belongs to one team and a
model to one provider, so the planner, multiplying the columns' own selectivities,
took a line's 60,000 calls for 12 and filtered a trace's dozen calls through them
(55 ms instead of 0.1 ms). Taken by the next ANALYZE (autovacuum's, on a live ledger).
"""

from django.db import migrations, models

STATISTICS = "usage_line_drilldown_tags"


def statistics_create(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE STATISTICS IF NOT EXISTS {STATISTICS} (dependencies, mcv) "
            "ON feature, team, environment, model, provider, modality FROM allocation_usageline"
        )


def statistics_drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP STATISTICS IF EXISTS {STATISTICS}")


class Migration(migrations.Migration):

    dependencies = [
        ('allocation', '0014_allocation_run_corrections'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='usageline',
            index=models.Index(fields=['feature', 'team', 'environment', 'model', 'provider', 'modality', 'occurred_at'], name='usage_line_drilldown'),
        ),
        migrations.AddIndex(
            model_name='usageline',
            index=models.Index(fields=['trace_id'], name='usage_line_trace'),
        ),
        migrations.RunPython(statistics_create, statistics_drop),
    ]
