"""Journal entries and their lines. On PostgreSQL the database also holds what can't be a
CHECK constraint: an entry's debits equal its credits (checked at commit, when all its
lines are in), lines are never changed, and an entry's content never changes (only its
status moves forward, ready -> exported -> acknowledged, with its document number set
once). SQLite, the embedded default, relies on the services."""

import django.db.models.deletion
from django.db import migrations, models

CREATE = """
CREATE OR REPLACE FUNCTION chargeback_journal_entry_balanced() RETURNS trigger AS $$
DECLARE
    debits bigint;
    credits bigint;
BEGIN
    SELECT COALESCE(SUM(debit_cents), 0), COALESCE(SUM(credit_cents), 0) INTO debits, credits
        FROM chargeback_journalline WHERE entry_id = NEW.entry_id;
    IF debits <> credits THEN
        RAISE EXCEPTION 'journal entry % does not balance: debits % and credits % (cents)',
            NEW.entry_id, debits, credits USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER chargeback_journal_entry_balanced
    AFTER INSERT ON chargeback_journalline DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION chargeback_journal_entry_balanced();

CREATE OR REPLACE FUNCTION chargeback_journal_line_frozen() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'journal line % is never changed: reverse its entry', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER chargeback_journal_line_frozen
    BEFORE UPDATE OR DELETE ON chargeback_journalline
    FOR EACH ROW EXECUTE FUNCTION chargeback_journal_line_frozen();

CREATE OR REPLACE FUNCTION chargeback_journal_entry_frozen() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'journal entry % is never deleted: reverse it', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.statement_id, NEW.cost_center_id, NEW.kind, NEW.reverses_id, NEW.company, NEW.period,
        NEW.posting_date, NEW.currency, NEW.memo, NEW.external_id, NEW.created_at)
       IS DISTINCT FROM
       (OLD.statement_id, OLD.cost_center_id, OLD.kind, OLD.reverses_id, OLD.company, OLD.period,
        OLD.posting_date, OLD.currency, OLD.memo, OLD.external_id, OLD.created_at)
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

CREATE TRIGGER chargeback_journal_entry_frozen
    BEFORE UPDATE OR DELETE ON chargeback_journalentry
    FOR EACH ROW EXECUTE FUNCTION chargeback_journal_entry_frozen();
"""

DROP = """
DROP TRIGGER IF EXISTS chargeback_journal_entry_frozen ON chargeback_journalentry;
DROP FUNCTION IF EXISTS chargeback_journal_entry_frozen();
DROP TRIGGER IF EXISTS chargeback_journal_line_frozen ON chargeback_journalline;
DROP FUNCTION IF EXISTS chargeback_journal_line_frozen();
DROP TRIGGER IF EXISTS chargeback_journal_entry_balanced ON chargeback_journalline;
DROP FUNCTION IF EXISTS chargeback_journal_entry_balanced();
"""


def _on_postgresql(sql: str):
    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ('allocation', '0014_allocation_run_corrections'),
        ('chargeback', '0004_statement_pdf'),
    ]

    operations = [
        migrations.CreateModel(
            name='JournalEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('chargeback', 'Chargeback'), ('correction', 'Prior-period correction'), ('adjustment', 'Dispute adjustment'), ('reversal', 'Reversal')], max_length=16)),
                ('company', models.CharField(help_text='The legal entity the ERP books it in (CHARGEBACK_COMPANY)', max_length=32)),
                ('period', models.CharField(help_text='YYYY-MM: the period the money lands in', max_length=7)),
                ('posting_date', models.DateField()),
                ('currency', models.CharField(max_length=3)),
                ('memo', models.CharField(max_length=300)),
                ('external_id', models.CharField(help_text='Stable and deterministic: CB-<period>-<cost center>-<kind>-<n>', max_length=100, unique=True)),
                ('status', models.CharField(choices=[('ready', 'Ready'), ('exported', 'Exported'), ('acknowledged', 'Acknowledged')], default='ready', max_length=16)),
                ('erp_document_number', models.CharField(blank=True, help_text="The ERP's, from its acknowledgement", max_length=64)),
                ('exported_at', models.DateTimeField(blank=True, null=True)),
                ('acknowledged_at', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True, db_index=True, help_text="For the ERP's `updated_after` pulls")),
                ('cost_center', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='journal_entries', to='allocation.costcenter')),
                ('reverses', models.OneToOneField(blank=True, help_text='The entry a reversal undoes (an entry is reversed once at most)', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='reversed_by', to='chargeback.journalentry')),
                ('statement', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='journal_entries', to='chargeback.statement')),
            ],
            options={
                'verbose_name_plural': 'journal entries',
                'ordering': ['period', 'external_id'],
            },
        ),
        migrations.CreateModel(
            name='JournalLine',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('line_no', models.PositiveIntegerField()),
                ('gl_account', models.CharField(max_length=32, verbose_name='GL account')),
                ('debit_cents', models.BigIntegerField(default=0)),
                ('credit_cents', models.BigIntegerField(default=0)),
                ('modality', models.CharField(blank=True, help_text='The grouping key when grouped by modality', max_length=32)),
                ('description', models.CharField(max_length=300)),
                ('cost_center', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='journal_lines', to='allocation.costcenter')),
                ('entry', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='lines', to='chargeback.journalentry')),
            ],
            options={
                'ordering': ['entry', 'line_no'],
            },
        ),
        migrations.AddIndex(
            model_name='journalentry',
            index=models.Index(fields=['period', 'status'], name='journal_entry_period_status'),
        ),
        migrations.AddIndex(
            model_name='journalentry',
            index=models.Index(fields=['updated_at', 'id'], name='journal_entry_updated_cursor'),
        ),
        migrations.AddConstraint(
            model_name='journalentry',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('kind', 'reversal'), ('reverses__isnull', False)), models.Q(models.Q(('kind', 'reversal'), _negated=True), ('reverses__isnull', True)), _connector='OR'), name='journal_entry_reversal_names_its_entry'),
        ),
        migrations.AddConstraint(
            model_name='journalentry',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('status', 'acknowledged'), _negated=True), models.Q(models.Q(('erp_document_number', ''), _negated=True), ('acknowledged_at__isnull', False)), _connector='OR'), name='journal_entry_acknowledged_has_document'),
        ),
        migrations.AddConstraint(
            model_name='journalline',
            constraint=models.UniqueConstraint(fields=('entry', 'line_no'), name='journal_line_unique_number'),
        ),
        migrations.AddConstraint(
            model_name='journalline',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('debit_cents__gt', 0), ('credit_cents', 0)), models.Q(('debit_cents', 0), ('credit_cents__gt', 0)), _connector='OR'), name='journal_line_debit_or_credit'),
        ),
        migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP)),
    ]
