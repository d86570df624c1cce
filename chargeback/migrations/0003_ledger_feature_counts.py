"""Requests and traces per feature, counted from the ledger batch by batch (LedgerFeatureCount)."""


from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chargeback', '0002_signed_statements_immutable'),
    ]

    operations = [
        migrations.CreateModel(
            name='LedgerFeatureCountMark',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('period', models.CharField(max_length=7, unique=True)),
                ('batch_high', models.BigIntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name='LedgerFeatureCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('period', models.CharField(max_length=7)),
                ('batch_id', models.BigIntegerField()),
                ('team', models.CharField(blank=True, max_length=128)),
                ('feature', models.CharField(blank=True, max_length=128)),
                ('environment', models.CharField(blank=True, max_length=32)),
                ('requests', models.BigIntegerField(default=0)),
                ('traces', models.BigIntegerField(default=0)),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('period', 'batch_id', 'team', 'feature', 'environment'), name='ledger_feature_count_unique')],
            },
        ),
    ]
