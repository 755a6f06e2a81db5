"""The audit log's tail becomes checkable, and TRUNCATE is refused.

- `seq` numbers every entry from 1 along the chain (existing entries are numbered in id order), so each append
  can sign a checkpoint of the chain's length and head without counting the table (privacy.audit).
- On PostgreSQL a statement trigger refuses TRUNCATE, which the row triggers of 0002 do not see.
"""

from django.db import migrations, models

NUMBER_POSTGRES = """
ALTER TABLE privacy_auditentry DISABLE TRIGGER privacy_auditentry_append_only;
UPDATE privacy_auditentry AS e SET seq = n.position
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS position FROM privacy_auditentry) AS n
    WHERE e.id = n.id;
ALTER TABLE privacy_auditentry ENABLE TRIGGER privacy_auditentry_append_only;
"""

TRUNCATE_GUARD = """
DROP TRIGGER IF EXISTS privacy_auditentry_no_truncate ON privacy_auditentry;
CREATE TRIGGER privacy_auditentry_no_truncate
    BEFORE TRUNCATE ON privacy_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION privacy_auditentry_refuse_change();
"""

DROP_TRUNCATE_GUARD = "DROP TRIGGER IF EXISTS privacy_auditentry_no_truncate ON privacy_auditentry;"


def number_entries(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(NUMBER_POSTGRES, params=None)
        return
    AuditEntry = apps.get_model("privacy", "AuditEntry")
    for position, pk in enumerate(AuditEntry.objects.order_by("id").values_list("id", flat=True).iterator(), 1):
        AuditEntry.objects.filter(pk=pk).update(seq=position)


def add_truncate_guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRUNCATE_GUARD, params=None)


def drop_truncate_guard(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRUNCATE_GUARD, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("privacy", "0007_privacy_budget"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditentry",
            name="seq",
            field=models.BigIntegerField(
                editable=False, help_text="position in the chain, from 1", null=True, unique=True
            ),
        ),
        migrations.RunPython(number_entries, migrations.RunPython.noop),
        migrations.RunPython(add_truncate_guard, drop_truncate_guard),
    ]
