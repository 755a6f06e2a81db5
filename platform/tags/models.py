"""The tag catalogue, consumers' tags (the source of truth) and the bitmap index (for speed)."""

from __future__ import annotations

from django.db import models

from consumers.models import Consumer


class Tag(models.Model):
    """One value of one tag family, e.g. country:SG or interest:sports, with a definition merchants can read."""

    family = models.CharField(max_length=32, db_index=True)
    value = models.CharField(max_length=100)
    label = models.CharField(max_length=200)
    definition = models.TextField(help_text="Plain-language definition shown to merchants.")
    rule_version = models.CharField(max_length=20)
    purpose = models.CharField(max_length=32, default="tagging")
    consumer_count = models.BigIntegerField(default=0, help_text="Exact; merchants only ever see it rounded.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["family", "value"]
        constraints = [models.UniqueConstraint(fields=["family", "value"], name="tag_unique_family_value")]

    def __str__(self) -> str:
        return f"{self.family}:{self.value}"

    @property
    def code(self) -> str:
        """How the segment language names it: family:value."""
        return f"{self.family}:{self.value}"


class ConsumerTag(models.Model):
    """One tag held by one consumer.

    Rows are derived data, rebuilt a whole family at a time with COPY, so every
    index and per-row check costs millions of operations a night:

    - The foreign keys are enforced by the application rather than by per-row
      database triggers (db_constraint=False): Django's delete collector still
      cascades deletions of consumers and tags, the erasure handler deletes a
      consumer's rows explicitly, and tagging drops rows whose consumer vanished
      during the run.
    - The only index besides the primary key is the unique (tag, consumer) one.
      It serves "who has this tag" directly, and "which tags has this consumer"
      as one probe per tag (`consumer_id = X AND tag_id IN (all tags)`, see
      tags.selectors.consumer_tags), so no separate consumer index is kept.

    docs/tags.md ("Writing a family") has the measurements behind both choices.
    """

    consumer = models.ForeignKey(
        Consumer, on_delete=models.CASCADE, related_name="tags", db_constraint=False, db_index=False
    )
    tag = models.ForeignKey(
        Tag, on_delete=models.CASCADE, related_name="consumer_tags", db_constraint=False, db_index=False
    )
    score = models.FloatField(null=True, blank=True, help_text="Rule-specific strength, e.g. affinity.")
    assigned_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tag", "consumer"], name="consumertag_unique_tag_consumer")]

    def __str__(self) -> str:
        return f"consumer {self.consumer_id} {self.tag_id}"


class StoredBitmap(models.Model):
    """A serialised Roaring bitmap of consumer ids, versioned so per-process caches know when to reload.

    Keys: `tag:<tag id>`, `consumers:live`, `consent:direct_marketing`, and
    whatever higher layers store (segment snapshots keep their own).
    """

    key = models.CharField(max_length=100, unique=True)
    version = models.BigIntegerField(default=1)
    cardinality = models.BigIntegerField(default=0)
    data = models.BinaryField()
    source_mark = models.DateTimeField(
        null=True,
        blank=True,
        help_text="For bitmaps kept up to date incrementally (direct-marketing consent): the latest source change "
        "they include.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.key} v{self.version} ({self.cardinality})"


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REFUSED = "refused", "Refused (no approved tagging basis)"


class TaggingRun(models.Model):
    """One tagging run, so operators see in the admin when tags were last computed and why a run failed."""

    actor = models.CharField(max_length=100)
    families = models.JSONField(default=list, help_text="Families asked for.")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    as_of = models.DateTimeField(null=True, blank=True, help_text="The moment windows were measured from.")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="Per family: tags, rows, seconds.")
    activity_id = models.BigIntegerField(null=True, blank=True, help_text="The processing activity relied on.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["status", "started_at"])]

    def __str__(self) -> str:
        return f"tagging run {self.pk} ({self.status})"
