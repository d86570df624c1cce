from django.db import migrations


def seed_units(apps, schema_editor):
    from pricing.units import UNIT_CATALOG

    Unit = apps.get_model("pricing", "Unit")
    for unit in UNIT_CATALOG:
        Unit.objects.update_or_create(
            code=unit.code,
            defaults={"name": unit.name, "modality": str(unit.modality), "description": unit.description},
        )


class Migration(migrations.Migration):
    dependencies = [("pricing", "0001_initial")]

    operations = [migrations.RunPython(seed_units, migrations.RunPython.noop)]
