"""Beat entries that refresh hourly and daily segments (django-celery-beat's database scheduler)."""

import json

from django.db import migrations

ENTRIES = [
    ("segments: refresh hourly segments", "hourly"),
    ("segments: refresh daily segments", "daily"),
]
TASK = "segments.tasks.segments_refresh_due_task"


def create_entries(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    # Daily refreshes run at 02:30 UTC, after the nightly tagging has rebuilt the bitmaps.
    nightly, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="2", day_of_month="*", month_of_year="*", day_of_week="*", timezone="UTC"
    )
    for name, policy in ENTRIES:
        PeriodicTask.objects.update_or_create(
            name=name,
            defaults={
                "task": TASK,
                "kwargs": json.dumps({"policy": policy}),
                "interval": hourly if policy == "hourly" else None,
                "crontab": nightly if policy == "daily" else None,
                "enabled": True,
                "description": f"Queues refreshes of segments whose refresh policy is {policy}.",
            },
        )


def remove_entries(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _ in ENTRIES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("segments", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_entries, remove_entries)]
