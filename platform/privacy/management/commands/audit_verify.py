from django.core.management.base import BaseCommand

from privacy.audit import audit_chain_verify


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain and that it still reaches its signed checkpoint. Exit 0 when intact, "
        "1 naming the first broken entry or the entries missing from the end."
    )

    def handle(self, *args, **options):
        report = audit_chain_verify()
        if report.intact:
            head = f", head entry {report.head_id} {report.head_hash[:16]}" if report.head_id is not None else ""
            self.stdout.write(self.style.SUCCESS(f"audit chain intact: {report.checked} entries verified{head}"))
            if report.checkpoint_created:
                self.stdout.write(
                    self.style.WARNING("no signed checkpoint was found; one was written for the current head")
                )
            return
        self.stderr.write(self.style.ERROR(f"{report.first_break.describe()} ({report.checked} checked)"))
        raise SystemExit(1)
