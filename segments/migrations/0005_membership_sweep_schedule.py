"""Beat entries of real-time segments: the sweep of lapsed windows (every minute) and the nightly full refresh
that brings in what tagging changed (tags are batch)."""

import json

from django.db import migrations

SWEEP_NAME = "segments: sweep real-time segments' lapsed windows"
SWEEP_TASK = "segments.membership_sweep"
REFRESH_NAME = "segments: refresh real-time segments"
REFRESH_TASK = "segments.refresh_due"


def create_entries(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=SWEEP_NAME,
        defaults={
            "task": SWEEP_TASK,
            "interval": every_minute,
            "enabled": True,
            "description": "Re-evaluates members of real-time segments whose within= windows lapsed since the "
            "last sweep, and finishes drains that died.",
        },
    )
    # After the nightly tagging (02:00) and with the daily refreshes (02:30): tags are batch.
    nightly, _ = CrontabSchedule.objects.get_or_create(
        minute="45", hour="2", day_of_month="*", month_of_year="*", day_of_week="*", timezone="UTC"
    )
    PeriodicTask.objects.update_or_create(
        name=REFRESH_NAME,
        defaults={
            "task": REFRESH_TASK,
            "kwargs": json.dumps({"policy": "realtime"}),
            "crontab": nightly,
            "enabled": True,
            "description": "Full refresh of real-time segments, bringing in what the nightly tagging changed.",
        },
    )


def remove_entries(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[SWEEP_NAME, REFRESH_NAME]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("segments", "0004_realtime_scope_transitions"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_entries, remove_entries)]
