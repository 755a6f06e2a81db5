"""Segments (a merchant's saved audiences) and their snapshots (the materialised members at one time)."""

from __future__ import annotations

from django.db import models
from pyroaring import BitMap, FrozenBitMap

from merchants.models import Merchant


class SegmentKind(models.TextChoices):
    RULE = "rule", "Rule (a segment expression)"
    LOOKALIKE = "lookalike", "Lookalike (consumers most similar to a seed segment)"
    PERSONA = "persona", "Persona (one learned persona)"
    PERSUADABLE = "persuadable", "Persuadables (consumers an uplift model expects a campaign to move)"
    RESPONSE = "response", "Campaign response (consumers who reacted to one of your campaigns in a given way)"


class RefreshPolicy(models.TextChoices):
    MANUAL = "manual", "Manual (only when asked)"
    HOURLY = "hourly", "Every hour"
    DAILY = "daily", "Every day"
    CUSTOM = "custom", "Custom schedule (edit its periodic task in the admin)"
    REALTIME = "realtime", "Real-time (as events, profiles and consents arrive)"


class SegmentScope(models.TextChoices):
    """Whom a segment counts: the whole marketplace, or only consumers who interacted with the merchant's store."""

    MARKETPLACE = "marketplace", "The whole marketplace"
    MY_CUSTOMERS = "my_customers", "My customers (consumers who interacted with my store)"


class SegmentStatus(models.TextChoices):
    PENDING = "pending", "Refresh pending"
    READY = "ready", "Ready"
    FAILED = "failed", "Refresh failed"


class SegmentQuerySet(models.QuerySet["Segment"]):
    def for_merchant(self, merchant: Merchant | int) -> SegmentQuerySet:
        """The one way API and portal code reaches segments: scoped to a merchant."""
        return self.filter(merchant=merchant)


class Segment(models.Model):
    """A merchant's audience: a definition (or a lookalike recipe) and how often to re-materialise it.

    The version guard (as PostHog's cohorts): every refresh request bumps `pending_version` with F() before
    enqueueing; a run for an older version skips itself, and a finished run writes its snapshot only while its
    version is still the pending one, so two refreshes never overwrite each other. `version` is the version of
    the last snapshot written.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="segments")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=SegmentKind.choices, default=SegmentKind.RULE)
    definition = models.TextField(blank=True, help_text="The expression in the text form (canonical).")
    definition_json = models.JSONField(null=True, blank=True, help_text="The same expression in the JSON form.")
    depends_on = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="dependents", help_text="Segments named as segment:ID."
    )
    seed = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="lookalikes",
        help_text="Lookalikes: the segment whose members they resemble.",
    )
    lookalike_spec = models.JSONField(
        null=True, blank=True, help_text="Lookalikes: size or min_similarity, and the method last used."
    )
    refresh_policy = models.CharField(max_length=16, choices=RefreshPolicy.choices, default=RefreshPolicy.MANUAL)
    scope = models.CharField(max_length=16, choices=SegmentScope.choices, default=SegmentScope.MARKETPLACE)
    schedule = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="segment",
        help_text="Custom policy: the periodic task that refreshes this segment; edit its schedule in the admin.",
    )
    pending_version = models.BigIntegerField(default=0)
    version = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=SegmentStatus.choices, default=SegmentStatus.PENDING)
    last_error = models.TextField(blank=True, help_text="Why the last refresh failed, in words the merchant sees.")
    last_error_at = models.DateTimeField(null=True, blank=True)
    # A real-time segment's streaming update that failed (segments.membership): shown beside the segment until the
    # next update, sweep or refresh of it succeeds.
    stream_error = models.TextField(blank=True, help_text="Why the last real-time update failed, in words.")
    stream_error_at = models.DateTimeField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_by = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SegmentQuerySet.as_manager()

    class Meta:
        ordering = ["merchant", "name"]
        constraints = [models.UniqueConstraint(fields=["merchant", "name"], name="segment_unique_merchant_name")]
        indexes = [models.Index(fields=["refresh_policy", "last_refreshed_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class SnapshotStatus(models.TextChoices):
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class SegmentSnapshot(models.Model):
    """The members of a segment at one time, as a serialised Roaring bitmap of consumer ids.

    Only the newest few snapshots of a segment keep their members (`members_kept`); older ones keep their
    figures as history, which bounds storage and what an erasure has to rewrite.
    """

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="snapshots")
    version = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=SnapshotStatus.choices, default=SnapshotStatus.READY)
    error = models.TextField(blank=True)
    members = models.BinaryField(default=bytes)
    members_kept = models.BooleanField(default=True)
    size = models.BigIntegerField(default=0, help_text="Exact; merchants only ever see it rounded.")
    entered = models.BigIntegerField(default=0, help_text="Members now who were not in the previous snapshot.")
    exited = models.BigIntegerField(default=0, help_text="Members of the previous snapshot who are no longer.")
    definition = models.TextField(blank=True, help_text="The expression this snapshot was computed from.")
    method = models.CharField(max_length=32, blank=True, help_text="bitmap, or the lookalike method used.")
    duration_ms = models.FloatField(default=0)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["-computed_at", "-id"]
        indexes = [models.Index(fields=["segment", "status", "-id"], name="snapshot_latest")]

    def __str__(self) -> str:
        return f"{self.segment_id} v{self.version} {self.status} ({self.computed_at:%Y-%m-%d %H:%M})"

    def members_bitmap(self) -> FrozenBitMap:
        return SegmentSnapshot.deserialise(self.members)

    @staticmethod
    def deserialise(data: bytes | memoryview | None) -> FrozenBitMap:
        """Stored members as a bitmap (none stored: empty). Raises ValueError for bytes that are not a bitmap."""
        return FrozenBitMap.deserialize(bytes(data)) if data else FrozenBitMap()

    @staticmethod
    def serialise(members: BitMap | FrozenBitMap) -> bytes:
        bitmap = BitMap(members)
        bitmap.run_optimize()
        return bitmap.serialize()


class TransitionKind(models.TextChoices):
    ENTERED = "entered", "Entered"
    EXITED = "exited", "Exited"


class MembershipTransition(models.Model):
    """One consumer entering or leaving one segment, and when: written by batch refreshes and streaming updates.

    Journeys triggered by "entering a segment" read these. `consumer_id` is the internal integer id (the bitmap
    id), never an identifier a merchant can see.
    """

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="transitions")
    consumer_id = models.BigIntegerField()
    kind = models.CharField(max_length=8, choices=TransitionKind.choices)
    at = models.DateTimeField(db_index=True)
    source = models.CharField(max_length=16, blank=True, help_text="refresh, stream or sweep.")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["segment", "-id"], name="transition_segment_latest")]

    def __str__(self) -> str:
        return f"segment {self.segment_id}: consumer #{self.consumer_id} {self.kind} at {self.at:%Y-%m-%d %H:%M:%S}"
