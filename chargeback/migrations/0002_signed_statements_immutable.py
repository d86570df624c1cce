"""On PostgreSQL the database itself refuses to change a signed-off statement: its lines
can't be inserted, updated or deleted, and its own figures and sign-off can't be edited
(its status may only move from approved to posted). SQLite, the embedded default, relies
on the services."""

from django.db import migrations

SIGNED = "('approved', 'posted')"

CREATE = f"""
CREATE OR REPLACE FUNCTION chargeback_statement_line_frozen() RETURNS trigger AS $$
DECLARE
    statement_status text;
BEGIN
    SELECT status INTO statement_status FROM chargeback_statement
        WHERE id = COALESCE(NEW.statement_id, OLD.statement_id);
    IF statement_status IN {SIGNED} THEN
        RAISE EXCEPTION 'statement % is signed off: its lines cannot change',
            COALESCE(NEW.statement_id, OLD.statement_id) USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN COALESCE(NEW, OLD);
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER chargeback_statement_line_frozen
    BEFORE INSERT OR UPDATE OR DELETE ON chargeback_statementline
    FOR EACH ROW EXECUTE FUNCTION chargeback_statement_line_frozen();

CREATE OR REPLACE FUNCTION chargeback_statement_frozen() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status IN {SIGNED} THEN
            RAISE EXCEPTION 'statement % is signed off: it cannot be deleted', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status IN {SIGNED} AND (
        NEW.status NOT IN {SIGNED}
        OR (OLD.status = 'posted' AND NEW.status <> 'posted')
        OR (NEW.period, NEW.cost_center_id, NEW.run_id, NEW.currency, NEW.total, NEW.chargeback, NEW.showback,
            NEW.unallocated, NEW.corrections, NEW.adjustments, NEW.previous_total, NEW.line_count,
            NEW.content_hash, NEW.approved_at, NEW.approved_by_id)
           IS DISTINCT FROM
           (OLD.period, OLD.cost_center_id, OLD.run_id, OLD.currency, OLD.total, OLD.chargeback, OLD.showback,
            OLD.unallocated, OLD.corrections, OLD.adjustments, OLD.previous_total, OLD.line_count,
            OLD.content_hash, OLD.approved_at, OLD.approved_by_id)
    ) THEN
        RAISE EXCEPTION 'statement % is signed off: its content cannot change', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER chargeback_statement_frozen
    BEFORE UPDATE OR DELETE ON chargeback_statement
    FOR EACH ROW EXECUTE FUNCTION chargeback_statement_frozen();
"""

DROP = """
DROP TRIGGER IF EXISTS chargeback_statement_frozen ON chargeback_statement;
DROP FUNCTION IF EXISTS chargeback_statement_frozen();
DROP TRIGGER IF EXISTS chargeback_statement_line_frozen ON chargeback_statementline;
DROP FUNCTION IF EXISTS chargeback_statement_line_frozen();
"""


def _on_postgresql(sql: str):
    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("chargeback", "0001_close")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP))]
