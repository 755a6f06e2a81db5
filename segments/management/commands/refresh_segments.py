"""`python manage.py refresh_segments [--all]`: re-materialise segments.

Without --all, the segments whose hourly or daily policy makes them due; with --all, every segment. Each
refresh goes through the queue (and the version guard) like any other; with no broker configured the tasks
run here, one after another, and the command reports how they ended.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from segments.models import Segment, SegmentStatus
from segments.services import segments_due, segments_refresh_enqueue


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
        actor = "command:refresh_segments"
        batch = 500
        for start in range(0, len(ids), batch):
            segments_refresh_enqueue(segment_ids=ids[start : start + batch], actor=actor)
        statuses = dict.fromkeys(SegmentStatus.values, 0)
        for status in Segment.objects.filter(pk__in=ids).values_list("status", flat=True):
            statuses[status] += 1
        summary = ", ".join(f"{count} {status}" for status, count in statuses.items() if count)
        self.stdout.write(f"Queued {len(ids)} segment refreshes" + (f" (now: {summary})" if ids else ""))
