"""Campaigns, their deliveries (one per consumer, under a unique constraint) and tracking events.

A campaign carries its own run state (phase, cursors, counters, a run token and
a heartbeat) so that an activation killed at any point resumes from the
database, and so that merchants can watch its progress while it runs.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from consumers.models import Consumer
from merchants.models import Merchant


class Channel(models.TextChoices):
    INBOX = "inbox", "In-app inbox"
    WEBHOOK = "webhook", "Operator notification webhook"


class ScheduleKind(models.TextChoices):
    NOW = "now", "As soon as it is launched"
    AT = "at", "At a set time"
    RECURRING = "recurring", "Recurring (crontab)"


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


# A campaign in one of these states is finished: nothing may change it any more.
FINISHED_STATUSES = frozenset({CampaignStatus.COMPLETED, CampaignStatus.CANCELLED, CampaignStatus.FAILED})


class Phase(models.TextChoices):
    """Where a running activation is; each phase resumes from its cursor after a restart."""

    NONE = "", "Not started"
    RESOLVING = "resolving", "Resolving the audience"
    WRITING = "writing", "Personalising and writing deliveries"
    DISPATCHING = "dispatching", "Dispatching messages"
    DONE = "done", "Done"


MAX_PERSONALISED_PRODUCTS = 10
MAX_CONTROL_SHARE = Decimal("0.5")


class Campaign(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    include_segments = models.ManyToManyField(
        "segments.Segment", related_name="campaigns_including", help_text="The merchant's segments to reach."
    )
    exclude_segments = models.ManyToManyField(
        "segments.Segment", blank=True, related_name="campaigns_excluding", help_text="Segments to leave out."
    )
    title_template = models.CharField(max_length=200)
    body_template = models.TextField(max_length=2000)
    coupon_code = models.CharField(max_length=40, blank=True)
    discount_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal("100"))],
    )
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.INBOX)
    schedule_kind = models.CharField(max_length=16, choices=ScheduleKind.choices, default=ScheduleKind.NOW)
    scheduled_at = models.DateTimeField(null=True, blank=True, help_text="When an 'at' campaign starts.")
    recurrence = models.CharField(
        max_length=100, blank=True, help_text="Crontab 'minute hour day-of-month month day-of-week' (UTC)."
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A recurring campaign is a series; each run is a child campaign of its own, with its own deliveries.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="occurrences")
    occurrence_at = models.DateTimeField(null=True, blank=True)
    frequency_cap = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="At most this many messages per consumer per window across your campaigns."
    )
    frequency_window_days = models.PositiveSmallIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(365)]
    )
    control_share = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.100"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(MAX_CONTROL_SHARE)],
    )
    personalised_products = models.PositiveSmallIntegerField(
        default=3, validators=[MaxValueValidator(MAX_PERSONALISED_PRODUCTS)]
    )
    attribution_window_days = models.PositiveSmallIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(90)]
    )

    # A/B/n: with two or more variants, each treatment consumer gets one (by a hash of campaign and consumer id).
    # auto_winner: once every variant has CAMPAIGN_VARIANT_MIN_SAMPLE released recipients and one converts
    # significantly better than the others, later runs of a recurring series send only it (winner_*: when, why).
    auto_winner = models.BooleanField(default=False)
    winner_variant = models.PositiveSmallIntegerField(null=True, blank=True)
    winner_picked_at = models.DateTimeField(null=True, blank=True)
    winner_reason = models.TextField(blank=True)

    # The forecast of incremental conversions frozen when the campaign was launched (campaigns.uplift
    # .campaign_forecast_freeze): released figures only, the campaign it learned from, the model and the time; or
    # why no forecast could be made. Null until the launch's forecast has run. Never changed afterwards, so the
    # report compares the result with what was expected before it was known.
    forecast = models.JSONField(null=True, blank=True)

    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    failure_reason = models.TextField(blank=True)
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.NONE, blank=True)
    launched_by = models.CharField(max_length=100, blank=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    # Run state. A step holds the run token it was enqueued with; resuming bumps it, so a
    # superseded step skips itself. Cursors are consumer ids: everything up to them is done.
    run_token = models.PositiveIntegerField(default=0)
    steps = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    write_cursor = models.BigIntegerField(default=0)
    dispatch_cursor = models.BigIntegerField(default=0)

    # Progress counters (exact; merchants see them rounded, privacy officers exact).
    audience_count = models.PositiveIntegerField(default=0, help_text="Consumers resolved into the audience.")
    treatment_count = models.PositiveIntegerField(default=0)
    control_count = models.PositiveIntegerField(default=0)
    personalised_count = models.PositiveIntegerField(default=0)
    written_count = models.PositiveIntegerField(default=0)
    dispatched_count = models.PositiveIntegerField(default=0)
    withdrawn_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["merchant", "status"]), models.Index(fields=["status", "heartbeat_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["parent", "occurrence_at"],
                condition=Q(parent__isnull=False),
                name="campaign_unique_occurrence",
            ),
            models.CheckConstraint(
                condition=Q(control_share__gte=0) & Q(control_share__lte=MAX_CONTROL_SHARE),
                name="campaign_control_share_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def has_offer(self) -> bool:
        return bool(self.coupon_code) or self.discount_percent is not None

    @property
    def is_series(self) -> bool:
        return self.schedule_kind == ScheduleKind.RECURRING and self.parent_id is None


MAX_VARIANTS = 5
VARIANT_LETTERS = "ABCDE"


class CampaignVariant(models.Model):
    """One message of an A/B/n test: its templates and the share (percent) of the treatment group it goes to."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    position = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(MAX_VARIANTS)])
    title_template = models.CharField(max_length=200)
    body_template = models.TextField(max_length=2000)
    share = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(99)])

    class Meta:
        ordering = ["campaign", "position"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "position"], name="campaign_variant_unique_position")
        ]

    def __str__(self) -> str:
        return f"variant {self.letter} of campaign {self.campaign_id}"

    @property
    def letter(self) -> str:
        return VARIANT_LETTERS[self.position - 1]


