"""Journeys: a merchant's multi-step message flow, its immutable versions, and each consumer's durable position.

A consumer's place in a journey is a row (JourneyEnrolment) whose state, step and next_run_at say what happens next
and when; every step's outcome (JourneyStepRun) and every message (JourneySend) is unique per (enrolment, step), so
a step replayed after a crash writes nothing twice. See docs/journeys.md.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from campaigns.models import Channel, TrackingKind
from merchants.models import Merchant
from segments.models import Segment


class JourneyStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"


class TriggerKind(models.TextChoices):
    SEGMENT_ENTERED = "segment_entered", "Entering a segment"
    EVENT = "event", "An event"


class ReentryPolicy(models.TextChoices):
    NEVER = "never", "Never"
    AFTER_DAYS = "after_days", "After N days"


class Journey(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="journeys")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=8, choices=JourneyStatus.choices, default=JourneyStatus.DRAFT)
    trigger_kind = models.CharField(max_length=16, choices=TriggerKind.choices)
    trigger_segment = models.ForeignKey(
        Segment, null=True, blank=True, on_delete=models.PROTECT, related_name="journeys"
    )
    trigger_event = models.CharField(
        max_length=500, blank=True, help_text='An action of the segment language, e.g. carted(category="outdoor").'
    )
    exit_condition = models.CharField(
        max_length=500, blank=True, help_text="An action that ends the journey at any point, e.g. purchased()."
    )
    holdout_share = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.1"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("0.5"))],
    )
    reentry = models.CharField(max_length=16, choices=ReentryPolicy.choices, default=ReentryPolicy.NEVER)
    reentry_days = models.PositiveIntegerField(null=True, blank=True)
    quiet_start = models.TimeField(
        null=True, blank=True, help_text="Adds to the platform's and the merchant's quiet hours (JOURNEY_TIME_ZONE)."
    )
    quiet_end = models.TimeField(null=True, blank=True)
    frequency_cap = models.PositiveIntegerField(null=True, blank=True)
    channel = models.CharField(
        max_length=16,
        choices=Channel.choices,
        default=Channel.INBOX,
        help_text="Where its messages go: the in-app inbox, or the operator's notification webhook (as campaigns').",
    )
    frequency_window_days = models.PositiveIntegerField(default=7)
    attribution_window_days = models.PositiveIntegerField(default=7)
    current_version = models.ForeignKey(
        "JourneyVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Trigger cursors: the last event id / transition id this journey's trigger has read.
    event_cursor = models.BigIntegerField(default=0)
    transition_cursor = models.BigIntegerField(default=0)
    # [[unix time, event_cursor, transition_cursor], …]: where the cursors stood at each recent tick, so a tick can
    # re-read the rows behind the cursor that were committed out of id order (engine._reread_floors).
    trigger_checkpoints = models.JSONField(default=list, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"], name="journey_status")]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class JourneyVersion(models.Model):
    """An immutable definition: the ordered list of steps (validated by journeys.definition)."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    steps = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["journey", "number"]
        constraints = [models.UniqueConstraint(fields=["journey", "number"], name="journey_version_unique")]

    def __str__(self) -> str:
        return f"{self.journey_id} v{self.number}"


class EnrolmentState(models.TextChoices):
    ACTIVE = "active", "Active"  # the step at `step` runs at next_run_at
    COMPLETED = "completed", "Completed"
    EXITED = "exited", "Exited"  # an exit condition, or the messaging rule refused
    HELD_OUT = "held_out", "Held out"  # the journey's control group: receives nothing


class JourneyEnrolment(models.Model):
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="enrolments")
    version = models.ForeignKey(JourneyVersion, on_delete=models.PROTECT, related_name="enrolments")
    consumer_id = models.BigIntegerField()
    entry_no = models.PositiveIntegerField(default=1)
    state = models.CharField(max_length=12, choices=EnrolmentState.choices, default=EnrolmentState.ACTIVE)
    step = models.PositiveIntegerField(default=0)
    next_run_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    entered_at = models.DateTimeField()
    step_started_at = models.DateTimeField(null=True, blank=True, help_text="When the current step began (waits).")
    trigger_product_id = models.BigIntegerField(null=True, blank=True)
    # The trigger row this entry came from (an event or a membership transition): unique per journey, so a row
    # re-read behind the cursor never enrols anyone twice.
    trigger_event_id = models.BigIntegerField(null=True, blank=True)
    trigger_transition_id = models.BigIntegerField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_reason = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["journey", "consumer_id", "entry_no"], name="journey_enrolment_unique"),
            models.UniqueConstraint(
                fields=["journey", "trigger_event_id"],
                condition=models.Q(trigger_event_id__isnull=False),
                name="journey_enrolment_event_once",
            ),
            models.UniqueConstraint(
                fields=["journey", "trigger_transition_id"],
                condition=models.Q(trigger_transition_id__isnull=False),
                name="journey_enrolment_transition_once",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "next_run_at"], name="enrolment_due"),
            models.Index(fields=["consumer_id"], name="enrolment_consumer"),
        ]

    def __str__(self) -> str:
        return f"journey {self.journey_id} consumer #{self.consumer_id} ({self.state}, step {self.step})"


