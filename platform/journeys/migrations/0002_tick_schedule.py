from django.db import migrations

TICK_NAME = "journeys: tick"


def add_tick(apps, schema_editor):
    """Beat runs the journeys' tick every minute: new triggers in, due steps out to the step tasks."""
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=TICK_NAME, defaults={"task": "journeys.tick", "interval": every_minute, "args": "[]", "enabled": True}
    )


def remove_tick(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TICK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("journeys", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(add_tick, remove_tick)]
