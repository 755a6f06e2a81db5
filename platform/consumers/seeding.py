"""A deterministic synthetic marketplace for demos, tests and benchmarks.

Same arguments, same data: every random draw comes from one numpy Generator
seeded with `seed`, consumed in a fixed order. The structure is there for the
layers above to find:

- merchants with catalogues in a category tree (category/subcategory/leaf) with
  brands, item popularity following a power law (Zipf) within each category;
- consumers with latent category preferences (a sparse Dirichlet draw, mildly
  shaped by age and gender), so collaborative filtering has signal; activity
  that is itself heavy-tailed; a favourite merchant and brand (store and brand
  loyalty); a discount sensitivity that makes discounted items convert better;
  "staples" that repeat buyers buy again; a share of churned consumers whose
  activity stopped months ago (lifecycle, RFM);
- countries (SG, MY, ID, TH, PH, VN, GB, US, AU, JP), ages, genders;
- devices (households occasionally share one; a few coupon abusers share a
  handful) and cancellations (frequent for those abusers), for risk control;
- direct-marketing consents: mostly express opt-ins, some later withdrawn,
  some deemed (which never counts for marketing), the rest none.

Everything is written through the ingestion services in chunks of consumers,
so it is validated, pseudonymised and audited like real data and scales from
a thousand consumers to ten million (docs/ingestion.md gives timings).
Consumer i's raw id is `demo.user{i}@example.com` (every third one a phone
number, `+65 8xxxxxxx`), so a demo can address a known consumer; only the
pseudonym is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from django.db import transaction

from .consents import consents_ingest
from .events import events_ingest
from .importers import merchant_for_import
from .models import Product
from .profiles import profiles_ingest

ACTOR = "command:seed_demo"

CATEGORY_TREE: dict[str, dict[str, list[str]]] = {
    "beauty": {
        "skincare": ["serums", "moisturisers", "cleansers", "sunscreen"],
        "makeup": ["lipstick", "foundation", "mascara"],
        "fragrance": ["perfume", "body-mist"],
    },
    "fashion": {
        "women": ["dresses", "tops", "shoes"],
        "men": ["shirts", "trousers", "sneakers"],
        "accessories": ["bags", "watches"],
    },
    "electronics": {
        "phones": ["smartphones", "cases", "chargers"],
        "audio": ["headphones", "speakers"],
        "computing": ["laptops", "keyboards", "monitors"],
    },
    "home": {
        "kitchen": ["cookware", "appliances", "storage"],
        "furniture": ["chairs", "tables"],
        "decor": ["lighting", "rugs"],
    },
    "sports": {
        "fitness": ["yoga-mats", "dumbbells", "trackers"],
        "running": ["running-shoes", "running-apparel"],
        "cycling": ["helmets", "bike-lights"],
    },
    "outdoor": {
        "camping": ["tents", "sleeping-bags", "stoves"],
        "hiking": ["backpacks", "hiking-boots"],
    },
    "toys": {"learning": ["puzzles", "stem-kits"], "play": ["dolls", "building-blocks", "board-games"]},
    "grocery": {
        "pantry": ["rice", "noodles", "sauces"],
        "beverages": ["coffee", "tea", "juice"],
        "snacks": ["chips", "biscuits"],
    },
    "books": {"fiction": ["novels", "comics"], "non-fiction": ["cookbooks", "self-help", "travel"]},
    "health": {"supplements": ["vitamins", "protein"], "personal-care": ["oral-care", "hair-care"]},
}
CATEGORIES = list(CATEGORY_TREE)
BRANDS: dict[str, list[str]] = {
    "beauty": ["Lumiere", "Glowlab", "Petal & Co", "Aurelle", "Skinwise", "Roselle"],
    "fashion": ["Threadline", "Urbanite", "Maison Kee", "Northstitch", "Solace", "Kaya"],
    "electronics": ["Voltix", "Sonora", "Pixelcore", "Aether", "Nimbus"],
    "home": ["Hearth", "Casa Verde", "Linden", "Oakridge", "Kitchara"],
    "sports": ["Stride", "Apex Motion", "Pulsefit", "Velo", "Kinetic"],
    "outdoor": ["Trailhead", "Summit Gear", "Wildroot", "Basecamp"],
    "toys": ["Brightblocks", "Playwise", "Tiny Titans", "Wonderbox"],
    "grocery": ["Golden Grain", "Morning Brew", "Harvest Table", "Snackery", "Lotus Leaf"],
    "books": ["Inkwell Press", "Paperlane", "Meridian Books", "Lantern"],
    "health": ["Vitalis", "Purely", "Nourish", "Everwell"],
}
# Categories bought again and again (staples of repeat buyers).
CONSUMABLES = {"grocery", "health", "beauty"}
# (slug, name, focus categories)
MERCHANTS = [
    ("lumen-beauty", "Lumen Beauty", ["beauty", "health"]),
    ("trailhead-outdoor", "Trailhead Outdoor", ["outdoor", "sports"]),
    ("voltmart", "VoltMart Electronics", ["electronics", "home"]),
    ("freshcart", "FreshCart Grocer", ["grocery", "health"]),
    ("urban-thread", "Urban Thread", ["fashion", "beauty"]),
    ("kidsville", "Kidsville Toys & Books", ["toys", "books"]),
    ("casa-living", "Casa Living", ["home", "fashion"]),
    ("page-turner", "Page Turner Books", ["books", "toys"]),
]
COUNTRIES = ["SG", "MY", "ID", "TH", "PH", "VN", "GB", "US", "AU", "JP"]
COUNTRY_WEIGHTS = [0.25, 0.18, 0.15, 0.10, 0.10, 0.08, 0.05, 0.05, 0.02, 0.02]
# Base event mix before purchases and cancellations are decided.
BROWSE_TYPES = ["view", "click", "cart", "favourite"]
BROWSE_WEIGHTS = [0.68, 0.15, 0.11, 0.06]
BASE_PRICE = {
    "beauty": 35,
    "fashion": 55,
    "electronics": 180,
    "home": 80,
    "sports": 60,
    "outdoor": 120,
    "toys": 30,
    "grocery": 8,
    "books": 20,
    "health": 25,
}


def consumer_raw_id(i: int) -> str:
    """The raw id seed_demo gives consumer i (pseudonymised on ingestion, never stored)."""
    return f"+65 8{i:07d}" if i % 3 == 2 else f"demo.user{i}@example.com"


@dataclass
class SeedSummary:
    merchants: int = 0
    products: int = 0
    consumers: int = 0
    events_sent: int = 0
    events_written: int = 0
    profiles: int = 0
    consents: int = 0
    rejected: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class _Catalogue:
    merchant_slugs: list[str]
    skus: np.ndarray  # product index -> sku (object array)
    merchant_of: np.ndarray  # product index -> merchant index
    category_of: np.ndarray  # product index -> top category index
    brand_of: np.ndarray  # product index -> brand index within its category
    price: np.ndarray  # product index -> list price
    by_category: list[np.ndarray]  # category -> product indexes, most popular first
    cum_weight: list[np.ndarray]  # category -> cumulative Zipf weights over by_category
    by_category_brand: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]
    by_category_merchant: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]


def _catalogue(
    rng: np.random.Generator, *, products: int, merchants: int
) -> tuple[_Catalogue, list[Product], list[tuple[str, str, list[str] | None]]]:
    chosen = [
        MERCHANTS[k] if k < len(MERCHANTS) else (f"demo-merchant-{k + 1}", f"Demo Merchant {k + 1}", None)
        for k in range(merchants)
    ]
    focus = []
    for _slug, _name, cats in chosen:
        if cats is None:
            cats = [CATEGORIES[i] for i in rng.choice(len(CATEGORIES), 2, replace=False)]
        focus.append([CATEGORIES.index(c) for c in cats])
    merchant_of = rng.integers(0, merchants, products)
    # Every product is in one of its merchant's two categories, so a store sells what its name says (an outdoor
    # store's campaign recommended comics and laptops when 15 % of each catalogue was random). The two draws that
    # used to pick those strays are still made, so the rest of the marketplace comes out as before.
    rng.random(products)
    focus_pick = rng.integers(0, 2, products)
    rng.integers(0, len(CATEGORIES), products)
    category_of = np.array(focus)[merchant_of, focus_pick]
    brand_u = rng.random(products)
    sub_u = rng.random(products)
    leaf_u = rng.random(products)
    price_noise = rng.lognormal(0.0, 0.45, products)
    popularity_rank = rng.permutation(products)  # rank 0 is the most popular
    rows: list[Product] = []
    brand_of = np.zeros(products, dtype=np.int64)
    price = np.zeros(products)
    skus = np.empty(products, dtype=object)
    for p in range(products):
        category = CATEGORIES[category_of[p]]
        brands = BRANDS[category]
        brand_of[p] = int(brand_u[p] * len(brands))
        subs = list(CATEGORY_TREE[category])
        sub = subs[int(sub_u[p] * len(subs))]
        leaves = CATEGORY_TREE[category][sub]
        leaf = leaves[int(leaf_u[p] * len(leaves))]
        price[p] = round(BASE_PRICE[category] * price_noise[p], 2) + 0.99
        skus[p] = f"DEMO-{p:07d}"
        brand = brands[brand_of[p]]
        rows.append(
            Product(
                sku=skus[p],
                title=f"{brand} {leaf.replace('-', ' ')} {p % 97 + 1}",
                category_path=f"{category}/{sub}/{leaf}",
                category=category,
                brand=brand,
                price=Decimal(f"{price[p]:.2f}"),
                merchant_id=int(merchant_of[p]),  # an index for now; the id is set once merchants exist
            )
        )
    by_category, cum_weight = [], []
    for c in range(len(CATEGORIES)):
        members = np.flatnonzero(category_of == c)
        members = members[np.argsort(popularity_rank[members], kind="stable")]
        weights = 1.0 / np.arange(1, len(members) + 1) ** 1.07  # Zipf within the category
        by_category.append(members)
        cum_weight.append(np.cumsum(weights) / weights.sum() if len(members) else weights)

    def grouped(key_of: np.ndarray) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
        groups: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for c, members in enumerate(by_category):
            for k in np.unique(key_of[members]):
                subset = members[key_of[members] == k]  # keeps the popularity order
                w = 1.0 / np.arange(1, len(subset) + 1) ** 1.07
                groups[(c, int(k))] = (subset, np.cumsum(w) / w.sum())
        return groups

    catalogue = _Catalogue(
        merchant_slugs=[slug for slug, _name, _cats in chosen],
        skus=skus,
        merchant_of=merchant_of,
        category_of=category_of,
        brand_of=brand_of,
        price=price,
        by_category=by_category,
        cum_weight=cum_weight,
        by_category_brand=grouped(brand_of),
        by_category_merchant=grouped(merchant_of),
    )
    return catalogue, rows, chosen


def _pick(members: np.ndarray, cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    return members[np.minimum(np.searchsorted(cum, u, side="right"), len(members) - 1)]


class _Traits:
    """One chunk's consumers: demographics, tastes, habits. Arrays indexed by position in the chunk."""

    def __init__(self, rng: np.random.Generator, size: int, *, merchants: int, days: int, n_categories: int):
        self.age = np.clip(rng.normal(34, 11, size), 16, 80).astype(int)
        self.gender_code = rng.choice(3, size, p=[0.5, 0.46, 0.04])
        self.gender = [("f", "m", "x")[g] for g in self.gender_code]
        self.country = [COUNTRIES[c] for c in rng.choice(len(COUNTRIES), size, p=COUNTRY_WEIGHTS)]
        self.sensitivity = rng.beta(2, 5, size)  # discount sensitivity
        self.repeat_buyer = rng.random(size) < 0.35
        churned = rng.random(size) < 0.25
        self.active_until = np.where(churned, rng.uniform(60, 300, size), rng.uniform(0, 7, size))
        self.active_span = rng.uniform(30, days, size)
        self.abuser = rng.random(size) < 0.01  # coupon abusers: many cancellations, shared devices
        self.household = np.arange(size)
        shares = rng.random(size) < 0.04
        self.household[1:][shares[1:]] = self.household[:-1][shares[1:]]  # the previous consumer's device
        self.consent_u = rng.random(size)
        self.withdraw_u = rng.random(size)
        self.fav_merchant = rng.integers(0, merchants, size)
        self.fav_brand_u = rng.random(size)
        self.staple_u = rng.random((size, n_categories))


