import json

from django.core.management.base import BaseCommand

from consumers.tasks import events_purge_expired


class Command(BaseCommand):
    help = (
        "Delete events older than EVENT_RETENTION_DAYS now (the same bounded, audited job beat runs daily); "
        "re-tagging of the event-derived families follows."
    )

    def handle(self, *args, **options):
        result = events_purge_expired.apply().get()
        self.stdout.write(json.dumps(result))
