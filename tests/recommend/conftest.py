"""Fixtures for the recommender tests: synthetic data with planted structure, in memory and in the database
(products from the catalogue factory, consumers and events through ingestion)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import scipy.sparse as sp

from consumers.models import Consumer, EventType, Product
from merchants.models import Merchant
from recommend import artefacts, ranking
from tests.factories import ProductFactory, consumers_create, event_row, events_ingest_rows


def planted_matrix(
    *, users: int = 600, items: int = 240, groups: int = 8, per_user: int = 24, in_group: float = 0.85, seed: int = 3
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Users in `groups` taste groups, each mostly interacting with its own block of items.

    Item popularity inside a block is skewed (Zipf-like) and a share of every
    user's interactions goes to globally popular items, so popularity is a
    real baseline, but only a model that finds the groups ranks a user's block.
    Returns (matrix, timestamps as a matrix of the same pattern, user groups).
    """
    rng = np.random.default_rng(seed)
    block = items // groups
    user_group = rng.integers(0, groups, users)
    global_pop = 1.0 / np.arange(1, items + 1) ** 0.8
    global_pop /= global_pop.sum()
    inner = 1.0 / np.arange(1, block + 1) ** 0.6
    inner /= inner.sum()
    rows, cols, times = [], [], []
    for u in range(users):
        chosen: set[int] = set()
        while len(chosen) < per_user:
            if rng.random() < in_group:
                item = user_group[u] * block + rng.choice(block, p=inner)
            else:
                item = rng.choice(items, p=global_pop)
            chosen.add(int(item))
        for t, item in enumerate(rng.permutation(sorted(chosen))):
            rows.append(u)
            cols.append(item)
            times.append(t)
    data = np.ones(len(rows), np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(users, items))
    stamps = sp.csr_matrix((np.asarray(times, np.float64) + 1, (rows, cols)), shape=(users, items))
    return matrix, stamps, user_group


@dataclass
class Marketplace:
    merchant: Merchant
    other_merchant: Merchant
    consumers: list[Consumer]
    products: dict[int, list[Product]]  # merchant id -> products
    purchases: dict[tuple[int, int], set[int]] = field(default_factory=dict)  # (consumer, merchant) -> product ids
    categories: list[str] = field(default_factory=list)
    group_of: dict[int, int] = field(default_factory=dict)  # consumer id -> taste group


GROUP_CATEGORIES = ["outdoor", "beauty", "books", "kitchen"]


def build_marketplace(
    merchant: Merchant,
    other_merchant: Merchant,
    *,
    consumers: int = 160,
    seed: int = 11,
    taste_groups: int = 4,
    sub_tastes: int = 2,
) -> Marketplace:
    """Two merchants, each with products in four categories; consumers in four taste groups (one category each).

    Every consumer views, carts and buys mostly in their group's category at
    both merchants, so a model can learn the groups; a few events go to
    other categories so popularity is not the answer. Inside their category a
    consumer keeps to one of `sub_tastes` interleaved slices of its products,
    so a collaborative model finds more than "popular in the consumer's
    category" (the baseline it must beat) can.
    """
    rng = np.random.default_rng(seed)
    slice_rng = np.random.default_rng(seed + 1000)
    products: dict[int, list[Product]] = {}
    for m in (merchant, other_merchant):
        for c, category in enumerate(GROUP_CATEGORIES):
            for i in range(10):
                ProductFactory(
                    merchant=m,
                    sku=f"{m.slug}-{seed}-{category}-{i}",
                    title=f"{category} item {i}",
                    category_path=f"{category}/sub{i % 3}",
                    brand=f"brand{c}",
                    price="10.00",
                )
        products[m.pk] = list(Product.objects.filter(merchant=m).order_by("id"))
    people = consumers_create(consumers, prefix=f"marketplace-{seed}")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    purchases: dict[tuple[int, int], set[int]] = {}
    group_of = {}
    serial = 0
    for person in people:
        group = int(rng.integers(0, taste_groups))
        group_of[person.pk] = group
        taste = int(slice_rng.integers(0, sub_tastes))
        for m in (merchant, other_merchant):
            catalogue = products[m.pk]
            in_category = [p for p in catalogue if p.category == GROUP_CATEGORIES[group]]
            own = [p for i, p in enumerate(in_category) if i % sub_tastes == taste]
            for _ in range(8):
                product = (
                    own[int(rng.zipf(1.6) - 1) % len(own)]
                    if rng.random() < 0.85
                    else catalogue[int(rng.integers(0, len(catalogue)))]
                )
                kind = rng.choice([EventType.VIEW, EventType.VIEW, EventType.CLICK, EventType.CART, EventType.PURCHASE])
                serial += 1
                rows.append(
                    event_row(
                        event_id=f"t{seed}-{serial}",
                        consumer=person,
                        merchant=m,
                        sku=product.sku,
                        event_type=int(kind),
                        occurred_at=start + timedelta(hours=serial),
                    )
                )
                if kind == EventType.PURCHASE:
                    purchases.setdefault((person.pk, m.pk), set()).add(product.pk)
    events_ingest_rows(rows)
    return Marketplace(
        merchant=merchant,
        other_merchant=other_merchant,
        consumers=people,
        products=products,
        purchases=purchases,
        categories=GROUP_CATEGORIES,
        group_of=group_of,
    )


@pytest.fixture
def marketplace(merchant, other_merchant) -> Marketplace:
    return build_marketplace(merchant, other_merchant)


@pytest.fixture(autouse=True)
def _fresh_recommend_caches(settings, tmp_path):
    """Each test gets its own media folder and empty per-process caches."""
    from django.core.cache import cache

    settings.MEDIA_ROOT = str(tmp_path / "media")
    artefacts.cache_clear()
    ranking._catalogues.clear()
    cache.clear()
    yield
    artefacts.cache_clear()
    ranking._catalogues.clear()
    cache.clear()
