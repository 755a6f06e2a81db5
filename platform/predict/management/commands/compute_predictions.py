"""`python manage.py compute_predictions [--family F ...] [--as-of ISO-DATETIME]`: train and band the predicted
traits now (the nightly schedule runs the same after tagging)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from predict.families import FAMILIES
from predict.models import ModelCard
from predict.services import UnknownPrediction, predictions_compute
from privacy.services import ProcessingNotPermitted
from tags.command_line import as_of_option, tagging_refused


class Command(BaseCommand):
    help = "Train, validate and publish the predicted traits, and write their bands as tags."

    def add_arguments(self, parser):
        parser.add_argument(
            "--family",
            action="append",
            dest="families",
            metavar="FAMILY",
            help=f"A predicted family (repeatable). One of: {', '.join(FAMILIES)}. Default: all.",
        )
        parser.add_argument("--as-of", dest="as_of", help="The moment the data ends, e.g. 2010-12-13T23:59:59+00:00.")

    def handle(self, *args, families=None, as_of=None, **options):
        when = as_of_option(as_of)
        actor = "command:compute_predictions"
        try:
            report = predictions_compute(
                actor=actor, families=families, as_of=when, progress=lambda line: self.stdout.write(line)
            )
        except UnknownPrediction as exc:
            raise CommandError(str(exc)) from exc
        except ProcessingNotPermitted as exc:
            raise tagging_refused(actor=actor, families=families, error=exc) from exc
        for family, card_id in report.cards.items():
            card = ModelCard.objects.get(pk=card_id)
            self.stdout.write(f"{family}: {card.reason}")
        self.stdout.write(self.style.SUCCESS(f"Predictions written in tagging run {report.run_id}."))