def seed_marketplace(
    *,
    consumers: int,
    products: int,
    events: int,
    seed: int,
    merchants: int = 4,
    days: int = 365,
    chunk_consumers: int = 20_000,
    progress: Callable[[int], object] | None = None,
    now: datetime | None = None,
) -> SeedSummary:
    """Generate and ingest the marketplace; `progress(n)` is told of every n events written."""
    if consumers < 1 or products < 1 or events < 0 or merchants < 1:
        raise ValueError("consumers, products and merchants must be at least 1, events at least 0")
    started = datetime.now(tz=UTC)
    rng = np.random.default_rng(seed)
    summary = SeedSummary(consumers=consumers)
    end = (now or datetime.now(tz=UTC)).replace(hour=0, minute=0, second=0, microsecond=0)

    catalogue, product_rows, chosen = _catalogue(rng, products=products, merchants=merchants)
    with transaction.atomic():
        merchant_ids = []
        for slug, name, _cats in chosen:
            merchant, _ = merchant_for_import(slug=slug, name=name)
            merchant_ids.append(merchant.pk)
        for row in product_rows:
            row.merchant_id = merchant_ids[row.merchant_id]
        Product.objects.bulk_create(product_rows, ignore_conflicts=True, batch_size=2000)
    summary.merchants, summary.products = merchants, products

    # Only the activity weights are drawn for everyone up front (they fix each consumer's event count);
    # every other trait is drawn chunk by chunk, so memory stays flat from 1k to 10M consumers.
    n_cat = len(CATEGORIES)
    activity = rng.lognormal(0.0, 1.1, consumers)  # heavy-tailed: a few consumers do most
    per_consumer = rng.multinomial(events, activity / activity.sum()) if events else np.zeros(consumers, np.int64)
    del activity

    event_number = 0
    for start in range(0, consumers, chunk_consumers):
        stop = min(consumers, start + chunk_consumers)
        size = stop - start
        ids = np.arange(start, stop)
        raw_ids = [consumer_raw_id(int(i)) for i in ids]
        t = _Traits(rng, size, merchants=merchants, days=days, n_categories=n_cat)

        profile_rows = [
            {"consumer_id": raw_ids[k], "age": int(t.age[k]), "country": t.country[k], "gender": t.gender[k]}
            for k in range(size)
        ]
        report = profiles_ingest(rows=profile_rows, actor=ACTOR)
        summary.profiles += report.accepted
        summary.rejected += report.rejected_rows

        consent_rows = []
        for k in range(size):
            u = t.consent_u[k]
            if u >= 0.85:
                continue  # no decision recorded
            given = end - timedelta(days=float(t.active_until[k] + t.active_span[k]))
            kind = "express" if u < 0.70 else "deemed"
            consent_rows.append(
                {
                    "consumer_id": raw_ids[k],
                    "purpose": "direct_marketing",
                    "status": "granted",
                    "kind": kind,
                    "source": "seed_demo:signup",
                    "occurred_at": given.isoformat(),
                }
            )
            if kind == "express" and t.withdraw_u[k] < 0.12:
                consent_rows.append(
                    {
                        "consumer_id": raw_ids[k],
                        "purpose": "direct_marketing",
                        "status": "withdrawn",
                        "kind": "express",
                        "source": "seed_demo:settings",
                        "occurred_at": (given + timedelta(days=20)).isoformat(),
                    }
                )
        report = consents_ingest(rows=consent_rows, actor=ACTOR)
        summary.consents += report.accepted
        summary.rejected += report.rejected_rows

        counts = per_consumer[start:stop]
        n = int(counts.sum())
        if n == 0:
            continue
        who = np.repeat(ids, counts)
        local = who - start
        # Latent preferences: sparse Dirichlet, nudged by gender and age, fixed per consumer.
        prefs = rng.dirichlet(np.full(n_cat, 0.35), size)
        boost = np.ones((size, n_cat))
        boost[t.gender_code == 0, CATEGORIES.index("beauty")] *= 2.0
        boost[t.gender_code == 1, CATEGORIES.index("electronics")] *= 1.6
        boost[t.age < 30, CATEGORIES.index("fashion")] *= 1.5
        boost[t.age >= 45, CATEGORIES.index("health")] *= 1.7
        prefs = prefs * boost
        cum_prefs = np.cumsum(prefs / prefs.sum(axis=1, keepdims=True), axis=1)
        top_category = prefs.argmax(axis=1)

        u = rng.random((n, 6))
        category = np.minimum((u[:, 0:1] > cum_prefs[local]).sum(axis=1), n_cat - 1)
        product = np.empty(n, dtype=np.int64)
        for c in range(n_cat):
            in_c = np.flatnonzero(category == c)
            if not len(in_c):
                continue
            members, cum = catalogue.by_category[c], catalogue.cum_weight[c]
            if not len(members):  # a tiny catalogue may lack this category: fall back to any product
                product[in_c] = rng.integers(0, products, len(in_c))
                continue
            product[in_c] = _pick(members, cum, u[in_c, 1])
            # Brand loyalty: in their favourite category, a third of events go to the favourite brand.
            brands = BRANDS[CATEGORIES[c]]
            loyal = in_c[(top_category[local[in_c]] == c) & (u[in_c, 2] < 0.33)]
            for b in range(len(brands)):
                group = catalogue.by_category_brand.get((c, b))
                chosen_b = loyal[(t.fav_brand_u[local[loyal]] * len(brands)).astype(int) == b]
                if group is not None and len(chosen_b):
                    product[chosen_b] = _pick(group[0], group[1], u[chosen_b, 3])
            # Store loyalty: another third go to the favourite merchant when it sells the category.
            store = in_c[(u[in_c, 2] >= 0.33) & (u[in_c, 2] < 0.66)]
            for m in range(merchants):
                group = catalogue.by_category_merchant.get((c, m))
                chosen_m = store[t.fav_merchant[local[store]] == m]
                if group is not None and len(chosen_m):
                    product[chosen_m] = _pick(group[0], group[1], u[chosen_m, 3])
            # Repeat buyers come back to their staple in consumable categories.
            if CATEGORIES[c] in CONSUMABLES:
                again = in_c[t.repeat_buyer[local[in_c]] & (u[in_c, 4] < 0.3)]
                if len(again):
                    product[again] = _pick(members, cum, t.staple_u[local[again], c])

        list_price = catalogue.price[product]
        discounted = rng.random(n) < 0.25
        discount_rate = rng.uniform(0.1, 0.4, n) * discounted
        buy_p = 0.07 * (1 + 3.0 * t.sensitivity[local] * discounted)
        purchase = u[:, 5] < buy_p
        browse = rng.choice(len(BROWSE_TYPES), n, p=BROWSE_WEIGHTS)
        quantity = 1 + (rng.random(n) < 0.15) * rng.integers(1, 3, n)
        offset_days = t.active_until[local] + rng.random(n) ** 1.4 * t.active_span[local]
        seconds = np.floor(offset_days * 86400).astype(np.int64)
        cancel = purchase & (rng.random(n) < np.where(t.abuser[local], 0.45, 0.03))
        device_pick = rng.integers(0, 5, n)

        rows = []
        skus = catalogue.skus
        slugs = catalogue.merchant_slugs
        merchant_of = catalogue.merchant_of
        for j in range(n):
            k = int(local[j])
            p = int(product[j])
            event_id = f"demo:{seed}:{event_number + j}"
            paid = list_price[j] * (1 - discount_rate[j])
            occurred = end - timedelta(seconds=int(seconds[j]))
            device = f"demo-shared-device-{device_pick[j]}" if t.abuser[k] else f"demo-device-{start + t.household[k]}"
            row = {
                "event_id": event_id,
                "consumer_id": raw_ids[k],
                "merchant": slugs[merchant_of[p]],
                "sku": skus[p],
                "event_type": "purchase" if purchase[j] else BROWSE_TYPES[browse[j]],
                "occurred_at": occurred,
                "quantity": int(quantity[j]) if purchase[j] else 1,
                "price": f"{paid:.2f}",
                "discount": f"{list_price[j] - paid:.2f}",
                "device_id": device,
            }
            if purchase[j]:
                row["order_id"] = event_id
            rows.append(row)
            if cancel[j]:
                rows.append(
                    {
                        **row,
                        "event_id": event_id + ":cancel",
                        "event_type": "cancel",
                        "occurred_at": min(end, occurred + timedelta(days=2)),
                    }
                )
        event_number += n
        report = events_ingest(rows=rows, actor=ACTOR)
        summary.events_sent += len(rows)
        summary.events_written += report.accepted
        summary.rejected += report.rejected_rows
        if progress is not None:
            progress(n)
    summary.seconds = (datetime.now(tz=UTC) - started).total_seconds()
    return summary
