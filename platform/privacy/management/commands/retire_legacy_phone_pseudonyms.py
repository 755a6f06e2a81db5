import sys

from django.core.management.base import BaseCommand

from privacy.pseudonym_upgrade import legacy_phone_pseudonyms_retire


class Command(BaseCommand):
    help = (
        "After the upgrade to E.164 phone pseudonyms: read phone numbers (one per line, spelled as they were sent "
        "before) and withdraw direct-marketing consent of the consumers held under their old pseudonyms. "
        "Prints counts only."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="a file with one identifier per line, or - for standard input")

    def handle(self, *args, path: str, **options):
        if path == "-":
            report = legacy_phone_pseudonyms_retire(raw_identifiers=sys.stdin, actor="command:retire_legacy_phones")
        else:
            with open(path, encoding="utf-8") as lines:
                report = legacy_phone_pseudonyms_retire(raw_identifiers=lines, actor="command:retire_legacy_phones")
        self.stdout.write(" ".join(f"{key}={value}" for key, value in report.as_dict().items()))
