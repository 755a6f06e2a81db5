"""Test worlds for segments: consumers (ingested), tags (given to a real tagging run), events and consent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.utils import timezone
from pyroaring import BitMap

from consumers.models import Consumer, EventType, Product
from privacy.models import ConsentStatus, Purpose
from segments.evaluation import behaviour_cache_invalidate, snapshot_cache_clear
from segments.targeting import targeting_cache_invalidate
from tags.bitmaps import bitmap_cache_clear
from tags.models import Tag
from tests.factories import (
    ProductFactory,
    TaggingRunFactory,
    consents_record_for,
    consumers_create,
    event_row,
    events_ingest_rows,
)

CATALOGUE = {
    "country": ["SG", "MY", "TH", "ID"],
    "age_range": ["18-24", "25-34", "35-44", "65-plus"],
    "interest": ["sports", "outdoor", "beauty", "home & living"],
    "discount_sensitivity": ["low", "medium", "high"],
    "persona": ["bargain-hunters", "trend-setters"],
}


def catalogue_create(catalogue: dict[str, list[str]] | None = None) -> dict[tuple[str, str], Tag]:
    """The families' catalogue, as a tagging run in which nobody holds a tag leaves it."""
    catalogue = catalogue or CATALOGUE
    TaggingRunFactory(catalogue=catalogue, keep=True)
    return {(tag.family, tag.value): tag for tag in Tag.objects.filter(family__in=list(catalogue))}


def caches_clear() -> None:
    bitmap_cache_clear()
    behaviour_cache_invalidate()
    snapshot_cache_clear()
    targeting_cache_invalidate()
    targeting_cache_invalidate()


@dataclass
class World:
    """Consumers (by index), their tags, and helpers to add more.

    tag() notes assignments; rebuild() gives them (with every tag already held) to a tagging run.
    """

    tags: dict[tuple[str, str], Tag]
    consumers: list[Consumer] = field(default_factory=list)
    pending: dict[tuple[str, str], set[int]] = field(default_factory=dict)

    def ids(self, indexes) -> BitMap:
        return BitMap(self.consumers[i].pk for i in indexes)

    def add_consumers(self, n: int) -> list[Consumer]:
        created = consumers_create(n, prefix="segments-world")
        self.consumers.extend(created)
        return created

    def tag(self, indexes, family: str, value: str) -> None:
        self.pending.setdefault((family, value), set()).update(self.consumers[i].pk for i in indexes)

    def rebuild(self) -> None:
        pending, self.pending = self.pending, {}
        TaggingRunFactory(tags=pending, catalogue=CATALOGUE, keep=True)
        caches_clear()

    def consent(self, indexes, *, status=ConsentStatus.GRANTED, when=None) -> None:
        consents_record_for(
            [self.consumers[i].pk for i in indexes], purpose=Purpose.DIRECT_MARKETING, status=status, when=when
        )


@pytest.fixture
def world(db) -> World:
    caches_clear()
    return World(tags=catalogue_create())


@pytest.fixture
def big_world(world, merchant) -> World:
    """400 consumers: 0-199 in SG, 200-399 in MY; 0-149 like sports; 100-299 high discount sensitivity;
    0-119 express direct-marketing consent; odd ones 25-34."""
    world.add_consumers(400)
    world.tag(range(200), "country", "SG")
    world.tag(range(200, 400), "country", "MY")
    world.tag(range(150), "interest", "sports")
    world.tag(range(100, 300), "discount_sensitivity", "high")
    world.tag(range(1, 400, 2), "age_range", "25-34")
    world.consent(range(120))
    world.rebuild()
    return world


@pytest.fixture
def products(merchant, other_merchant) -> dict[str, Product]:
    def product(merchant, sku, category_path, brand):
        return ProductFactory(
            merchant=merchant, sku=sku, title="", category_path=category_path, brand=brand, price=None
        )

    return {
        "lipstick": product(merchant, "L1", "beauty/makeup", "Glow"),
        "serum": product(other_merchant, "S1", "beauty/skincare", "Dew"),
        "tent": product(merchant, "T1", "outdoor/camping", "Peak"),
    }


def event_add(
    consumer: Consumer,
    product: Product,
    event_type: int,
    *,
    days_ago: float = 1,
    n: int = 1,
    price: str | None = None,
    quantity: int = 1,
) -> None:
    """n events of the consumer with the product, sent through ingestion (price: the unit price paid)."""
    occurred_at = timezone.now() - timedelta(days=days_ago)
    events_ingest_rows(
        [
            event_row(
                consumer=consumer,
                merchant=product.merchant,
                sku=product.sku,
                event_type=event_type,
                occurred_at=occurred_at,
                price=price,
                quantity=quantity,
            )
            for _ in range(n)
        ]
    )


@pytest.fixture
def tagging_approved(approve_activity):
    return approve_activity(Purpose.TAGGING)


__all__ = ["CATALOGUE", "EventType", "World", "caches_clear", "catalogue_create", "event_add"]


def released(merchant, expression: str, what: str = "size", precision: str = "standard") -> dict:
    """What the release layer shows for this question (its size, or its reachable part) on the current data."""
    from privacy.release import canonical_subject, count_from_noisy, noisy_count
    from segments.evaluation import definition_resolve
    from segments.language import parse, to_json

    members = members_of(merchant, expression)
    if what == "reachable":
        members = members & consented()
    subject = canonical_subject(to_json(definition_resolve(parse(expression), merchant=merchant).node))
    key, noisy = noisy_count(subject=f"{what}:{subject}", count=len(members), precision=precision)
    return count_from_noisy(noisy=noisy, precision=precision, key=key).public()


def members_of(merchant, expression: str) -> BitMap:
    from segments.evaluation import definition_resolve, evaluate_bitmap
    from segments.language import parse

    return evaluate_bitmap(definition_resolve(parse(expression), merchant=merchant))


def consented() -> BitMap:
    from segments.sources import estimate_bitmaps

    return BitMap(estimate_bitmaps([])[2])
