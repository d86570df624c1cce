"""Each journal entry keeps its lines' JSON, as the API serves it, and its total: the ERP's
page of 500 entries read them instead of building 25,000 lines' JSON on every pull.
Existing entries get theirs from their lines. On PostgreSQL both join what the database
refuses to change on an entry."""

import json

from django.db import migrations, models

FROZEN = """
CREATE OR REPLACE FUNCTION chargeback_journal_entry_frozen() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'journal entry % is never deleted: reverse it', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.statement_id, NEW.cost_center_id, NEW.kind, NEW.reverses_id, NEW.company, NEW.period,
        NEW.posting_date, NEW.currency, NEW.memo, NEW.external_id, NEW.created_at{extra_new})
       IS DISTINCT FROM
       (OLD.statement_id, OLD.cost_center_id, OLD.kind, OLD.reverses_id, OLD.company, OLD.period,
        OLD.posting_date, OLD.currency, OLD.memo, OLD.external_id, OLD.created_at{extra_old})
       OR (OLD.status = 'exported' AND NEW.status = 'ready')
       OR (OLD.status = 'acknowledged' AND (NEW.status <> 'acknowledged'
           OR NEW.erp_document_number IS DISTINCT FROM OLD.erp_document_number))
    THEN
        RAISE EXCEPTION 'journal entry % is never edited: only its status moves forward', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""
WITH_DOCUMENT = FROZEN.format(
    extra_new=", NEW.lines_json, NEW.total_cents", extra_old=", OLD.lines_json, OLD.total_cents"
)
WITHOUT_DOCUMENT = FROZEN.format(extra_new="", extra_old="")


def _money_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def lines_backfill(apps, schema_editor) -> None:
    """The same document `journal_lines_document` writes (chargeback/selectors/journals.py),
    from each entry's lines; copied here as migrations do, so later changes to the app's
    code leave this step as it ran."""
    JournalEntry = apps.get_model("chargeback", "JournalEntry")
    JournalLine = apps.get_model("chargeback", "JournalLine")
    for entry_id in JournalEntry.objects.order_by("id").values_list("id", flat=True).iterator():
        rows = JournalLine.objects.filter(entry_id=entry_id).order_by("line_no")
        array = [
            {
                "line_no": line_no,
                "gl_account": gl_account,
                "cost_center": center,
                "debit_cents": debit,
                "credit_cents": credit,
                "debit": _money_text(debit),
                "credit": _money_text(credit),
                "modality": modality,
                "description": description,
            }
            for line_no, gl_account, center, debit, credit, modality, description in rows.values_list(
                "line_no", "gl_account", "cost_center__code", "debit_cents", "credit_cents", "modality", "description"
            )
        ]
        JournalEntry.objects.filter(pk=entry_id).update(
            lines_json=json.dumps(array), total_cents=sum(line["debit_cents"] for line in array)
        )


def _on_postgresql(sql: str):
    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("chargeback", "0008_idempotency_keys_to_allocation")]

    operations = [
        migrations.AddField(
            model_name="journalentry",
            name="lines_json",
            field=models.TextField(
                default="[]", editable=False, help_text="Its lines as the API gives them: a JSON array, in line order"
            ),
        ),
        migrations.AddField(
            model_name="journalentry",
            name="total_cents",
            field=models.BigIntegerField(default=0, editable=False, help_text="Its debits' sum (= its credits')"),
        ),
        migrations.RunPython(lines_backfill, migrations.RunPython.noop),
        migrations.RunPython(_on_postgresql(WITH_DOCUMENT), _on_postgresql(WITHOUT_DOCUMENT)),
    ]
