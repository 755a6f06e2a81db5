"""Consumers, events and the catalogue, through the pseudonymising ingestion services.

Consumers are known by a raw identifier that the ingestion service pseudonymises; the factories keep it on the
instance they return (`consumer.raw_id`, never stored) so events can be sent for the same person later.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from consumers.events import events_ingest
from consumers.ingestion import make_source_digester
from consumers.models import AgeRange, Consumer, Event, EventType, Product
from consumers.profiles import profiles_ingest
from privacy.pseudonyms import pseudonymise

# An age inside each range: the ingestion service takes ages (or birth dates), never ranges.
AGE_IN_RANGE = {
    AgeRange.UNDER_18: 16,
    AgeRange.A18_24: 21,
    AgeRange.A25_34: 30,
    AgeRange.A35_44: 40,
    AgeRange.A45_54: 50,
    AgeRange.A55_64: 60,
    AgeRange.A65_PLUS: 70,
}

_serial = itertools.count(1)

# Raw identifiers of the consumers these factories made, by consumer id, so a test holding only an id can still
# send events for that person (ids are reused from one test to the next; the latest maker wins).
_raw_ids: dict[int, str] = {}


def raw_id_of(consumer) -> str:
    """The raw identifier a factory-made consumer (or its id) was ingested under."""
    if isinstance(consumer, str):
        return consumer
    if isinstance(consumer, int):
        return _raw_ids[consumer]
    return getattr(consumer, "raw_id", None) or _raw_ids[consumer.pk]


class IngestionRefused(AssertionError):
    """Test data the ingestion service rejected: the factory was called with bad values."""


def _checked(report):
    if not report.ok:
        raise IngestionRefused(f"ingestion rejected test data: {report.as_dict()['errors']}")
    return report


def _profile_row(raw_id: str, *, age_range: str = "", age: int | None = None, country: str = "", gender: str = ""):
    row: dict = {"consumer_id": raw_id}
    if age is None and age_range:
        age = AGE_IN_RANGE[age_range]
    if age is not None:
        row["age"] = age
    if country:
        row["country"] = country
    if gender:
        row["gender"] = gender
    return row


def consumers_ingest(raw_ids: list[str], *, actor: str = "test", **profile) -> list[Consumer]:
    """Consumers for these raw identifiers, with the same profile, in one `profiles_ingest` call; in order."""
    rows = [_profile_row(raw_id, **profile) for raw_id in raw_ids]
    _checked(profiles_ingest(rows=rows, actor=actor))
    pseudonyms = [pseudonymise(raw_id) for raw_id in raw_ids]
    found = {c.pseudonym: c for c in Consumer.objects.filter(pseudonym__in=pseudonyms)}
    consumers = [found[p] for p in pseudonyms]
    for consumer, raw_id in zip(consumers, raw_ids, strict=True):
        consumer.raw_id = raw_id
        _raw_ids[consumer.pk] = raw_id
    return consumers


def consumers_create(n: int, *, prefix: str = "shopper", **profile) -> list[Consumer]:
    """n new consumers (fresh raw identifiers) in one ingestion call, in id order (ingestion inserts a batch in
    pseudonym order, so the i-th consumer returned is the i-th id created, as tests that count on ids expect)."""
    run = next(_serial)
    created = consumers_ingest([f"{prefix}-{run}-{i}@example.org" for i in range(n)], **profile)
    return sorted(created, key=lambda consumer: consumer.pk)


class ConsumerFactory(factory.django.DjangoModelFactory):
    """A consumer created by `profiles_ingest` from a raw identifier, with an optional profile.

    age_range is sent as an age inside the range (the service keeps only the range).
    """

    class Meta:
        model = Consumer

    raw_id = factory.Sequence(lambda n: f"consumer-{n}@example.org")
    age_range = ""
    age = None
    country = ""
    gender = ""

    @classmethod
    def _create(cls, model_class, *args, raw_id: str, **profile):
        [consumer] = consumers_ingest([raw_id], **profile)
        return consumer


def _iso(moment: datetime) -> str:
    return moment.isoformat()


class EventFactory(factory.django.DjangoModelFactory):
    """A behaviour event sent through `events_ingest` (which creates the consumer and the product if new).

    consumer: a Consumer made by these factories (its raw_id is sent) or a raw identifier. The product is
    named by sku, with the attributes a row may carry (title, category_path, brand); price and discount are
    per event. Returns the stored Event.
    """

    class Meta:
        model = Event

    event_id = factory.Sequence(lambda n: f"test-event-{n}")
    consumer = factory.SubFactory(ConsumerFactory)
    merchant = factory.SubFactory("tests.factories.merchants.MerchantFactory")
    sku = factory.Sequence(lambda n: f"SKU-{n}")
    event_type = EventType.VIEW
    occurred_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))
    quantity = 1
    price = "10.00"
    discount = "0"
    order_id = ""
    device_id = ""
    title = None
    category_path = None
    brand = None

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        row = event_row(**kwargs)
        _checked(events_ingest(rows=[row], actor="test"))
        return Event.objects.get(source_key=make_source_digester()(row["event_id"]))


def event_row(
    *,
    event_id: str | None = None,
    consumer,
    merchant,
    sku: str,
    event_type=EventType.VIEW,
    occurred_at: datetime | None = None,
    quantity: int = 1,
    price=None,
    discount="0",
    order_id: str = "",
    device_id: str = "",
    title: str | None = None,
    category_path: str | None = None,
    brand: str | None = None,
) -> dict:
    """One row as the operator sends it to the ingestion API. consumer: a factory-made Consumer, its id, or a
    raw identifier; merchant: a Merchant or its slug."""
    row = {
        "event_id": event_id or f"test-event-row-{next(_serial)}",
        "consumer_id": raw_id_of(consumer),
        "merchant": merchant if isinstance(merchant, str) else merchant.slug,
        "sku": sku,
        "event_type": EventType(int(event_type)).label,
        "occurred_at": _iso(occurred_at or timezone.now()),
        "quantity": quantity,
        "discount": str(discount),
    }
    if price is not None:
        row["price"] = str(price)
    if order_id:
        row["order_id"] = order_id
    if device_id:
        row["device_id"] = device_id
    for name, value in (("title", title), ("category_path", category_path), ("brand", brand)):
        if value is not None:
            row[name] = value
    return row


def events_ingest_rows(rows: list[dict], *, actor: str = "test"):
    """Many events in one `events_ingest` call; raises when any row is refused."""
    return _checked(events_ingest(rows=rows, actor=actor))


class ProductFactory(factory.django.DjangoModelFactory):
    """A catalogue product.

    The platform has no catalogue write service: products arrive with the events that name them, and
    ingestion stores (merchant, sku, title, category_path, brand, price) with the category as the top level
    of the path. This factory writes the row the same way (category from category_path unless given), for
    tests that need a catalogue without behaviour.
    """

    class Meta:
        model = Product
        django_get_or_create = ("merchant", "sku")

    merchant = factory.SubFactory("tests.factories.merchants.MerchantFactory")
    sku = factory.Sequence(lambda n: f"SKU-{n}")
    title = factory.LazyAttribute(lambda o: f"Product {o.sku}")
    category_path = ""
    category = factory.LazyAttribute(lambda o: o.category_path.split("/", 1)[0][:100])
    brand = ""
    price = Decimal("10.00")


__all__ = [
    "AGE_IN_RANGE",
    "ConsumerFactory",
    "EventFactory",
    "IngestionRefused",
    "ProductFactory",
    "consumers_create",
    "consumers_ingest",
    "event_row",
    "events_ingest_rows",
    "raw_id_of",
]
