"""`python manage.py refresh_segments [--all]`: re-materialise segments.

Without --all, the segments whose hourly or daily policy makes them due; with --all, every segment. They are
refreshed in bounded batches under the version guard: queued as batch tasks when a broker is configured, run
here one batch after another when not, and the command reports how they ended.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from segments.models import Segment
from segments.services import segments_due
from segments.tasks import segments_refresh_queue


class Command(BaseCommand):
    help = "Refresh segments: those due per their refresh policy, or every segment with --all."

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="refresh every segment, whatever its policy")
        parser.add_argument("--merchant", help="only this merchant's segments (its slug)")

    def handle(self, *args, **options):
        segments = Segment.objects.all() if options["all"] else Segment.objects.filter(segments_due())
        if options["merchant"]:
            segments = segments.filter(merchant__slug=options["merchant"])
        ids = list(segments.order_by("pk").values_list("pk", flat=True))
        outcome = segments_refresh_queue(segment_ids=ids, actor="command:refresh_segments")
        if outcome["queued"]:
            self.stdout.write(f"Queued {outcome['queued']} segment refreshes.")
        else:
            self.stdout.write(
                f"Refreshed {outcome['refreshed']} segments; {outcome['failed']} failed"
                + (f", {outcome['superseded']} superseded by newer requests" if outcome["superseded"] else "")
                + "."
            )