class StepOutcome(models.TextChoices):
    DONE = "done", "Done"  # a wait ended, a message was written, a branch was taken
    MATCHED = "matched", "Event arrived"
    TIMED_OUT = "timed_out", "Timed out"
    BRANCH_YES = "yes", "Condition held"
    BRANCH_NO = "no", "Condition did not hold"
    REFUSED = "refused", "Not messageable"
    CAPPED = "capped", "Frequency cap"
    EXITED = "exited", "Exited"


class JourneyStepRun(models.Model):
    enrolment = models.ForeignKey(JourneyEnrolment, on_delete=models.CASCADE, related_name="step_runs")
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="step_runs")
    step = models.PositiveIntegerField()
    outcome = models.CharField(max_length=12, choices=StepOutcome.choices)
    at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["enrolment", "step"], name="journey_step_run_once")]
        indexes = [models.Index(fields=["journey", "step"], name="step_run_journey")]

    def __str__(self) -> str:
        return f"enrolment {self.enrolment_id} step {self.step}: {self.outcome}"


class SendStatus(models.TextChoices):
    SENT = "sent", "Sent"  # in the inbox, or accepted by the operator's webhook
    PENDING = "pending", "Waiting for the webhook"  # written; the webhook has not accepted it yet
    FAILED = "failed", "Webhook failed"  # the webhook refused it or could not be reached after its retries
    WITHDRAWN = "withdrawn", "Withdrawn"


# Sends that are, or will be, messages in a consumer's hands: what frequency caps count.
COUNTED_BY_CAPS = (SendStatus.SENT, SendStatus.PENDING)


class JourneySend(models.Model):
    """One message to one consumer from one send step: written at most once (the unique constraint)."""

    enrolment = models.ForeignKey(JourneyEnrolment, on_delete=models.CASCADE, related_name="sends")
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="sends")
    merchant_id = models.BigIntegerField()
    consumer_id = models.BigIntegerField()
    step = models.PositiveIntegerField()
    variant = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="The step's message variant sent (1 = A); null when it has none."
    )
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.INBOX)
    status = models.CharField(max_length=12, choices=SendStatus.choices, default=SendStatus.SENT)
    title = models.CharField(max_length=400, blank=True)
    body = models.TextField(blank=True)
    coupon_code = models.CharField(max_length=64, blank=True)
    product_ids = models.JSONField(default=list)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(
        null=True, blank=True, help_text="When the operator's inbox served it, or the webhook accepted it."
    )
    withdrawn_reason = models.CharField(max_length=200, blank=True)
    # The webhook channel: POST attempts made, the last failure, and a lease while a dispatch holds it (a
    # dispatch killed mid-POST leaves it pending; once the lease runs out the next one sends it again). The token
    # names the claim holding the lease: a dispatch posts, and records what it posted, only while it is its own.
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["enrolment", "step"], name="journey_send_once")]
        indexes = [
            models.Index(fields=["consumer_id", "created_at"], name="journey_send_consumer"),
            models.Index(fields=["journey", "step"], name="journey_send_step"),
            models.Index(fields=["status", "channel"], name="journey_send_pending"),
        ]

    def __str__(self) -> str:
        return f"journey {self.journey_id} step {self.step} to consumer #{self.consumer_id} ({self.status})"


class JourneyTrackingEvent(models.Model):
    """An open, click or conversion the operator reports for a journey message (by its signed message_ref).
    The idempotency key (default: the kind) makes re-posting harmless: one open per message counts once."""

    send = models.ForeignKey(JourneySend, on_delete=models.CASCADE, related_name="tracking_events", db_index=False)
    kind = models.CharField(max_length=10, choices=TrackingKind.choices)
    order_value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    occurred_at = models.DateTimeField()
    idempotency_key = models.CharField(max_length=100)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["send", "idempotency_key"], name="journey_tracking_unique_key")]

    def __str__(self) -> str:
        return f"{self.kind} on journey message {self.send_id}"


class JourneyStepWinner(models.Model):
    """The variant an auto_winner send step of one version settled on: from then on everyone gets it. Picked from
    released figures by campaigns.winner's rule (journeys.winner); when and why are kept for the merchant."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="step_winners")
    version = models.ForeignKey(JourneyVersion, on_delete=models.CASCADE, related_name="step_winners")
    step = models.PositiveIntegerField()
    variant = models.PositiveSmallIntegerField()
    picked_at = models.DateTimeField()
    reason = models.TextField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "step"], name="journey_step_winner_once")]

    def __str__(self) -> str:
        return f"journey {self.journey_id} v{self.version_id} step {self.step}: variant {self.variant}"
