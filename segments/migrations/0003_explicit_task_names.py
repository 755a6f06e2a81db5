"""Beat rows (the refresh entries and every segment's own schedule) refer to the tasks' explicit names."""

from django.db import migrations

RENAMES = {
    "segments.tasks.segments_refresh_due_task": "segments.refresh_due",
    "segments.tasks.segment_refresh_scheduled_task": "segments.refresh_scheduled",
    "segments.tasks.segments_refresh_batch_task": "segments.refresh_batch",
    "segments.tasks.segment_refresh_task": "segments.refresh_segment",
}


def rename(apps, mapping):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    changed = sum(PeriodicTask.objects.filter(task=old).update(task=new) for old, new in mapping.items())
    if changed:
        # Tell a running beat that the schedule changed (what PeriodicTasks.changed() does outside migrations).
        from django.utils import timezone

        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def forwards(apps, schema_editor):
    rename(apps, RENAMES)


def backwards(apps, schema_editor):
    rename(apps, {new: old for old, new in RENAMES.items()})


class Migration(migrations.Migration):
    dependencies = [
        ("segments", "0002_beat_refresh_entries"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
