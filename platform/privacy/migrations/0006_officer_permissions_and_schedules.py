"""Privacy officers get the new queues (data-subject requests, risk flags, counter statements, suppressions),
and beat gets the daily retention purge and risk scan (schedules stay editable in the admin).

The schedules name the consumers layer's tasks by string only; nothing is imported.
"""

from django.db import migrations

OFFICER_GROUP = "Privacy officers"
OFFICER_PERMISSIONS = [
    "view_datasubjectrequest",
    "change_datasubjectrequest",
    "view_riskflag",
    "change_riskflag",
    "view_counterstatement",
    "change_counterstatement",
    "view_suppression",
]

SCHEDULES = [
    # (name, task, minute, hour, description)
    (
        "Event retention purge",
        "consumers.events_purge_expired",
        "30",
        "3",
        "Deletes events older than EVENT_RETENTION_DAYS in bounded batches, then re-tags event-derived families.",
    ),
    (
        "Risk-control scan",
        "consumers.risk_scan",
        "0",
        "4",
        "Runs the risk rules under the approved risk_control activity (refuses without one).",
    ),
]


def grant_officer_permissions(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=OFFICER_GROUP)
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="privacy", codename__in=OFFICER_PERMISSIONS)
    )


def create_schedules(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    for name, task, minute, hour, description in SCHEDULES:
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
        )
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "crontab": crontab, "description": description, "enabled": True}
        )
    # Tell a running beat that the schedule changed (what PeriodicTasks.changed() does outside migrations).
    from django.utils import timezone

    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_schedules(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("privacy", "0005_subject_rights_risk_flags"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(grant_officer_permissions, migrations.RunPython.noop),
        migrations.RunPython(create_schedules, remove_schedules),
    ]
