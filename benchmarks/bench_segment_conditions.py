"""Segments: estimate latency with the marketer's conditions (spend, counts, average order value, first and last
occurrence, "did not") and with the my-customers scope.

A scratch database (created and dropped here, like bench_segments) with the 100 synthetic tags of bench_segments
over N consumers (N = 1M × BENCH_SCALE) and E = 10M × BENCH_SCALE events (PostgreSQL: COPY; SQLite: bulk
insert) spread over 5 merchants, 5 event types, 100 products in 10 categories and the last 365 days, with prices
of 1-200 and quantities 1-3. Measured in process with `audience_estimate`, median ms:

- cold: the behavioural terms are computed in SQL (the cache generation is bumped before each run, as a new
  event would); what a merchant waits for the first time a question is asked after the events changed;
- warm: the behavioural bitmaps come from the per-process cache (a merchant typing, the same events);
- each of those for the marketplace and for scope my_customers (the customers bitmap is one more cached
  behavioural query).

The expression:

    (interest:sports OR interest:outdoor) AND purchased(min_spend=50, max_count=5, min_avg_order=20)
    AND purchased(first_within="180d") AND viewed(category="c3", within="30d", max_count=0)
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from benchmarks import BenchContext, Row
from benchmarks.bench_segments import _setup_platform, _store_bitmaps, scratch_database, synthesise

NAME = "segment_conditions"
FULL_CONSUMERS = 1_000_000
FULL_EVENTS = 10_000_000
MERCHANTS = 5
PRODUCTS = 100
EXPRESSION = (
    "(interest:sports OR interest:outdoor) AND purchased(min_spend=50, max_count=5, min_avg_order=20) "
    'AND purchased(first_within="180d") AND viewed(category="c3", within="30d", max_count=0)'
)
BASELINE = '(interest:sports OR interest:outdoor) AND purchased() AND NOT viewed(within="30d")'


def _events(n_consumers: int, n_events: int, merchant_ids: list[int], product_ids: list[int], product_merchant):
    """Column arrays of synthetic events (seeded)."""
    rng = np.random.default_rng(17)
    consumer = rng.integers(1, n_consumers + 1, n_events)
    product_index = rng.integers(0, len(product_ids), n_events)
    product = np.asarray(product_ids)[product_index]
    merchant = np.asarray(product_merchant)[product_index]
    event_type = rng.choice([1, 2, 3, 4, 5], n_events, p=[0.55, 0.15, 0.12, 0.06, 0.12])
    seconds = rng.integers(0, 365 * 86400, n_events)
    price = np.round(rng.uniform(1, 200, n_events), 2)
    quantity = 1 + (rng.random(n_events) < 0.15) * rng.integers(1, 3, n_events)
    return consumer, merchant, product, event_type, seconds, price, quantity


def _load(n_consumers: int, n_events: int, merchant_ids, on_postgres: bool) -> None:
    from django.db import connection

    from consumers.models import Consumer, Event, Product

    stamp = datetime(2025, 12, 31, tzinfo=UTC)
    products = []
    for i in range(PRODUCTS):
        products.append(
            Product(
                merchant_id=merchant_ids[i % MERCHANTS],
                sku=f"P{i}",
                category=f"c{(i // MERCHANTS) % 10}",  # every category sold by every merchant
                category_path=f"c{(i // MERCHANTS) % 10}/s{i % 3}",
                brand=f"b{i % 7}",
            )
        )
    Product.objects.bulk_create(products)
    product_rows = list(Product.objects.order_by("pk").values_list("pk", "merchant_id"))
    columns = _events(n_consumers, n_events, merchant_ids, [p for p, _ in product_rows], [m for _, m in product_rows])
    now = datetime.now(UTC)
    if on_postgres:
        from dbtools.pgcopy import copy_text

        def consumer_chunks():
            for start in range(1, n_consumers + 1, 200_000):
                stop = min(n_consumers + 1, start + 200_000)
                yield "".join(f"{i}\tc{i}\t\t\t\t{stamp}\t{stamp}\n" for i in range(start, stop))

        def event_chunks():
            consumer, merchant, product, event_type, seconds, price, quantity = columns
            for start in range(0, n_events, 200_000):
                stop = min(n_events, start + 200_000)
                lines = []
                for j in range(start, stop):
                    occurred = now - timedelta(seconds=int(seconds[j]))
                    lines.append(
                        f"e{j}\t{consumer[j]}\t{merchant[j]}\t{product[j]}\t{event_type[j]}\t{occurred.isoformat()}"
                        f"\t{quantity[j]}\t{price[j]:.2f}\t0\t\t\n"
                    )
                yield "".join(lines)

        event_columns = [
            "source_key",
            "consumer_id",
            "merchant_id",
            "product_id",
            "event_type",
            "occurred_at",
            "quantity",
            "price",
            "discount",
            "order_ref",
            "device",
        ]
        with connection.cursor() as cursor:
            raw = cursor.cursor
            raw.execute("SET session_replication_role = replica")
            copy_text(
                cursor,
                "consumers_consumer",
                ["id", "pseudonym", "age_range", "country", "gender", "created_at", "updated_at"],
                consumer_chunks(),
            )
            copy_text(cursor, "consumers_event", event_columns, event_chunks())
            raw.execute("SET session_replication_role = DEFAULT")
            raw.execute("ANALYZE consumers_consumer")
            raw.execute("ANALYZE consumers_event")
    else:
        Consumer.objects.bulk_create(
            [Consumer(id=i, pseudonym=f"c{i}") for i in range(1, n_consumers + 1)], batch_size=5000
        )
        consumer, merchant, product, event_type, seconds, price, quantity = columns
        Event.objects.bulk_create(
            (
                Event(
                    source_key=f"e{j}",
                    consumer_id=int(consumer[j]),
                    merchant_id=int(merchant[j]),
                    product_id=int(product[j]),
                    event_type=int(event_type[j]),
                    occurred_at=now - timedelta(seconds=int(seconds[j])),
                    quantity=int(quantity[j]),
                    price=f"{price[j]:.2f}",
                )
                for j in range(n_events)
            ),
            batch_size=5000,
        )


def run(ctx: BenchContext) -> list[Row]:
    from merchants.services import merchant_create
    from segments.evaluation import behaviour_cache_invalidate, definition_resolve, evaluate_bitmap
    from segments.language import parse
    from segments.selectors import audience_estimate
    from tags.bitmaps import bitmap_cache_clear
    from tags.models import Tag

    n = max(20_000, int(FULL_CONSUMERS * ctx.scale))
    n_events = max(100_000, int(FULL_EVENTS * ctx.scale))
    rows: list[Row] = []
    load_at_start = os.getloadavg()[0]
    arrays = synthesise(n)
    consent = np.sort(
        np.random.default_rng(11).choice(np.arange(1, n + 1, dtype=np.uint32), size=int(n * 0.35), replace=False)
    )
    bitmap_cache_clear()
    with scratch_database():
        merchant, _key = _setup_platform()
        others = [merchant_create(slug=f"other{i}", name=f"Other {i}") for i in range(MERCHANTS - 1)]
        merchant_ids = [merchant.pk, *(m.pk for m in others)]
        tag_ids = {}
        for family, value in arrays:
            tag = Tag.objects.create(family=family, value=value, label=value, definition="synthetic", rule_version="b")
            tag_ids[(family, value)] = tag.pk
        load_started = time.perf_counter()
        _load(n, n_events, merchant_ids, ctx.on_postgres)
        load_s = time.perf_counter() - load_started
        _store_bitmaps(tag_ids, arrays, n, consent)
        bitmap_cache_clear()

        for label, expression in (("new conditions", EXPRESSION), ("plain actions (for comparison)", BASELINE)):
            for scope in ("marketplace", "my_customers"):

                def estimate(expression=expression, scope=scope):
                    return audience_estimate(merchant=merchant, expression=expression, scope=scope)

                cold = []
                for _ in range(3):
                    behaviour_cache_invalidate()
                    cold.append(_timed(estimate))
                warm = [_timed(estimate) for _ in range(30)]
                resolved = definition_resolve(parse(expression), merchant=merchant)
                members = len(evaluate_bitmap(resolved, scope=scope))
                # (No SQL-oracle check here: the tags are bitmaps only, without ConsumerTag rows; the two
                # evaluators' agreement on these conditions is property-tested in tests/segments.)
                note = f"{members:,} members; warm (cached behaviour) median {statistics.median(warm) * 1000:.2f} ms"
                rows.append(
                    Row(
                        NAME,
                        f"estimate, {label}, scope {scope}, cold ({n:,} consumers, {n_events:,} events)",
                        statistics.median(cold) * 1000,
                        "ms",
                        note=note,
                    )
                )
    bitmap_cache_clear()
    rows.append(
        Row(
            NAME,
            "synthetic events loaded",
            load_s,
            "s",
            note=f"for context; load average {load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at end",
        )
    )
    return rows


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
