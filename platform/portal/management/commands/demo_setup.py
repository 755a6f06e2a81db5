"""`python manage.py demo_setup`: a believable demo, from an empty database to a portal full of data.

Run by `make demo` after `migrate`. Idempotent: every step looks at what is already there and only adds what is
missing, so running it twice changes nothing. Each step uses the platform's own commands and services (seed_demo,
compute_tags, segment and campaign services, train_recommender), exactly as an operator would, and a step whose
service is not part of this installation is skipped with a note instead of failing the whole setup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from merchants.models import Merchant, Role
from merchants.services import membership_grant, merchant_create
from privacy.models import ActivityStatus, LegalBasis, ProcessingActivity, Purpose
from privacy.services import activity_approve

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - a demo login printed on purpose; refused in production
OFFICER_GROUP = "Privacy officers"


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    roles: tuple[tuple[str, str], ...]  # (merchant slug, role)
    staff: bool = False


MERCHANTS = (("acme-outdoor", "Acme Outdoor"), ("globex-beauty", "Globex Beauty"))
USERS = (
    DemoUser("demo", "Dana", (("acme-outdoor", Role.OWNER), ("globex-beauty", Role.MARKETER))),
    DemoUser("analyst", "Ari", (("acme-outdoor", Role.ANALYST),)),
    DemoUser("officer", "Olu", (), staff=True),
)

# The register the demo runs under: one lawful activity per purpose, written as an officer would.
ACTIVITIES = {
    Purpose.TAGGING: dict(
        name="Audience tags and insights",
        legal_basis=LegalBasis.BUSINESS_IMPROVEMENT,
        description="Derives anonymised tags (age range, country, interests, loyalty, lifecycle, personas) from "
        "marketplace behaviour so merchants can pick audiences and see aggregate insights.",
        assessment="Merchants cannot understand their audiences without behavioural data; tags are computed on "
        "pseudonymised records and shown only as counts of at least 100, rounded, which a reasonable person "
        "would consider appropriate for improving the marketplace's services.",
        data_categories="Pseudonymised behaviour events, age range, country",
        recipients="Merchants (aggregate counts only)",
        retention="Raw events 400 days; tags until the next tagging run",
        safeguards="Keyed pseudonyms, k-anonymous counts, audit log",
    ),
    Purpose.RECOMMENDATION: dict(
        name="Product recommendations",
        legal_basis=LegalBasis.BUSINESS_IMPROVEMENT,
        description="Learns which products consumers are likely to want from views, carts and purchases, to "
        "personalise in-app promotions with products from the sending merchant's own catalogue.",
        assessment="Personalised recommendations need individual interaction histories; models are trained on "
        "pseudonymised data and serve only the asking merchant's catalogue.",
        data_categories="Pseudonymised interaction events",
        recipients="Consumers (their own recommendations)",
        retention="Models replaced on every training run",
        safeguards="Pseudonymised training data; no merchant sees another's catalogue",
    ),
    Purpose.DIRECT_MARKETING: dict(
        name="In-app promotional campaigns",
        legal_basis=LegalBasis.CONSENT,
        description="Sends merchants' promotions to consumers who gave express opt-in consent to direct "
        "marketing; a withdrawal takes effect before the next send.",
        data_categories="Consent state, segment membership, recommendations",
        recipients="Consumers who opted in",
        retention="Deliveries 400 days",
        safeguards="Consent checked at every send, frequency caps, suppression list",
    ),
    Purpose.RISK_CONTROL: dict(
        name="Fraud and coupon-abuse flags",
        legal_basis=LegalBasis.LEGITIMATE_INTERESTS,
        description="Flags rings of accounts sharing devices and abnormal cancellation ratios, so offers are not "
        "abused; flagged consumers do not receive offers.",
        assessment="Balancing test: coupon fraud costs merchants and honest consumers; the adverse effect on a "
        "flagged consumer is limited to not receiving offers, and a counter statement lifts the flag.",
        disclosure_url="https://marketplace.example/privacy/legitimate-interests",
        counter_statement_channel="In-app form under Privacy > Counter statement",
        data_categories="Pseudonymised device ids, order cancellations",
        recipients="The platform operator",
        retention="Flags 12 months",
        safeguards="Counter-statement review by a privacy officer",
    ),
}


class Command(BaseCommand):
    help = (
        "Create a demo: merchants, users, an approved register, a synthetic marketplace, tags, segments, "
        "a trained recommender and a finished campaign. Idempotent."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--consumers", type=int, default=5000)
        parser.add_argument("--products", type=int, default=600)
        parser.add_argument("--events", type=int, default=150_000)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--password", default=DEMO_PASSWORD, help="password for the demo users (new users only)")

    def handle(self, *args, **options) -> None:
        if settings.PRODUCTION:
            raise CommandError("demo_setup creates users with a known password; it refuses to run in production.")
        self.options = options
        steps: list[tuple[str, Callable[[], str]]] = [
            ("Merchants and users", self.step_merchants_and_users),
            ("Processing register", self.step_register),
        ]
        for title, step in steps:
            self.stdout.write(self.style.MIGRATE_HEADING(f"• {title}"))
            note = step()
            if note:
                self.stdout.write(f"  {note}")
        self.print_login()

    # ------------------------------------------------------------------------------------------- the steps

    def step_merchants_and_users(self) -> str:
        User = get_user_model()
        merchants = {}
        for slug, name in MERCHANTS:
            merchants[slug] = Merchant.objects.filter(slug=slug).first() or merchant_create(slug=slug, name=name)
        created = []
        with transaction.atomic():
            for spec in USERS:
                user = User.objects.filter(username=spec.username).first()
                if user is None:
                    user = User.objects.create_user(
                        username=spec.username,
                        password=self.options["password"],
                        first_name=spec.first_name,
                        is_staff=spec.staff,
                    )
                    created.append(spec.username)
                for slug, role in spec.roles:
                    membership_grant(user=user, merchant=merchants[slug], role=role)
                if spec.staff:
                    user.groups.add(Group.objects.get(name=OFFICER_GROUP))
        return f"created users: {', '.join(created)}" if created else "merchants and users already there"

    def step_register(self) -> str:
        officer = get_user_model().objects.get(username="officer")
        approved = []
        for purpose, fields in ACTIVITIES.items():
            if ProcessingActivity.objects.filter(purpose=purpose, status=ActivityStatus.APPROVED).exists():
                continue
            activity, _ = ProcessingActivity.objects.get_or_create(
                name=fields["name"], purpose=purpose, defaults={k: v for k, v in fields.items() if k != "name"}
            )
            activity_approve(activity=activity, officer=officer)
            approved.append(purpose)
        return f"approved: {', '.join(approved)}" if approved else "all four purposes already approved"

    def print_login(self) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Demo ready."))
        self.stdout.write(f"  Portal: sign in as “demo” / “{self.options['password']}” (owner of Acme Outdoor,")
        self.stdout.write("          marketer of Globex Beauty), or “analyst” (read-only role) with the same password.")
        self.stdout.write(f"  Admin:  /admin/ as “officer” / “{self.options['password']}” (privacy officer).")
        self.stdout.write("  (Passwords are set only when a user is first created.)")
