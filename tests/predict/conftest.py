"""Synthetic marketplaces for the predicted traits: one with a planted signal, one without.

With signal: each consumer has a persistent taste for carting (some cart often, some rarely); three in four
carts turn into a purchase of the carted product 3 to 20 days later. Recent carts therefore tell who buys next,
from which store and in which category, how much and how soon, which a recency/frequency rule over past
purchases only partly sees. Without signal: purchases fall at one constant rate for everyone, at random times,
and carts and views are unrelated to them, so nothing in the past predicts the future.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from consumers.models import Event, EventType, Product
from tests.factories import MerchantFactory, ProductFactory, consumers_create

AS_OF = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CATEGORIES = ["Beauty", "Sports", "Home", "Books"]
_serial = itertools.count(1)


def marketplace(*, consumers: int = 1200, signal: bool = True, seed: int = 7, days: int = 400) -> dict:
    rng = np.random.default_rng(seed)
    merchants = [MerchantFactory(slug=f"store-{i}", name=f"Store {i}") for i in range(2)]
    products: list[Product] = []
    for merchant in merchants:
        for category in CATEGORIES:
            for _ in range(3):
                n = next(_serial)
                products.append(
                    ProductFactory(
                        merchant=merchant,
                        sku=f"sku-{n}",
                        title="",
                        category=category,
                        category_path=category.lower(),
                        brand="",
                        price=Decimal(str(5 + (n % 7) * 5)),
                    )
                )
    people = []
    ages = ["18-24", "25-34", "35-44", "45-54"]
    countries = ["SG", "MY", "GB"]
    per = consumers // 6
    for i in range(6):
        people += consumers_create(per, prefix=f"predict-{seed}-{i}", age_range=ages[i % 4], country=countries[i % 3])
    rows = []

    def add(consumer, kind, days_ago, product):
        rows.append((consumer, kind, days_ago, product))

    for consumer in people:
        favourite = rng.integers(len(products))
        for days_ago in rng.uniform(0.01, days, rng.poisson(12)):
            add(consumer, EventType.VIEW, days_ago, products[rng.integers(len(products))])
        if signal:
            rate = rng.choice([0.2, 0.8, 2.5])  # carts per 30 days
            for started in rng.uniform(0.01, days, rng.poisson(rate * days / 30)):
                pick = favourite if rng.random() < 0.5 else rng.integers(len(products))
                product = products[pick]
                add(consumer, EventType.CART, started, product)
                if rng.random() < 0.75:
                    bought = started - rng.uniform(3, 20)
                    if bought > 0:
                        add(consumer, EventType.PURCHASE, bought, product)
        else:
            for days_ago in rng.uniform(0.01, days, rng.poisson(3 * days / 365)):
                add(consumer, EventType.CART, days_ago, products[rng.integers(len(products))])
            for days_ago in rng.uniform(0.01, days, rng.poisson(4 * days / 365)):
                add(consumer, EventType.PURCHASE, days_ago, products[rng.integers(len(products))])
    Event.objects.bulk_create(
        (
            Event(
                source_key=hashlib.sha256(f"predict-event-{next(_serial)}".encode()).hexdigest()[:32],
                consumer=consumer,
                merchant_id=product.merchant_id,
                product=product,
                event_type=kind,
                occurred_at=AS_OF - timedelta(days=float(days_ago)),
                quantity=1,
                price=product.price if kind == EventType.PURCHASE else None,
                discount=Decimal("0"),
                order_ref=hashlib.sha256(f"order-{next(_serial)}".encode()).hexdigest()[:32]
                if kind == EventType.PURCHASE
                else "",
            )
            for consumer, kind, days_ago, product in rows
        ),
        batch_size=5_000,
    )
    return {"merchants": merchants, "consumers": people, "events": len(rows)}


@pytest.fixture
def signal_world(db, approve_activity):
    approve_activity("tagging")
    return marketplace(signal=True)


@pytest.fixture
def noise_world(db, approve_activity):
    approve_activity("tagging")
    return marketplace(signal=False)
