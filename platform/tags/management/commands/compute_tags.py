"""`python manage.py compute_tags [--family F ...] [--as-of ISO-DATETIME]`: run the tagging rules now."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from privacy.services import ProcessingNotPermitted
from tags.command_line import as_of_option, tagging_refused
from tags.rules import FAMILIES, UnknownFamily
from tags.services import tags_compute


class Command(BaseCommand):
    help = "Compute consumers' tags (all families, or those named) and rebuild the bitmap index."

    def add_arguments(self, parser):
        parser.add_argument(
            "--family",
            action="append",
            dest="families",
            metavar="FAMILY",
            help=f"A family to compute (repeatable). One of: {', '.join(FAMILIES)}. Default: all.",
        )
        parser.add_argument(
            "--as-of",
            dest="as_of",
            help="Measure windows from this moment instead of now, e.g. 2010-12-13T23:59:59+00:00 "
            "(for replaying a historical dataset).",
        )

    def handle(self, *args, families=None, as_of=None, **options):
        when = as_of_option(as_of)
        actor = "command:compute_tags"
        try:
            report = tags_compute(
                families=families, actor=actor, as_of=when, progress=lambda line: self.stdout.write(line)
            )
        except UnknownFamily as exc:
            raise CommandError(str(exc)) from exc
        except ProcessingNotPermitted as exc:
            raise tagging_refused(actor=actor, families=families, error=exc) from exc
        loads = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.load_seconds.items())
        if loads:
            self.stdout.write(f"loading: {loads}")
        self.stdout.write(
            self.style.SUCCESS(f"Tagging run {report.run_id} done in {report.seconds:.1f} s: {report.counts()}")
        )
