"""Tagging data for the rules' tests, and the online-retail sample imported through the real importer."""

from __future__ import annotations

import csv
import hashlib
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from consumers.models import Consumer, Event, EventType, Product
from privacy.pseudonyms import make_pseudonymiser, pseudonymise
from tests.factories import ConsumerFactory, ProductFactory, consumers_create

AS_OF = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

_serial = itertools.count(1)


@dataclass
class World:
    """Marketplace data for the tagging rules' own tests. Times are days before AS_OF.

    Consumers are ingested (profiles_ingest) and products come from the catalogue factory. Events are written
    as rows here, not through ingestion: the rules must be shown on inputs ingestion never produces (events
    without a product, order references as stored by old imports), and `legacy_consumer` writes a profile an
    old import left behind (a lower-case country, an age range the platform does not know).
    """

    merchant: object

    def consumer(self, **profile) -> Consumer:
        return ConsumerFactory(raw_id=f"tags-consumer-{next(_serial)}", **profile)

    def legacy_consumer(self, **profile) -> Consumer:
        return Consumer.objects.create(pseudonym=pseudonymise(f"tags-consumer-{next(_serial)}"), **profile)

    def consumers(self, n: int, **profile) -> list[Consumer]:
        return consumers_create(n, prefix="tags-consumer", **profile)

    def product(self, *, category: str = "", brand: str = "", merchant=None, price: str = "10.00") -> Product:
        return ProductFactory(
            merchant=merchant or self.merchant,
            sku=f"sku-{next(_serial)}",
            title="",
            category=category,
            category_path=category.lower(),
            brand=brand,
            price=Decimal(price),
        )

    def event(
        self,
        consumer: Consumer,
        event_type: int,
        *,
        days_ago: float,
        product: Product | None = None,
        merchant=None,
        price: str | None = None,
        quantity: int = 1,
        discount: str = "0",
        order: str = "",
    ) -> None:
        self.events([(consumer, event_type, days_ago, product, merchant, price, quantity, discount, order)])

    def events(self, rows) -> None:
        objects = []
        for consumer, event_type, days_ago, product, merchant, price, quantity, discount, order in rows:
            objects.append(
                Event(
                    source_key=hashlib.sha256(f"event-{next(_serial)}".encode()).hexdigest()[:32],
                    consumer=consumer,
                    merchant=merchant or (product.merchant if product else self.merchant),
                    product=product,
                    event_type=event_type,
                    occurred_at=AS_OF - timedelta(days=days_ago),
                    quantity=quantity,
                    price=Decimal(price) if price is not None else (product.price if product else None),
                    discount=Decimal(discount),
                    order_ref=hashlib.sha256(order.encode()).hexdigest()[:32] if order else "",
                )
            )
        Event.objects.bulk_create(objects)

    def purchase(self, consumer, product, *, days_ago: float, order: str = "", discount: str = "0", price=None):
        self.event(
            consumer,
            EventType.PURCHASE,
            days_ago=days_ago,
            product=product,
            order=order,
            discount=discount,
            price=price,
        )


@pytest.fixture
def world(merchant) -> World:
    return World(merchant=merchant)


# The online-retail sample's countries as ISO 3166-1 alpha-2 codes, written out here so the test's expectations
# do not come from the importer under test. The Channel Islands have no code of their own (Jersey and Guernsey
# do), so their customers get no country.
ONLINE_RETAIL_COUNTRIES = {
    "Australia": "AU",
    "Belgium": "BE",
    "Channel Islands": "",
    "Denmark": "DK",
    "EIRE": "IE",
    "France": "FR",
    "Germany": "DE",
    "Iceland": "IS",
    "Italy": "IT",
    "Japan": "JP",
    "Lithuania": "LT",
    "Netherlands": "NL",
    "Norway": "NO",
    "Poland": "PL",
    "Portugal": "PT",
    "Spain": "ES",
    "Switzerland": "CH",
    "United Kingdom": "GB",
}


def online_retail_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        return list(csv.DictReader(handle))


def online_retail_time(text: str) -> datetime:
    return datetime.strptime(text, "%m/%d/%y %H:%M").replace(tzinfo=UTC)


@pytest.fixture
def online_retail(shared_data, db):
    """The sample imported with `import_events --format online_retail`; returns (path, CustomerID -> consumer id)."""
    path = shared_data / "online-retail" / "online_retail_sample_2010-12-01_to_2010-12-13.csv"
    if not path.is_file():
        pytest.skip("online-retail sample not present")
    call_command(
        "import_events", "--format", "online_retail", str(path), "--no-progress", stdout=StringIO(), stderr=StringIO()
    )
    pseudonymise = make_pseudonymiser()
    customers = {row["CustomerID"] for row in online_retail_rows(path) if row["CustomerID"]}
    by_pseudonym = {pseudonymise(f"online_retail:{cid}"): cid for cid in customers}
    found = Consumer.objects.filter(pseudonym__in=list(by_pseudonym)).values_list("pseudonym", "id")
    return path, {by_pseudonym[pseudonym]: consumer_id for pseudonym, consumer_id in found}
