"""Corrections: a run's `correction` status, the closed run it corrects and the period it is
booked in (a correction is always booked in a later one), and a closed run's record of the
late data its corrections account for."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('allocation', '0013_invoices_trust'),
    ]

    operations = [
        migrations.AddField(
            model_name='allocationrun',
            name='booked_in',
            field=models.CharField(blank=True, help_text="A correction's YYYY-MM: the period whose statements carry it", max_length=7, null=True),
        ),
        migrations.AddField(
            model_name='allocationrun',
            name='corrects',
            field=models.ForeignKey(blank=True, help_text="A correction's closed run: the period it corrects", null=True, on_delete=django.db.models.deletion.PROTECT, related_name='corrections', to='allocation.allocationrun'),
        ),
        migrations.AddField(
            model_name='allocationrun',
            name='late_data_checked',
            field=models.JSONField(blank=True, help_text="A closed run's: the late data its period's corrections account for (newest usage batch looked through, invoice line counts, activity counts), so that a booking reads only what came since", null=True),
        ),
        migrations.AlterField(
            model_name='allocationrun',
            name='status',
            field=models.CharField(choices=[('completed', 'Current'), ('superseded', 'Superseded'), ('correction', 'Correction of a closed period')], default='completed', max_length=16),
        ),
        migrations.AddIndex(
            model_name='allocationrun',
            index=models.Index(fields=['booked_in'], name='allocation_run_booked_in'),
        ),
        migrations.AddConstraint(
            model_name='allocationrun',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('status', 'correction'), ('booked_in__isnull', False), ('corrects__isnull', False), ('booked_in__gt', models.F('period'))), models.Q(models.Q(('status', 'correction'), _negated=True), ('booked_in__isnull', True), ('corrects__isnull', True)), _connector='OR'), name='allocation_run_correction_booked_later'),
        ),
    ]
