"""Test worlds for segments: consumers, tags (rows and bitmaps), events and consent, built directly."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.utils import timezone
from pyroaring import BitMap

from consumers.models import Consumer, Event, EventType, Product
from privacy.models import ConsentKind, ConsentStatus, Purpose
from privacy.services import ConsentChange, consents_record
from segments.evaluation import behaviour_cache_invalidate, snapshot_cache_clear
from segments.targeting import targeting_cache_invalidate
from tags.bitmaps import LIVE_CONSUMERS_KEY, bitmap_cache_clear, bitmap_store, tag_key
from tags.consent_bitmap import consent_bitmap_rebuild
from tags.models import ConsumerTag, Tag

_counter = itertools.count()

CATALOGUE = {
    "country": ["SG", "MY", "TH", "ID"],
    "age_range": ["18-24", "25-34", "35-44", "65-plus"],
    "interest": ["sports", "outdoor", "beauty", "home & living"],
    "discount_sensitivity": ["low", "medium", "high"],
    "persona": ["bargain-hunters", "trend-setters"],
}


def catalogue_create(catalogue: dict[str, list[str]] | None = None) -> dict[tuple[str, str], Tag]:
    tags = {}
    for family, values in (catalogue or CATALOGUE).items():
        for value in values:
            tag, _ = Tag.objects.get_or_create(
                family=family,
                value=value,
                defaults=dict(
                    label=f"{family} {value}", definition=f"Consumers tagged {family}={value}.", rule_version="t1"
                ),
            )
            tags[(family, value)] = tag
    return tags


def bitmaps_rebuild() -> None:
    """Rebuild the tag, live-consumer and consent bitmaps from rows (what tagging does after it writes)."""
    by_tag: dict[int, BitMap] = {tag_id: BitMap() for tag_id in Tag.objects.values_list("id", flat=True)}
    for tag_id, consumer_id in ConsumerTag.objects.values_list("tag_id", "consumer_id"):
        by_tag[tag_id].add(consumer_id)
    for tag_id, bitmap in by_tag.items():
        bitmap_store(key=tag_key(tag_id), bitmap=bitmap)
        Tag.objects.filter(pk=tag_id).update(consumer_count=len(bitmap))
    bitmap_store(key=LIVE_CONSUMERS_KEY, bitmap=BitMap(Consumer.objects.values_list("id", flat=True)))
    consent_bitmap_rebuild()


def caches_clear() -> None:
    bitmap_cache_clear()
    behaviour_cache_invalidate()
    snapshot_cache_clear()
    targeting_cache_invalidate()


@dataclass
class World:
    """Consumers (by index), their tags, and helpers to add more."""

    tags: dict[tuple[str, str], Tag]
    consumers: list[Consumer] = field(default_factory=list)

    def ids(self, indexes) -> BitMap:
        return BitMap(self.consumers[i].pk for i in indexes)

    def add_consumers(self, n: int) -> list[Consumer]:
        run = next(_counter)
        created = Consumer.objects.bulk_create(Consumer(pseudonym=f"t{run}-{i}") for i in range(n))
        self.consumers.extend(created)
        return created

    def tag(self, indexes, family: str, value: str) -> None:
        tag = self.tags[(family, value)]
        now = timezone.now()
        ConsumerTag.objects.bulk_create(
            [ConsumerTag(consumer=self.consumers[i], tag=tag, assigned_at=now) for i in indexes],
            ignore_conflicts=True,
        )

    def rebuild(self) -> None:
        bitmaps_rebuild()
        caches_clear()

    def consent(self, indexes, *, status=ConsentStatus.GRANTED, when=None) -> None:
        when = when or timezone.now()
        consents_record(
            changes=[
                ConsentChange(
                    consumer_id=self.consumers[i].pk,
                    purpose=Purpose.DIRECT_MARKETING,
                    status=status,
                    kind=ConsentKind.EXPRESS,
                    source="test",
                    occurred_at=when,
                )
                for i in indexes
            ],
            actor="test",
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
    return {
        "lipstick": Product.objects.create(
            merchant=merchant, sku="L1", category="beauty", category_path="beauty/makeup", brand="Glow"
        ),
        "serum": Product.objects.create(
            merchant=other_merchant, sku="S1", category="beauty", category_path="beauty/skincare", brand="Dew"
        ),
        "tent": Product.objects.create(
            merchant=merchant, sku="T1", category="outdoor", category_path="outdoor/camping", brand="Peak"
        ),
    }


def event_add(consumer: Consumer, product: Product, event_type: int, *, days_ago: float = 1, n: int = 1) -> None:
    now = timezone.now()
    Event.objects.bulk_create(
        Event(
            source_key=f"e{next(_counter)}",
            consumer=consumer,
            merchant=product.merchant,
            product=product,
            event_type=event_type,
            occurred_at=now - timedelta(days=days_ago),
        )
        for _ in range(n)
    )


@pytest.fixture
def tagging_approved(approve_activity):
    return approve_activity(Purpose.TAGGING)


__all__ = ["CATALOGUE", "EventType", "World", "bitmaps_rebuild", "caches_clear", "catalogue_create", "event_add"]


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
