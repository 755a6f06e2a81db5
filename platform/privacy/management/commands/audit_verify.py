from django.core.management.base import BaseCommand

from privacy.audit import audit_chain_verify


class Command(BaseCommand):
    help = "Verify the audit log's hash chain. Exit 0 when intact, 1 naming the first broken entry."

    def handle(self, *args, **options):
        report = audit_chain_verify()
        if report.intact:
            self.stdout.write(self.style.SUCCESS(f"audit chain intact: {report.checked} entries verified"))
            return
        brk = report.first_break
        self.stderr.write(
            self.style.ERROR(f"audit chain broken at entry {brk.entry_id}: {brk.reason} ({report.checked} checked)")
        )
        raise SystemExit(1)
