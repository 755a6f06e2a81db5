from django.core.management.base import BaseCommand, CommandError

from privacy.logins import LoginUnlockError, login_unlock


class Command(BaseCommand):
    help = "Lift a sign-in lockout (portal and admin) for one username, from every address or one. Audited."

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True, help="the staff or merchant user's username")
        parser.add_argument("--address", default=None, help="only the lockout from this IP address")

    def handle(self, *args, username: str, address: str | None, **options):
        try:
            removed = login_unlock(username=username, ip_address=address, actor="command:login_unlock")
        except LoginUnlockError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"unlocked: {removed} lockout record(s) removed"))
