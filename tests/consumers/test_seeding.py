"""seed_demo: deterministic, structured, and written through the ingestion path."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count

from consumers.models import Consumer, Event, EventType, Product
from consumers.seeding import COUNTRIES, consumer_raw_id, seed_marketplace
from merchants.models import Merchant
from privacy.models import AuditEntry, ConsentState
from privacy.pseudonyms import pseudonymise

NOW = datetime(2025, 6, 30, 15, 0, tzinfo=UTC)


def fingerprint() -> str:
    """A digest of everything seeded, without ids or write times."""
    digest = hashlib.sha256()
    rows = Event.objects.values_list(
        "source_key",
        "consumer__pseudonym",
        "merchant__slug",
        "product__sku",
        "event_type",
        "occurred_at",
        "quantity",
        "price",
        "discount",
        "order_ref",
        "device",
    ).order_by("source_key")
    for row in rows:
        digest.update(repr(row).encode())
    for row in Consumer.objects.values_list("pseudonym", "age_range", "country", "gender").order_by("pseudonym"):
        digest.update(repr(row).encode())
    for row in Product.objects.values_list(
        "merchant__slug", "sku", "title", "category_path", "brand", "price"
    ).order_by("sku"):
        digest.update(repr(row).encode())
    for row in ConsentState.objects.values_list("consumer__pseudonym", "status", "kind", "occurred_at").order_by(
        "consumer__pseudonym"
    ):
        digest.update(repr(row).encode())
    return digest.hexdigest()


def wipe() -> None:
    Event.objects.all().delete()
    ConsentState.objects.all().delete()
    Consumer.objects.all().delete()
    Product.objects.all().delete()
    Merchant.objects.all().delete()


SMALL = dict(consumers=300, products=120, events=4000, merchants=3, now=NOW, chunk_consumers=128)


def test_same_arguments_same_data_and_another_seed_differs(db):
    seed_marketplace(seed=7, **SMALL)
    first = fingerprint()
    wipe()
    summary = seed_marketplace(seed=7, **SMALL)
    assert fingerprint() == first
    assert summary.rejected == 0
    wipe()
    seed_marketplace(seed=8, **SMALL)
    assert fingerprint() != first


def test_seeding_twice_writes_nothing_new(db):
    seed_marketplace(seed=3, **SMALL)
    counts = (Event.objects.count(), Consumer.objects.count(), Product.objects.count())
    summary = seed_marketplace(seed=3, **SMALL)
    assert summary.events_written == 0
    assert (Event.objects.count(), Consumer.objects.count(), Product.objects.count()) == counts


def test_the_marketplace_has_the_structure_the_upper_layers_need(db):
    summary = seed_marketplace(seed=11, consumers=600, products=300, events=20_000, merchants=4, now=NOW)
    assert summary.consumers == Consumer.objects.count() == 600
    assert Merchant.objects.count() == 4 and Product.objects.count() == 300
    # Every product has a three-level category path and a brand.
    assert not Product.objects.exclude(category_path__regex=r"^[a-z-]+/[a-z-]+/[a-z-]+$").exists()
    assert not Product.objects.filter(brand="").exists()
    # Behaviour events plus cancellations; all kinds present, views dominate.
    types = Counter(Event.objects.values_list("event_type", flat=True))
    assert summary.events_sent == sum(types.values()) >= 20_000
    assert set(types) == set(EventType.values)
    assert types[EventType.VIEW] > types[EventType.PURCHASE] > types[EventType.CANCEL] > 0
    # Power-law popularity: the top 10% of products draw far more than 10% of events.
    per_product = sorted(Event.objects.values("product").annotate(n=Count("id")).values_list("n", flat=True))
    top = sum(per_product[-len(per_product) // 10 :])
    assert top / sum(per_product) > 0.3
    # Consumers prefer few categories: a typical consumer's top category takes a large share.
    shares = []
    for consumer in Consumer.objects.annotate(n=Count("events")).filter(n__gte=30)[:50]:
        by_category = Counter(consumer.events.values_list("product__category", flat=True))
        shares.append(max(by_category.values()) / sum(by_category.values()))
    assert sum(shares) / len(shares) > 0.4
    # Repeat buyers, discounts, shared devices.
    repeat = Event.objects.filter(event_type=EventType.PURCHASE).values("consumer", "product").annotate(n=Count("id"))
    assert repeat.filter(n__gt=1).exists()
    assert Event.objects.filter(discount__gt=0).exists()
    shared = Event.objects.values("device").annotate(c=Count("consumer", distinct=True)).filter(c__gt=1)
    assert shared.exists()
    # Profiles and consents.
    assert set(Consumer.objects.values_list("country", flat=True)) <= set(COUNTRIES)
    assert not Consumer.objects.filter(age_range="").exists()
    consent = Counter(ConsentState.objects.values_list("status", "kind"))
    assert consent[("granted", "express")] > consent[("granted", "deemed")] > 0
    assert consent[("withdrawn", "express")] > 0
    assert AuditEntry.objects.filter(action="ingest.events", actor="command:seed_demo").exists()


def test_a_known_consumer_can_be_addressed_by_its_raw_id(db):
    seed_marketplace(seed=1, consumers=10, products=20, events=100, merchants=2, now=NOW)
    assert Consumer.objects.filter(pseudonym=pseudonymise(consumer_raw_id(4))).exists()
    assert consumer_raw_id(2).startswith("+65 8")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_command_prints_a_summary_and_validates_its_arguments(db):
    out, err = io.StringIO(), Terminal()
    call_command(
        "seed_demo", "--consumers", "50", "--products", "30", "--events", "500", "--seed", "5", stdout=out, stderr=err
    )
    assert "50 consumers" in out.getvalue() and "events sent" in out.getvalue()
    assert "seed_demo" in err.getvalue()  # the progress bar, on a terminal
    # Off a terminal (a log file, CI) there is no bar, only the summary.
    out, log = io.StringIO(), io.StringIO()
    call_command(
        "seed_demo", "--consumers", "50", "--products", "30", "--events", "500", "--seed", "6", stdout=out, stderr=log
    )
    assert "events sent" in out.getvalue() and log.getvalue() == ""
    with pytest.raises(CommandError, match="--consumers must be at least 1"):
        call_command("seed_demo", "--consumers", "0")


def test_every_store_sells_what_its_name_says(db):
    """The demo's outdoor store recommended comics and laptops while 15 % of each catalogue was random."""
    from consumers.models import Product
    from consumers.seeding import MERCHANTS

    seed_marketplace(seed=5, consumers=200, products=800, events=2_000, merchants=len(MERCHANTS), now=NOW)
    for slug, name, focus in MERCHANTS:
        sold = set(Product.objects.filter(merchant__slug=slug).values_list("category", flat=True).distinct())
        assert sold and sold <= set(focus), f"{name} sells {sorted(sold - set(focus))}"
