"""`python manage.py demo_setup`: a believable demo, from an empty database to a portal full of data.

Run by `make demo` after `migrate`. Idempotent: every step looks at what is already there and only adds what is
missing, so running it twice changes nothing. Each step uses the platform's own commands and services (seed_demo,
compute_tags, segment and campaign services, train_recommender), exactly as an operator would, and a step whose
service is not part of this installation is skipped with a note instead of failing the whole setup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from importlib.util import find_spec
from io import StringIO

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from merchants.models import Merchant, Role
from merchants.services import membership_grant, merchant_create
from privacy.models import ActivityStatus, LegalBasis, ProcessingActivity, Purpose
from privacy.services import activity_approve

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - a demo login printed on purpose; refused in production
OFFICER_GROUP = "Privacy officers"
ACTOR = "command:demo_setup"
CAMPAIGN_NAME = "Spring trail sale"
RECOMMENDER = "ease"  # the strongest of the platform's models on a catalogue this size


@dataclass(frozen=True)
class DemoUser:
    username: str
    first_name: str
    roles: tuple[tuple[str, str], ...]  # (merchant slug, role)
    staff: bool = False


# Two of the merchants seed_demo creates (same slugs), so the demo merchant has a catalogue and customers.
MERCHANTS = (("trailhead-outdoor", "Trailhead Outdoor"), ("lumen-beauty", "Lumen Beauty"))
DEMO_MERCHANT = "trailhead-outdoor"
USERS = (
    DemoUser("demo", "Dana", (("trailhead-outdoor", Role.OWNER), ("lumen-beauty", Role.MARKETER))),
    DemoUser("analyst", "Ari", (("trailhead-outdoor", Role.ANALYST),)),
)
OFFICER = DemoUser("officer", "Olu", (), staff=True)

# Saved segments of the demo merchant: (name, expression, refresh policy, description).
SEGMENTS = (
    (
        "Active outdoor and sports fans",
        "(interest:outdoor OR interest:sports) AND NOT lifecycle:churned",
        "daily",
        "Consumers whose strongest interests include outdoor or sports gear and who still shop.",
    ),
    ("Champions and loyal customers", "rfm:champions OR rfm:loyal", "daily", "Our best customers by RFM."),
    ("Customers at risk", "rfm:at_risk OR lifecycle:lapsing", "daily", "Worth a win-back offer."),
    (
        "Bargain hunters in Southeast Asia",
        "discount_sensitivity:high AND (country:SG OR country:MY OR country:ID OR country:TH)",
        "manual",
        "",
    ),
    (
        "Trailhead customers",
        'viewed(merchant="trailhead-outdoor") OR carted(merchant="trailhead-outdoor") '
        'OR purchased(merchant="trailhead-outdoor")',
        "daily",
        "Everyone who has browsed or bought in our store: the spring sale's audience.",
    ),
)
# The demo campaign is a 50/50 test over the store's customers, so that at demo scale each group is large enough
# for its released figures (suppressed below 170) to show and the uplift to be measured, as a real test would be.
CAMPAIGN_SEGMENT = "Trailhead customers"
CAMPAIGN_CONTROL_SHARE = Decimal("0.5")
# Tagging is replayed as of these many days ago (oldest first) so every segment has a history to chart.
REPLAY_DAYS = (35, 28, 21, 14, 7, 0)

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
        "Create a demo: merchants, users, an approved register, a synthetic marketplace, tags, segments with "
        "history, a trained recommender and a finished campaign. Idempotent; skips steps whose service is absent."
    )

    def add_arguments(self, parser) -> None:
        # 10,000 consumers: the smallest marketplace where the demo campaign's groups clear the privacy layer's
        # suppression threshold, so its report shows opens, clicks, purchases and uplift rather than "fewer than".
        parser.add_argument("--consumers", type=int, default=10_000)
        parser.add_argument("--products", type=int, default=600)
        parser.add_argument("--events", type=int, default=300_000)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--password", default=DEMO_PASSWORD, help="password for the demo users (new users only)")
        parser.add_argument(
            "--replay",
            type=int,
            default=len(REPLAY_DAYS),
            help="how many weekly tagging runs to replay for the segments' history (1 = only now)",
        )

    def handle(self, *args, **options) -> None:
        if settings.PRODUCTION:
            raise CommandError("demo_setup creates users with a known password; it refuses to run in production.")
        self.options = options
        steps: list[tuple[str, Callable[[], str]]] = [
            ("Processing register", self.step_register),
            ("Synthetic marketplace", self.step_marketplace),
            ("Merchants and users", self.step_merchants_and_users),
            ("Tags and segments, with a few weeks of history", self.step_tags_and_segments),
            ("Recommendations", self.step_recommender),
            ("Lookalike segment", self.step_lookalike),
            ("A finished campaign with results", self.step_campaign),
        ]
        for title, step in steps:
            self.stdout.write(self.style.MIGRATE_HEADING(f"• {title}"))
            note = step()
            if note:
                self.stdout.write(f"  {note}")
        self.print_login()

    def skipped(self, what: str) -> str:
        return self.style.WARNING(f"skipped: {what} is not part of this installation yet")

    # ------------------------------------------------------------------------------------------- the steps

    def step_register(self) -> str:
        officer = self.user(OFFICER)
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

    def step_marketplace(self) -> str:
        if "seed_demo" not in get_commands():
            return self.skipped("seed_demo")
        from consumers.models import Consumer

        existing = Consumer.objects.count()
        if existing:
            return f"already seeded ({existing:,} consumers)"
        call_command(
            "seed_demo",
            consumers=self.options["consumers"],
            products=self.options["products"],
            events=self.options["events"],
            seed=self.options["seed"],
            stdout=self.stdout,
        )
        return ""

    def step_merchants_and_users(self) -> str:
        merchants = {}
        for slug, name in MERCHANTS:
            merchants[slug] = Merchant.objects.filter(slug=slug).first() or merchant_create(slug=slug, name=name)
        created = []
        with transaction.atomic():
            for spec in USERS:
                user, new = self.user_with_flag(spec)
                if new:
                    created.append(spec.username)
                for slug, role in spec.roles:
                    membership_grant(user=user, merchant=merchants[slug], role=role)
        return f"created users: {', '.join(created)}" if created else "merchants and users already there"

    def step_tags_and_segments(self) -> str:
        if "compute_tags" not in get_commands():
            return self.skipped("tagging (compute_tags)")
        if find_spec("segments.services") is None:
            from tags.models import Tag

            if not Tag.objects.exists():
                call_command("compute_tags", stdout=self.quiet())
            return self.skipped("segments")
        from segments.models import Segment

        merchant = Merchant.objects.get(slug=DEMO_MERCHANT)
        if Segment.objects.filter(merchant=merchant, name=SEGMENTS[0][0]).exists():
            return "segments already there"
        days = REPLAY_DAYS[-max(1, min(self.options["replay"], len(REPLAY_DAYS))) :]
        now = timezone.now()
        segments = []
        for i, days_ago in enumerate(days):
            when = now - timedelta(days=days_ago)
            # Tags as they were then; the last run is now, so the tags in force are current.
            call_command("compute_tags", **({"as_of": when.isoformat()} if days_ago else {}), stdout=self.quiet())
            if i == 0:
                segments = [self.segment_create(merchant, *spec) for spec in SEGMENTS]
            for segment in segments:
                self.segment_refresh_at(segment, when if days_ago else None, just_created=i == 0)
            self.stdout.write(f"  tags as of {when:%d %b}: {len(segments)} segments refreshed")
        return f"{len(segments)} segments with {len(days)} refreshes each"

    def segment_create(self, merchant, name: str, expression: str, policy: str, description: str):
        from segments.services import segment_create

        return segment_create(
            merchant=merchant,
            name=name,
            expression=expression,
            refresh_policy=policy,
            description=description,
            actor=ACTOR,
        )

    def segment_refresh_at(self, segment, when, *, just_created: bool) -> None:
        """Refresh synchronously; a replayed refresh is stamped with the date it replays."""
        from segments.models import SegmentSnapshot
        from segments.selectors import segment_latest_snapshot
        from segments.services import segment_refresh

        snapshot = None
        if just_created:  # creating queued a first refresh; in embedded mode it has already run
            snapshot = segment_latest_snapshot(segment_id=segment.pk)
        if snapshot is None:
            snapshot = segment_refresh(segment_id=segment.pk, actor=ACTOR)
        if when is not None:
            SegmentSnapshot.objects.filter(pk=snapshot.pk).update(computed_at=when)

    def step_recommender(self) -> str:
        if "train_recommender" not in get_commands():
            return self.skipped("the recommender (train_recommender)")
        from recommend.selectors import serving_model

        if serving_model() is not None:
            return "a model is already serving"
        call_command("train_recommender", algorithm=RECOMMENDER, stdout=self.stdout)
        return ""

    def step_lookalike(self) -> str:
        if find_spec("segments.services") is None:
            return self.skipped("segments")
        from segments.models import Segment
        from segments.services import lookalike_create

        merchant = Merchant.objects.get(slug=DEMO_MERCHANT)
        seed = Segment.objects.filter(merchant=merchant, name=SEGMENTS[1][0]).first()
        if seed is None:
            return "skipped: no seed segment"
        name = f"Like our {SEGMENTS[1][0].lower()}"
        if Segment.objects.filter(merchant=merchant, name=name).exists():
            return "lookalike already there"
        lookalike = lookalike_create(seed=seed, name=name, size=800, actor=ACTOR)
        self.segment_refresh_at(lookalike, None, just_created=True)  # creating queued its first refresh
        return f"“{name}” created"

    def step_campaign(self) -> str:
        if find_spec("campaigns.services") is None:
            return self.skipped("campaigns")
        from campaigns.models import Campaign

        merchant = Merchant.objects.get(slug=DEMO_MERCHANT)
        if Campaign.objects.filter(merchant=merchant, name=CAMPAIGN_NAME).exists():
            return "campaign already there"
        return demo_campaign_run(merchant=merchant, stdout=self.stdout, seed=self.options["seed"])

    # ------------------------------------------------------------------------------------------- helpers

    def user(self, spec: DemoUser):
        return self.user_with_flag(spec)[0]

    def user_with_flag(self, spec: DemoUser):
        User = get_user_model()
        user = User.objects.filter(username=spec.username).first()
        new = user is None
        if new:
            user = User.objects.create_user(
                username=spec.username,
                password=self.options["password"],
                first_name=spec.first_name,
                is_staff=spec.staff,
            )
        if spec.staff:
            user.groups.add(Group.objects.get(name=OFFICER_GROUP))
        return user, new

    def quiet(self):
        return StringIO()

    def print_login(self) -> None:
        password = self.options["password"]
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS("Demo ready."))
        self.stdout.write(f"  Portal: sign in as “demo” / “{password}” (owner of Trailhead Outdoor, marketer of")
        self.stdout.write(f"          Lumen Beauty), or “analyst” / “{password}” (analyst of Trailhead Outdoor:")
        self.stdout.write("          builds and edits segments, reads campaigns and reports; cannot launch campaigns")
        self.stdout.write("          or manage API keys).")
        self.stdout.write(f"  Admin:  /admin/ as “officer” / “{password}” (privacy officer).")
        self.stdout.write("  (Passwords are set only when a user is first created.)")


# The demo campaign's results come from the operator's side, simulated here the way the operator's app would
# report them: opens and clicks through the tracking service, purchases through event ingestion. The rates are
# set so the treatment group converts better than the held-out control group, as a good campaign would.
OPEN_RATE, CLICK_RATE = 0.46, 0.33  # click rate among those who opened
# A week's purchases among the store's own customers during a sale: 10 % buy anyway, 16 % after the message.
TREATMENT_PURCHASE_RATE, CONTROL_PURCHASE_RATE = 0.16, 0.10


def demo_campaign_run(*, merchant: Merchant, stdout, seed: int) -> str:
    import random
    import time

    from campaigns.models import CampaignStatus, Delivery, DeliveryStatus
    from campaigns.models import Group as DeliveryGroup
    from campaigns.services import campaign_create, campaign_launch
    from campaigns.tracking import TrackingInput, tracking_events_record
    from segments.models import Segment

    include = list(Segment.objects.filter(merchant=merchant, name=CAMPAIGN_SEGMENT).values_list("pk", flat=True))
    campaign = campaign_create(
        merchant=merchant,
        actor=ACTOR,
        name=CAMPAIGN_NAME,
        title_template="{discount} off trail gear this week",
        body_template="Picked for you at {store_name}: {product_1_title} and more. Use code {coupon_code} at checkout.",
        coupon_code="TRAIL15",
        discount_percent=Decimal("15"),
        include_segment_ids=include,
        control_share=CAMPAIGN_CONTROL_SHARE,
        personalised_products=3,
        frequency_cap=3,
    )
    campaign_launch(campaign=campaign, actor=ACTOR)
    deadline = time.monotonic() + 180  # with a real worker the activation runs elsewhere
    while True:
        campaign.refresh_from_db()
        if campaign.status in (CampaignStatus.COMPLETED, CampaignStatus.FAILED, CampaignStatus.CANCELLED):
            break
        if time.monotonic() > deadline:
            return f"“{CAMPAIGN_NAME}” launched; its results appear once the worker has sent it"
        time.sleep(1)
    if campaign.status != CampaignStatus.COMPLETED:
        return f"“{CAMPAIGN_NAME}” did not complete: {campaign.failure_reason}"

    rng = random.Random(seed)  # noqa: S311 - simulated demo behaviour, not security
    now = timezone.now()
    deliveries = list(
        Delivery.objects.filter(campaign=campaign)
        .order_by("pk")
        .values_list("pk", "consumer_id", "consumer__pseudonym", "group", "status", "product_ids")
    )
    tracking: list[TrackingInput] = []
    purchases: list[tuple[str, list[int], int]] = []  # (pseudonym, products recommended, delivery id)
    for delivery_id, _consumer_id, pseudonym, group, status, product_ids in deliveries:
        if group == DeliveryGroup.TREATMENT and status == DeliveryStatus.DISPATCHED:
            if rng.random() < OPEN_RATE:
                tracking.append(TrackingInput(delivery_id=delivery_id, kind="opened", occurred_at=now))
                if rng.random() < CLICK_RATE:
                    tracking.append(TrackingInput(delivery_id=delivery_id, kind="clicked", occurred_at=now))
            if rng.random() < TREATMENT_PURCHASE_RATE:
                purchases.append((pseudonym, product_ids or [], delivery_id))
        elif group == DeliveryGroup.CONTROL and rng.random() < CONTROL_PURCHASE_RATE:
            purchases.append((pseudonym, [], delivery_id))
    if tracking:
        tracking_events_record(events=tracking)
    bought = _demo_purchases_ingest(merchant=merchant, purchases=purchases, rng=rng, campaign_id=campaign.pk)
    return (
        f"“{CAMPAIGN_NAME}” sent to {campaign.treatment_count:,} consumers ({campaign.control_count:,} held out); "
        f"{len(tracking):,} opens and clicks and {bought:,} purchases reported"
    )


def _demo_purchases_ingest(*, merchant: Merchant, purchases, rng, campaign_id: int) -> int:
    """Post the purchases through ingestion as the operator would: raw ids (seed_demo's), pseudonymised there."""
    from consumers.events import events_ingest
    from consumers.models import Consumer, Product
    from consumers.seeding import consumer_raw_id
    from privacy.pseudonyms import make_pseudonymiser

    if not purchases:
        return 0
    wanted = {pseudonym for pseudonym, _, _ in purchases}
    pseudonymise = make_pseudonymiser()
    raw_of: dict[str, str] = {}
    for i in range(2 * Consumer.objects.count() + 10):
        raw = consumer_raw_id(i)
        pseudonym = pseudonymise(raw)
        if pseudonym in wanted:
            raw_of[pseudonym] = raw
            if len(raw_of) == len(wanted):
                break
    products = dict(Product.objects.filter(merchant=merchant).values_list("pk", "sku"))
    prices = dict(Product.objects.filter(merchant=merchant).values_list("pk", "price"))
    if not products:
        return 0
    catalogue = sorted(products)
    rows = []
    for pseudonym, recommended, delivery_id in purchases:
        raw = raw_of.get(pseudonym)
        if raw is None:
            continue
        mine = [pid for pid in recommended if pid in products]
        product_id = mine[0] if mine and rng.random() < 0.7 else rng.choice(catalogue)
        price = prices.get(product_id) or 25
        rows.append(
            {
                "event_id": f"demo-campaign:{campaign_id}:{delivery_id}",
                "consumer_id": raw,
                "merchant": merchant.slug,
                "sku": products[product_id],
                "event_type": "purchase",
                "occurred_at": timezone.now(),
                "quantity": 1,
                "price": f"{price:.2f}",
                "order_id": f"demo-campaign-order:{campaign_id}:{delivery_id}",
            }
        )
    report = events_ingest(rows=rows, actor=ACTOR)
    return report.accepted
