"""The ledger's indexes for the close's drill-down: a statement line's calls by its tags
and time (keyset pages), and one trace's calls. bench/close measures them on 10M lines;
each costs ingestion some server time a line (see bench/README.md)."""

from django.db import migrations, models


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
    ]
