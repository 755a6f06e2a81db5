from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from privacy.models import ActivityStatus, ProcessingActivity
from privacy.records import processing_record_export


class Command(BaseCommand):
    help = "Export the processing register as a record of processing activities (CSV or JSON)."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=["csv", "json"], default="csv", dest="fmt")
        parser.add_argument("--output", "-o", help="Write to this file instead of standard output.")
        parser.add_argument(
            "--approved-only", action="store_true", help="Only approved activities (default: the whole register)."
        )

    def handle(self, *args, fmt: str, output: str | None, approved_only: bool, **options):
        activities = ProcessingActivity.objects.all()
        if approved_only:
            activities = activities.filter(status=ActivityStatus.APPROVED)
        text = processing_record_export(fmt=fmt, actor="command:processing_record", activities=activities)
        if output:
            try:
                Path(output).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"cannot write {output}: {exc.strerror}") from None
            self.stderr.write(f"record of processing written to {output} ({fmt})")
        else:
            self.stdout.write(text, ending="")