class CampaignAudience(models.Model):
    """The audience an activation resolved, frozen so a resumed run writes exactly the same consumers.

    A Roaring bitmap of consumer ids; removed when the run finishes (the deliveries are the record).
    """

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, primary_key=True, related_name="audience")
    members = models.BinaryField()
    resolved_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"audience of campaign {self.campaign_id}"


class Group(models.TextChoices):
    TREATMENT = "treatment", "Treatment (receives the message)"
    CONTROL = "control", "Control (held out)"
    TEST = "test", "Test send (the operator's test inbox; never in reports)"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DISPATCHED = "dispatched", "Dispatched"
    FAILED = "failed", "Failed"
    WITHDRAWN = "withdrawn", "Withdrawn (not sent)"
    HELD_OUT = "held_out", "Held out (control group)"


# Deliveries that are, or will be, messages in a consumer's hands: what frequency caps count.
COUNTED_BY_CAPS = (DeliveryStatus.PENDING, DeliveryStatus.DISPATCHED)


class Delivery(models.Model):
    """One consumer's place in one campaign. UNIQUE (campaign, consumer): a retried job never sends twice."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    consumer = models.ForeignKey(Consumer, on_delete=models.CASCADE, related_name="+", db_index=False)
    group = models.CharField(max_length=9, choices=Group.choices)
    variant = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The A/B/n variant sent (1 = A).")
    product_ids = models.JSONField(default=list, blank=True, help_text="Personalised products, best first.")
    title = models.CharField(max_length=400, blank=True)
    body = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    created_at = models.DateTimeField()
    dispatched_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(
        null=True, blank=True, help_text="When the operator's app fetched it from the inbox, or the webhook took it."
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "consumer"], name="delivery_unique_campaign_consumer")
        ]
        indexes = [models.Index(fields=["consumer", "created_at"], name="delivery_consumer_created")]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"delivery {self.pk} of campaign {self.campaign_id} ({self.group}, {self.status})"


class TrackingKind(models.TextChoices):
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"
    CONVERTED = "converted", "Converted"


class TrackingEvent(models.Model):
    """What the operator's app reports about a delivery. The idempotency key makes re-posting harmless."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="tracking_events", db_index=False)
    kind = models.CharField(max_length=10, choices=TrackingKind.choices)
    order_value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    occurred_at = models.DateTimeField()
    idempotency_key = models.CharField(max_length=100)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery", "idempotency_key"], name="tracking_unique_idempotency_key")
        ]

    def __str__(self) -> str:
        return f"{self.kind} on delivery {self.delivery_id}"
