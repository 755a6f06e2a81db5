import json

from django.db import migrations

NIGHTLY_PREDICTIONS = "Nightly predicted traits"


def schedule(apps, schema_editor):
    """Train and band the predicted traits every night at 02:15 UTC, after the 01:30 tagging run. Editable."""
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="15", hour="2", day_of_month="*", month_of_year="*", day_of_week="*", timezone="UTC"
    )
    PeriodicTask.objects.get_or_create(
        name=NIGHTLY_PREDICTIONS,
        defaults={
            "task": "predict.compute",
            "crontab": crontab,
            "kwargs": json.dumps({}),
            "enabled": True,
            "description": "Train, validate and band the predicted traits (predict.tasks.predictions_compute_task).",
        },
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NIGHTLY_PREDICTIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("predict", "0001_initial"),
        ("django_celery_beat", "0018_improve_crontab_helptext"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
