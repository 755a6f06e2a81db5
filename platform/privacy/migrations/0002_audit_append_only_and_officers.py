"""The audit log is append-only on PostgreSQL (a trigger refuses UPDATE and DELETE),
and privacy officers get a group with exactly the permissions they need."""

from django.db import migrations

from dbtools.backend import on_postgresql

TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION privacy_auditentry_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % refused on privacy_auditentry', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS privacy_auditentry_append_only ON privacy_auditentry;
CREATE TRIGGER privacy_auditentry_append_only
    BEFORE UPDATE OR DELETE ON privacy_auditentry
    FOR EACH ROW EXECUTE FUNCTION privacy_auditentry_refuse_change();
"""

DROP_SQL = """
DROP TRIGGER IF EXISTS privacy_auditentry_append_only ON privacy_auditentry;
DROP FUNCTION IF EXISTS privacy_auditentry_refuse_change();
"""

OFFICER_GROUP = "Privacy officers"
OFFICER_PERMISSIONS = {
    "privacy": [
        "view_processingactivity", "add_processingactivity", "change_processingactivity",
        "view_consentrecord", "view_consentstate", "view_auditentry",
    ],
}


def add_trigger(apps, schema_editor):
    if on_postgresql(schema_editor.connection):
        schema_editor.execute(TRIGGER_SQL, params=None)


def drop_trigger(apps, schema_editor):
    if on_postgresql(schema_editor.connection):
        schema_editor.execute(DROP_SQL, params=None)


def create_officer_group(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=OFFICER_GROUP)
    for app_label, codenames in OFFICER_PERMISSIONS.items():
        group.permissions.add(*Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("privacy", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(add_trigger, drop_trigger),
        migrations.RunPython(create_officer_group, migrations.RunPython.noop),
    ]
