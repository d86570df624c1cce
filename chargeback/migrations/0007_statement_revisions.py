"""Statement revisions: a signed statement of a month still open may be reopened by
finance. It becomes superseded (history, its journal entries reversed) and a new
revision takes its place; one statement per cost center and month is live.

On PostgreSQL the triggers of 0002 are replaced so that a signed statement may move to
superseded (its status and the reopen fields alone changing; its content, hash and lines
still frozen), and a superseded statement changes no more."""

from importlib import import_module

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

FROZEN = "('approved', 'posted', 'superseded')"

CREATE = f"""
CREATE OR REPLACE FUNCTION chargeback_statement_line_frozen() RETURNS trigger AS $$
DECLARE
    statement_status text;
BEGIN
    SELECT status INTO statement_status FROM chargeback_statement
        WHERE id = COALESCE(NEW.statement_id, OLD.statement_id);
    IF statement_status IN {FROZEN} THEN
        RAISE EXCEPTION 'statement % is signed off: its lines cannot change',
            COALESCE(NEW.statement_id, OLD.statement_id) USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN COALESCE(NEW, OLD);
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION chargeback_statement_frozen() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status IN {FROZEN} THEN
            RAISE EXCEPTION 'statement % is signed off: it cannot be deleted', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'superseded' AND NEW IS DISTINCT FROM OLD THEN
        RAISE EXCEPTION 'statement % was reopened and superseded: it cannot change', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status IN ('approved', 'posted') AND (
        NEW.status NOT IN {FROZEN}
        OR (OLD.status = 'posted' AND NEW.status NOT IN ('posted', 'superseded'))
        OR (NEW.status <> 'superseded' AND (NEW.reopened_at, NEW.reopened_by_id, NEW.reopen_reason)
            IS DISTINCT FROM (OLD.reopened_at, OLD.reopened_by_id, OLD.reopen_reason))
        OR (NEW.period, NEW.cost_center_id, NEW.run_id, NEW.currency, NEW.total, NEW.chargeback, NEW.showback,
            NEW.unallocated, NEW.corrections, NEW.adjustments, NEW.previous_total, NEW.line_count,
            NEW.content_hash, NEW.approved_at, NEW.approved_by_id, NEW.revision, NEW.replaces_id)
           IS DISTINCT FROM
           (OLD.period, OLD.cost_center_id, OLD.run_id, OLD.currency, OLD.total, OLD.chargeback, OLD.showback,
            OLD.unallocated, OLD.corrections, OLD.adjustments, OLD.previous_total, OLD.line_count,
            OLD.content_hash, OLD.approved_at, OLD.approved_by_id, OLD.revision, OLD.replaces_id)
    ) THEN
        RAISE EXCEPTION 'statement % is signed off: its content cannot change', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""


def _create(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def _restore_0002(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        frozen = import_module("chargeback.migrations.0002_signed_statements_immutable")
        schema_editor.execute(frozen.DROP, params=None)
        schema_editor.execute(frozen.CREATE, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("allocation", "0015_usage_line_drilldown"),
        ("chargeback", "0006_idempotency_keys"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="statement",
            options={"ordering": ["-period", "cost_center__code", "-revision"]},
        ),
        migrations.RemoveConstraint(
            model_name="statement",
            name="statement_one_per_center_and_period",
        ),
        migrations.AddField(
            model_name="statement",
            name="reopen_reason",
            field=models.TextField(blank=True, help_text="Why finance reopened it, as written then"),
        ),
        migrations.AddField(
            model_name="statement",
            name="reopened_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="statement",
            name="reopened_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="statement",
            name="replaces",
            field=models.OneToOneField(
                blank=True,
                help_text="The reopened revision this one takes the place of",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="replaced_by",
                to="chargeback.statement",
            ),
        ),
        migrations.AddField(
            model_name="statement",
            name="revision",
            field=models.PositiveIntegerField(default=1, help_text="1 at first; one more each time it is reopened"),
        ),
        migrations.AlterField(
            model_name="statement",
            name="status",
            field=models.CharField(
                choices=[
                    ("draft", "Draft"),
                    ("in_review", "In review"),
                    ("approved", "Approved"),
                    ("posted", "Posted"),
                    ("superseded", "Reopened (replaced by a revision)"),
                ],
                default="draft",
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="statement",
            constraint=models.UniqueConstraint(
                fields=("period", "cost_center", "revision"), name="statement_one_per_center_period_revision"
            ),
        ),
        migrations.AddConstraint(
            model_name="statement",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "superseded"), _negated=True),
                fields=("period", "cost_center"),
                name="statement_one_live_per_center_and_period",
            ),
        ),
        migrations.AddConstraint(
            model_name="statement",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("status", "superseded"), _negated=True),
                    models.Q(
                        ("reopened_at__isnull", False),
                        ("reopened_by__isnull", False),
                        models.Q(("reopen_reason", ""), _negated=True),
                    ),
                    _connector="OR",
                ),
                name="statement_superseded_has_reopen",
            ),
        ),
        migrations.RunPython(_create, _restore_0002),
    ]
