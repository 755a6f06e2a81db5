from django.core.management.base import BaseCommand, CommandError

from merchants.models import ApiKeyKind, Merchant
from merchants.services import api_key_issue


class Command(BaseCommand):
    help = "Issue an API key and print it once. Operator keys belong to no merchant."

    def add_arguments(self, parser):
        parser.add_argument("--kind", choices=[k.value for k in ApiKeyKind], required=True)
        parser.add_argument("--merchant", help="merchant slug (merchant keys only)")
        parser.add_argument("--name", default="cli")

    def handle(self, *args, kind, merchant, name, **options):
        merchant_obj = None
        if kind == ApiKeyKind.MERCHANT:
            if not merchant:
                raise CommandError("--merchant is required for a merchant key")
            merchant_obj = Merchant.objects.filter(slug=merchant).first()
            if merchant_obj is None:
                raise CommandError(f"no merchant with slug {merchant!r}")
        elif merchant:
            raise CommandError("an operator key belongs to no merchant; drop --merchant")
        issued = api_key_issue(kind=kind, name=name, merchant=merchant_obj)
        self.stdout.write(issued.raw_key)
