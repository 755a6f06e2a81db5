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


class ConsumerTag(models.Model):
    consumer = models.ForeignKey(Consumer, on_delete=models.CASCADE, related_name="tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="consumer_tags")
    score = models.FloatField(null=True, blank=True, help_text="Rule-specific strength, e.g. affinity.")
    assigned_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tag", "consumer"], name="consumertag_unique_tag_consumer")]
        indexes = [models.Index(fields=["consumer"])]

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
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.key} v{self.version} ({self.cardinality})"
