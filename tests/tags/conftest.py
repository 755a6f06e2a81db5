"""Builders for hand-made tagging data, and a loader for the online-retail sample."""

from __future__ import annotations

import csv
import hashlib
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from consumers.models import Consumer, Event, EventType, Product
from privacy.pseudonyms import pseudonymise
from tags.bitmaps import bitmap_cache_clear

AS_OF = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

_serial = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_bitmap_cache():
    # Test databases reuse ids and versions across tests; a process cache must not leak between them.
    bitmap_cache_clear()
    yield
    bitmap_cache_clear()


@dataclass
class World:
    """Hand-built marketplace data. Times are days before AS_OF."""

    merchant: object

    def consumer(self, **profile) -> Consumer:
        return Consumer.objects.create(pseudonym=pseudonymise(f"consumer-{next(_serial)}"), **profile)

    def consumers(self, n: int, **profile) -> list[Consumer]:
        return Consumer.objects.bulk_create(
            [Consumer(pseudonym=pseudonymise(f"consumer-{next(_serial)}"), **profile) for _ in range(n)]
        )

    def product(self, *, category: str = "", brand: str = "", merchant=None, price: str = "10.00") -> Product:
        return Product.objects.create(
            merchant=merchant or self.merchant,
            sku=f"sku-{next(_serial)}",
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


# The online-retail sample's countries as ISO 3166-1 alpha-2 codes. The Channel Islands have no code of
# their own (Jersey and Guernsey do), so their customers get no country.
ONLINE_RETAIL_COUNTRIES = {
    "Australia": "AU",
    "Austria": "AT",
    "Bahrain": "BH",
    "Belgium": "BE",
    "Brazil": "BR",
    "Canada": "CA",
    "Channel Islands": "",
    "Cyprus": "CY",
    "Czech Republic": "CZ",
    "Denmark": "DK",
    "EIRE": "IE",
    "European Community": "",
    "Finland": "FI",
    "France": "FR",
    "Germany": "DE",
    "Greece": "GR",
    "Hong Kong": "HK",
    "Iceland": "IS",
    "Israel": "IL",
    "Italy": "IT",
    "Japan": "JP",
    "Lebanon": "LB",
    "Lithuania": "LT",
    "Malta": "MT",
    "Netherlands": "NL",
    "Norway": "NO",
    "Poland": "PL",
    "Portugal": "PT",
    "RSA": "ZA",
    "Saudi Arabia": "SA",
    "Singapore": "SG",
    "Spain": "ES",
    "Sweden": "SE",
    "Switzerland": "CH",
    "USA": "US",
    "United Arab Emirates": "AE",
    "United Kingdom": "GB",
    "Unspecified": "",
}


def online_retail_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        return list(csv.DictReader(handle))


def online_retail_time(text: str) -> datetime:
    return datetime.strptime(text, "%m/%d/%y %H:%M").replace(tzinfo=UTC)


def load_online_retail(path: Path, merchant) -> dict[str, int]:
    """Insert the sample's customers, products and purchases directly through the ORM.

    A deliberately simple loader (identifiers pseudonymised, cancellations and
    rows without a customer skipped); returns customer id -> Consumer id.
    """
    rows = online_retail_rows(path)
    customers: dict[str, str] = {}
    for row in rows:
        if row["CustomerID"]:
            customers.setdefault(row["CustomerID"], ONLINE_RETAIL_COUNTRIES.get(row["Country"].strip(), ""))
    consumers = Consumer.objects.bulk_create(
        [
            Consumer(pseudonym=pseudonymise(f"online-retail:{cid}"), country=country)
            for cid, country in customers.items()
        ]
    )
    consumer_ids = {cid: c.pk for cid, c in zip(customers, consumers, strict=True)}
    products: dict[str, Product] = {}
    for row in rows:
        code = row["StockCode"].strip()
        if code and code not in products:
            products[code] = Product(
                merchant=merchant,
                sku=code[:64],
                title=row["Description"].strip()[:300],
                price=Decimal(row["UnitPrice"]),
            )
    Product.objects.bulk_create(list(products.values()))
    product_ids = dict(Product.objects.filter(merchant=merchant).values_list("sku", "id"))
    events = []
    for number, row in enumerate(rows):
        if not row["CustomerID"] or row["InvoiceNo"].startswith("C"):
            continue
        events.append(
            Event(
                source_key=hashlib.sha256(f"online-retail:{number}".encode()).hexdigest()[:32],
                consumer_id=consumer_ids[row["CustomerID"]],
                merchant=merchant,
                product_id=product_ids.get(row["StockCode"].strip()[:64]),
                event_type=EventType.PURCHASE,
                occurred_at=online_retail_time(row["InvoiceDate"]),
                quantity=int(row["Quantity"]),
                price=Decimal(row["UnitPrice"]),
                order_ref=hashlib.sha256(f"invoice:{row['InvoiceNo']}".encode()).hexdigest()[:32],
            )
        )
    Event.objects.bulk_create(events, batch_size=5_000)
    return consumer_ids


@pytest.fixture
def online_retail(shared_data, merchant):
    path = shared_data / "online-retail" / "online_retail_sample_2010-12-01_to_2010-12-13.csv"
    if not path.is_file():
        pytest.skip("online-retail sample not present")
    consumer_ids = load_online_retail(path, merchant)
    return path, consumer_ids
