"""Pseudonymised consumers, merchants' catalogues, and behaviour events.

No raw identifier is ever stored here: a consumer is known by its keyed
pseudonym, its age only as a range and its address only as a country.
"""

from __future__ import annotations

from django.db import models

from merchants.models import Merchant
from privacy.models import MINOR_AGE_RANGE


class AgeRange(models.TextChoices):
    UNDER_18 = MINOR_AGE_RANGE, "Under 18"
    A18_24 = "18-24", "18–24"
    A25_34 = "25-34", "25–34"
    A35_44 = "35-44", "35–44"
    A45_54 = "45-54", "45–54"
    A55_64 = "55-64", "55–64"
    A65_PLUS = "65-plus", "65 and over"


class Consumer(models.Model):
    """A consumer, known only by pseudonym. The integer id is what bitmaps hold."""

    pseudonym = models.CharField(max_length=64, unique=True)
    age_range = models.CharField(max_length=16, choices=AgeRange.choices, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2")
    gender = models.CharField(max_length=1, blank=True, help_text="f, m, x or empty")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"consumer {self.pk}"


class Product(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="products")
    sku = models.CharField(max_length=64)
    title = models.CharField(max_length=300, blank=True)
    category_path = models.CharField(max_length=300, blank=True, help_text="e.g. beauty/skincare/serums")
    category = models.CharField(max_length=100, blank=True, db_index=True, help_text="top level of category_path")
    brand = models.CharField(max_length=100, blank=True, db_index=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["merchant", "sku"], name="product_unique_merchant_sku")]

    def __str__(self) -> str:
        return f"{self.merchant_id}/{self.sku}"


class EventType(models.IntegerChoices):
    VIEW = 1, "view"
    CLICK = 2, "click"
    CART = 3, "cart"
    FAVOURITE = 4, "favourite"
    PURCHASE = 5, "purchase"
    CANCEL = 6, "cancel"  # an order cancellation or return (risk control reads the ratio)


EVENT_TYPE_BY_NAME = {label: value for value, label in EventType.choices}


class Event(models.Model):
    """One behaviour event. `source_key` makes ingestion idempotent: a digest of the source's event id."""

    source_key = models.CharField(max_length=32, unique=True)
    # No single-column indexes on the foreign keys: each leads one of the composite indexes
    # below, which serve the same lookups, and every index costs on each ingested row.
    consumer = models.ForeignKey(Consumer, on_delete=models.CASCADE, related_name="events", db_index=False)
    # Merchant and product ids are resolved by the ingestion service itself (the only writer), and
    # Django carries out CASCADE / SET_NULL in Python either way, so the database does not check
    # these two per row (db_constraint=False): those checks were about 30% of the cost of a COPY. The
    # consumer's constraint stays: it is what stops an ingest racing with an erasure from leaving
    # events of a consumer that no longer exists. See docs/ingestion.md.
    merchant = models.ForeignKey(
        Merchant, on_delete=models.CASCADE, related_name="events", db_index=False, db_constraint=False
    )
    product = models.ForeignKey(
        Product,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    event_type = models.PositiveSmallIntegerField(choices=EventType.choices)
    occurred_at = models.DateTimeField()
    quantity = models.IntegerField(default=1)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    discount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    order_ref = models.CharField(max_length=32, blank=True, help_text="digest of the order id, for cancellations")
    device = models.CharField(max_length=32, blank=True, help_text="pseudonymised device id (risk control)")

    class Meta:
        indexes = [
            models.Index(fields=["consumer", "occurred_at"]),
            models.Index(fields=["merchant", "event_type", "occurred_at"]),
            models.Index(fields=["event_type", "occurred_at"]),
            models.Index(fields=["product", "event_type"]),
            models.Index(fields=["occurred_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_event_type_display()} by consumer {self.consumer_id}"
