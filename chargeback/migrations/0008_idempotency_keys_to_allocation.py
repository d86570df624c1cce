"""The idempotency keys move to `allocation` (the lowest layer that knows actors), so that
allocation's API writes take `Idempotency-Key` too. The kept answers are copied into
allocation's table, as they are (created_at included), before chargeback's is dropped:
a retry after the upgrade still answers as its first request did."""

from django.db import migrations

COLUMNS = ("actor", "key", "method", "path", "fingerprint", "status_code", "body", "created_at")


def _copy(source: str, target: str):
    def run(apps, schema_editor) -> None:
        quote = schema_editor.quote_name
        columns = ", ".join(quote(column) for column in COLUMNS)
        schema_editor.execute(
            f"INSERT INTO {quote(target)} ({columns}) SELECT {columns} FROM {quote(source)} ORDER BY id", params=None
        )

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("chargeback", "0007_statement_revisions"),
        ("allocation", "0017_idempotency_keys"),
    ]

    operations = [
        migrations.RunPython(
            _copy("chargeback_idempotencykey", "allocation_idempotencykey"),
            _copy("allocation_idempotencykey", "chargeback_idempotencykey"),
        ),
        migrations.DeleteModel(name="IdempotencyKey"),
    ]
