import json

from django.core.management.base import BaseCommand, CommandError

from consumers.risk import risk_scan
from privacy.services import ProcessingNotPermitted


class Command(BaseCommand):
    help = (
        "Run the risk-control rules (shared devices, multi-account offer redemption, cancellation ratio) and "
        "record flags. Refuses without an approved Legitimate Interests activity for risk_control."
    )

    def handle(self, *args, **options):
        try:
            result = risk_scan(actor="command:risk_scan")
        except ProcessingNotPermitted as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps({"activity_id": result.activity_id, "findings": result.findings, **result.counts}))
