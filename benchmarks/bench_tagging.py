"""Full tagging of 1M consumers / 20M events on PostgreSQL (issue target: ≤ 120 s). BENCH_SCALE scales both.

The benchmark works in a database of its own (`<database>_bench_tagging`), created and migrated like a test
database and kept between runs (BENCH_TAGGING_FRESH=1 regenerates it). Its synthetic marketplace is written
with binary COPY into staging tables and expanded server-side: consumers with skewed activity, favourite
categories, products and stores they come back to, a taste for discounts, and orders of several items.
Generation time is reported apart from tagging time.

Two tagging runs are timed: the first into empty tag tables, then a second that replaces every family
(the nightly steady state: delete and re-insert every row). Per-family compute and write times and the
shared input loading times are reported for the second run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from benchmarks import BenchContext, Row

NAME = "tagging"
CONSUMERS = 1_000_000
EVENTS = 20_000_000
PRODUCTS = 50_000
MERCHANTS = 200
CATEGORIES = [
    "Fashion", "Beauty", "Electronics", "Home & Garden", "Sports", "Toys", "Books", "Groceries",
    "Health", "Automotive", "Pets", "Jewellery", "Baby", "Music", "Office", "Outdoor", "Gaming",
    "Travel", "Crafts", "Furniture",
]  # fmt: skip
BRANDS = 500
AGE_RANGES = ["under-18", "18-24", "25-34", "35-44", "45-54", "55-64", "65-plus", ""]
AGE_WEIGHTS = [0.03, 0.18, 0.27, 0.2, 0.13, 0.08, 0.05, 0.06]
COUNTRIES = ["SG", "MY", "ID", "TH", "PH", "VN", "GB", "US", "AU", "JP", "KR", "IN", "HK", "TW", "NZ", ""]
COUNTRY_WEIGHTS = [0.3, 0.15, 0.12, 0.08, 0.07, 0.06, 0.04, 0.04, 0.03, 0.02, 0.02, 0.02, 0.02, 0.01, 0.01, 0.01]
# view, click, cart, favourite, purchase, cancel
EVENT_TYPES = np.array([1, 2, 3, 4, 5, 6], dtype=np.int16)
EVENT_WEIGHTS = np.array([0.62, 0.15, 0.08, 0.05, 0.08, 0.02])
CHUNK = 2_000_000


def run(ctx: BenchContext) -> list[Row]:
    if not ctx.on_postgres:
        return [Row(NAME, "full tagging", None, "s", target="≤ 120 s", skipped="needs PostgreSQL (DATABASE_URL)")]
    from django.db import connection

    consumers = max(1_000, int(CONSUMERS * ctx.scale))
    events = max(20_000, int(EVENTS * ctx.scale))
    products = max(1_000, int(PRODUCTS * min(1.0, ctx.scale * 4)))
    size = f"{consumers:,} consumers / {events:,} events"
    settings_dict = connection.settings_dict
    settings_dict.setdefault("TEST", {})
    previous_test_name = settings_dict["TEST"].get("NAME")
    settings_dict["TEST"]["NAME"] = f"{settings_dict['NAME']}_bench_{NAME}"
    original_name = settings_dict["NAME"]
    fresh = os.environ.get("BENCH_TAGGING_FRESH") == "1"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=not fresh, serialize=False)
    rows: list[Row] = []
    try:
        generation = _ensure_data(consumers, events, products)
        if generation is None:
            rows.append(Row(NAME, f"generate {size}", None, "s", note="reused from an earlier run"))
        else:
            rows.append(Row(NAME, f"generate {size}", generation, "s", note="COPY + server-side expansion, indexes"))
        rows.extend(_measure(size))
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0, keepdb=True)
        settings_dict["TEST"]["NAME"] = previous_test_name
    return rows


def _say(message: str) -> None:
    print(f"  [tagging] {message}", file=sys.stderr, flush=True)


def _measure(size: str) -> list[Row]:
    from django.db import connection

    from tags.models import ConsumerTag
    from tags.services import tags_compute

    _basis_approve()
    with connection.cursor() as cursor:
        cursor.execute(f'TRUNCATE "{ConsumerTag._meta.db_table}"')  # the first run starts from empty tag tables
    rows = []
    per_family = []
    for short, label in (("first run", "first run, empty tag tables"), ("re-run", "re-run, replacing every family")):
        _say(f"tagging: {label}")
        start = time.perf_counter()
        report = tags_compute(actor="benchmark:tagging", progress=_say)
        seconds = time.perf_counter() - start
        assigned = sum(f.assigned for f in report.families)
        rows.append(
            Row(NAME, f"full tagging of {size} ({label})", seconds, "s", target="≤ 120 s",
                note=f"{assigned:,} consumer tags, 1 run")
        )  # fmt: skip
        for name, load_seconds in report.load_seconds.items():
            per_family.append(Row(NAME, f"  {short}: load {name}", load_seconds, "s", note="shared by the families"))
        for family in report.families:
            per_family.append(
                Row(NAME, f"  {short}: family {family.family}", family.compute_seconds + family.write_seconds, "s",
                    note=f"compute {family.compute_seconds:.1f} s + write {family.write_seconds:.1f} s, "
                    f"{family.assigned:,} rows")
            )  # fmt: skip
    return rows + per_family


def _basis_approve() -> None:
    from django.utils import timezone

    from privacy.models import ActivityStatus, LegalBasis, ProcessingActivity, Purpose

    if not ProcessingActivity.objects.filter(purpose=Purpose.TAGGING, status=ActivityStatus.APPROVED).exists():
        ProcessingActivity.objects.create(
            name="Benchmark tagging",
            purpose=Purpose.TAGGING,
            legal_basis=LegalBasis.BUSINESS_IMPROVEMENT,
            description="Synthetic data only.",
            assessment="Synthetic benchmark data; no real consumers.",
            status=ActivityStatus.APPROVED,
            approved_at=timezone.now(),
        )


def _ensure_data(consumers: int, events: int, products: int) -> float | None:
    """Generate the marketplace unless the database already holds one of this size. Returns seconds or None."""
    from consumers.models import Consumer, Event

    if Consumer.objects.count() == consumers and Event.objects.count() == events:
        return None
    start = time.perf_counter()
    generate_marketplace(consumers, events, products, say=_say)
    return time.perf_counter() - start


def generate_marketplace(n_consumers: int, n_events: int, n_products: int, *, say: Callable[[str], None]) -> None:
    """Write the synthetic marketplace into the current (benchmark) database with binary COPY, telling `say` of
    each step. Replaces whatever consumers, products, merchants and events were there. Shared with the predicted-
    traits benchmark, which times its full-size run on the same world."""
    from django.db import DatabaseError, connection

    from consumers.models import Consumer, Event, Product
    from dbtools.pgcopy import Column, copy_in
    from merchants.models import Merchant

    rng = np.random.default_rng(20240601)
    event_table, consumer_table, product_table = (m._meta.db_table for m in (Event, Consumer, Product))
    merchant_table = Merchant._meta.db_table
    now = time.time()
    with connection.cursor() as cursor:
        raw = cursor.cursor
        say("generate: clearing")
        cursor.execute(f'TRUNCATE "{event_table}", "{product_table}", "{consumer_table}", "{merchant_table}" CASCADE')
        # Skip per-row foreign-key triggers while loading data that is consistent by construction
        # (superusers only; anyone else loads with the triggers on, which is slower).
        with contextlib.suppress(DatabaseError):
            cursor.execute("SET session_replication_role = replica")
        # Loading into an unindexed table and indexing afterwards is several times faster than maintaining
        # the indexes row by row; the definitions are read back so the rebuilt table is exactly the migrated one.
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
            "AND contype = 'u'",
            [event_table],
        )
        event_constraints = cursor.fetchall()
        for name, _ in event_constraints:
            cursor.execute(f'ALTER TABLE "{event_table}" DROP CONSTRAINT "{name}"')
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)",
            [event_table, event_table],
        )
        event_indexes = cursor.fetchall()
        for name, _ in event_indexes:
            cursor.execute(f'DROP INDEX "{name}"')

        say("generate: merchants and products")
        # Through the ORM, so the model's defaults (time zone, currency, ...) fill the columns it gained since.
        Merchant.objects.bulk_create(
            [Merchant(id=i, slug=f"bench-{i}", name=f"Bench store {i}") for i in range(1, MERCHANTS + 1)]
        )
        # Products sorted by category, so "a product of category c" is an index range.
        product_category = np.sort(rng.integers(0, len(CATEGORIES), n_products))
        product_brand = rng.integers(0, BRANDS, n_products)
        # A brand sells through a few stores.
        product_merchant = (product_brand * 7 + rng.integers(0, 3, n_products)) % MERCHANTS + 1
        product_price = np.round(np.exp(rng.normal(3.0, 0.9, n_products)), 2)
        cursor.execute(
            "CREATE TEMP TABLE bench_product (id int8, merchant int8, category int4, brand int4, price float8)"
        )
        copy_in(
            raw,
            "bench_product",
            [Column("id", "int8"), Column("merchant", "int8"), Column("category", "int4"), Column("brand", "int4"),
             Column("price", "float8")],
            {"id": np.arange(1, n_products + 1), "merchant": product_merchant, "category": product_category,
             "brand": product_brand, "price": product_price},
        )  # fmt: skip
        cursor.execute(
            f'INSERT INTO "{product_table}" (id, merchant_id, sku, title, category_path, category, brand, price, '
            "created_at) SELECT id, merchant, 'sku-' || id, 'Product ' || id, lower((%s::text[])[category + 1]), "
            "(%s::text[])[category + 1], 'Brand ' || brand, round(price::numeric, 2), now() FROM bench_product",
            [CATEGORIES, CATEGORIES],
        )

        say(f"generate: {n_consumers:,} consumers")
        cursor.execute("CREATE TEMP TABLE bench_consumer (id int8, age int2, country int2, gender int2)")
        copy_in(
            raw,
            "bench_consumer",
            [Column("id", "int8"), Column("age", "int2"), Column("country", "int2"), Column("gender", "int2")],
            {
                "id": np.arange(1, n_consumers + 1),
                "age": rng.choice(len(AGE_RANGES), n_consumers, p=AGE_WEIGHTS) + 1,
                "country": rng.choice(len(COUNTRIES), n_consumers, p=COUNTRY_WEIGHTS) + 1,
                "gender": rng.integers(1, 5, n_consumers),
            },
        )
        cursor.execute(
            f'INSERT INTO "{consumer_table}" (id, pseudonym, age_range, country, gender, created_at, updated_at) '
            "SELECT id, md5('bench-c' || id) || md5('bench-p' || id), (%s::text[])[age], (%s::text[])[country], "
            "(ARRAY['f', 'm', 'x', ''])[gender], now(), now() FROM bench_consumer",
            [AGE_RANGES, COUNTRIES],
        )

        # Each consumer: how active (lognormal), how recently (some have lapsed), a favourite category and a
        # favourite spot in it (they come back to the same products, brands and stores), a taste for discounts.
        activity = np.exp(rng.normal(0.0, 1.0, n_consumers))
        activity /= activity.sum()
        lapsed_days = np.where(rng.random(n_consumers) < 0.3, rng.exponential(120, n_consumers), 0.0)
        favourite = rng.integers(0, len(CATEGORIES), n_consumers)
        spot = rng.random(n_consumers)
        thrift = rng.beta(1.2, 3.0, n_consumers)
        category_start = np.searchsorted(product_category, np.arange(len(CATEGORIES) + 1))

        say(f"generate: {n_events:,} events")
        cursor.execute(
            "CREATE TEMP TABLE bench_event (consumer int8, merchant int8, product int8, type int2, at timestamptz, "
            "price float8, discount float8, quantity int2, order_no int8)"
        )
        cumulative = np.cumsum(activity)
        for offset in range(0, n_events, CHUNK):
            n = min(CHUNK, n_events - offset)
            consumer = np.minimum(np.searchsorted(cumulative, rng.random(n) * cumulative[-1]), n_consumers - 1)
            category = np.where(rng.random(n) < 0.7, favourite[consumer], rng.integers(0, len(CATEGORIES), n))
            low, high = category_start[category], category_start[category + 1]
            width = np.maximum(high - low, 1)
            near = (spot[consumer] * width + rng.geometric(0.3, n) - 1).astype(np.int64) % width
            anywhere = rng.integers(0, 1 << 30, n) % width
            product_index = low + np.where(rng.random(n) < 0.6, near, anywhere)
            event_type = EVENT_TYPES[np.searchsorted(np.cumsum(EVENT_WEIGHTS), rng.random(n) * EVENT_WEIGHTS.sum())]
            age_days = np.minimum(lapsed_days[consumer] + rng.exponential(60, n), 364.0)
            at = now - age_days * 86_400
            purchase = event_type == 5
            discounted = purchase & (rng.random(n) < thrift[consumer])
            price = product_price[product_index]
            copy_in(
                raw,
                "bench_event",
                [Column("consumer", "int8"), Column("merchant", "int8"), Column("product", "int8"),
                 Column("type", "int2"), Column("at", "timestamptz"), Column("price", "float8"),
                 Column("discount", "float8"), Column("quantity", "int2"), Column("order_no", "int8")],
                {"consumer": consumer + 1, "merchant": product_merchant[product_index], "product": product_index + 1,
                 "type": event_type, "at": np.round((at - 946_684_800) * 1_000_000).astype(np.int64),
                 "price": price, "discount": np.where(discounted, np.round(price * 0.2, 2), 0.0),
                 "quantity": np.where(purchase, rng.integers(1, 3, n), 1),
                 # Purchases on the same day by the same consumer form one order.
                 "order_no": np.where(purchase, (consumer + 1) * 1000 + (age_days // 1).astype(np.int64), 0)},
            )  # fmt: skip
            say(f"generate: staged {offset + n:,} events")
        say("generate: expanding events")
        cursor.execute(
            f'INSERT INTO "{event_table}" (source_key, consumer_id, merchant_id, product_id, event_type, '
            "occurred_at, quantity, price, discount, order_ref, device) "
            "SELECT lpad(to_hex(row_number() OVER ()), 32, '0'), consumer, merchant, product, type, at, quantity, "
            "round(price::numeric, 2), round(discount::numeric, 2), "
            "CASE WHEN order_no = 0 THEN '' ELSE md5('bench-o' || order_no) END, '' FROM bench_event"
        )
        for table in (event_table, consumer_table, product_table, merchant_table):
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT COALESCE(max(id), 1) FROM " + f'"{table}"))',
                [table],
            )
        cursor.execute("DROP TABLE bench_event, bench_consumer, bench_product")
        say("generate: rebuilding event indexes")
        for _, definition in event_indexes:
            cursor.execute(definition)
        for name, definition in event_constraints:
            cursor.execute(f'ALTER TABLE "{event_table}" ADD CONSTRAINT "{name}" {definition}')
        cursor.execute("SET session_replication_role = DEFAULT")
    say("generate: vacuum analyze")
    previous = connection.get_autocommit()
    connection.set_autocommit(True)
    with connection.cursor() as cursor:
        for table in (event_table, consumer_table, product_table):
            cursor.execute(f'VACUUM ANALYZE "{table}"')
    connection.set_autocommit(previous)
