"""The drill-down's two ledger-wide indexes (0015) become per-month partial indexes, made
when a month is allocated (allocation/services/ledger/month_indexes.py): kept over the
whole ledger they halved the ingestion rate (bench/ingest). The months already allocated
get theirs here; the extended statistics of the six tags stay.
"""

from django.db import migrations


def months_allocated_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    from allocation.services.ledger.month_indexes import ledger_month_indexes_ensure
    from pricing.periods import Period

    AllocationRun = apps.get_model("allocation", "AllocationRun")
    for period in sorted(set(AllocationRun.objects.values_list("period", flat=True))):
        ledger_month_indexes_ensure(period=Period.parse(period))


def months_allocated_unindex(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    from allocation.services.ledger.month_indexes import ledger_month_index_names
    from pricing.periods import Period

    AllocationRun = apps.get_model("allocation", "AllocationRun")
    for period in set(AllocationRun.objects.values_list("period", flat=True)):
        for name in ledger_month_index_names(Period.parse(period)):
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):

    dependencies = [
        ("allocation", "0015_usage_line_drilldown"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="usageline", name="usage_line_drilldown"),
        migrations.RemoveIndex(model_name="usageline", name="usage_line_trace"),
        migrations.RunPython(months_allocated_index, months_allocated_unindex),
    ]
