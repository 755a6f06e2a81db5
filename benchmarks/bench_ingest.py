"""Event ingestion on PostgreSQL: COPY path against Django bulk_create, in the same run.

1M events (BENCH_SCALE scales it) from 50,000 consumers whose ids are e-mail
addresses and phone numbers, three merchants and 3,000 products, go through the
whole `events_ingest` service both ways: validation, pseudonymisation, consumer
and product upserts, the event write, the audit entry. Every run starts from
the same state: the benchmark's merchants, products, consumers and events are
removed (untimed) after each run, and runs alternate between the two methods so
neither gets a warmer or emptier table. Target: COPY >= 100,000 events/s and
>= 5x bulk_create.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime, timedelta

from benchmarks import BenchContext, Row

NAME = "ingest"
FULL_EVENTS = 1_000_000
EVENTS_PER_CONSUMER = 20
BENCH_MERCHANTS = ("bench-ingest-a", "bench-ingest-b", "bench-ingest-c")
PRODUCTS_PER_MERCHANT = 1000
EVENT_TYPES = ("view",) * 6 + ("click", "cart", "favourite", "purchase")


def _consumer_id(i: int) -> str:
    # Half e-mail addresses, half phone numbers: both normalisations are exercised.
    return f"bench.user{i}@example.com" if i % 2 else f"+65 9{i:07d}"


def make_rows(count: int, seed: int = 7) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(seed)
    consumers = max(1, count // EVENTS_PER_CONSUMER)
    consumer_ids = [_consumer_id(i) for i in range(consumers)]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    moments = [(start + timedelta(minutes=int(m))).isoformat() for m in range(0, 60 * 24 * 365, 7)]
    skus = [f"SKU-{i:05d}" for i in range(PRODUCTS_PER_MERCHANT)]
    titles = [f"Product {i}" for i in range(PRODUCTS_PER_MERCHANT)]
    paths = [f"cat{i % 12}/sub{i % 37}" for i in range(PRODUCTS_PER_MERCHANT)]
    prices = [f"{p:.2f}" for p in rng.uniform(1, 300, PRODUCTS_PER_MERCHANT)]
    who = rng.integers(0, consumers, count)
    # Zipf-like popularity: a few products take most of the traffic.
    what = np.minimum(rng.zipf(1.3, count) - 1, PRODUCTS_PER_MERCHANT - 1)
    where = rng.integers(0, len(BENCH_MERCHANTS), count)
    kind = rng.integers(0, len(EVENT_TYPES), count)
    when = rng.integers(0, len(moments), count)
    discounted = rng.random(count) < 0.2
    rows = []
    for i in range(count):
        product = int(what[i])
        row = {
            "event_id": "",
            "consumer_id": consumer_ids[who[i]],
            "merchant": BENCH_MERCHANTS[where[i]],
            "sku": skus[product],
            "event_type": EVENT_TYPES[kind[i]],
            "occurred_at": moments[when[i]],
            "quantity": 1,
            "price": prices[product],
            "discount": "1.50" if discounted[i] else "0",
        }
        if i % 10 == 0:  # some rows carry catalogue attributes, as a marketplace feed does
            row.update(title=titles[product], category_path=paths[product], brand=f"brand{product % 40}")
        rows.append(row)
    return rows


def _label(rows: list[dict], run: str) -> None:
    for i, row in enumerate(rows):
        row["event_id"] = f"{run}-{i}"


def _cleanup(consumer_count: int, *, events_only: bool = False) -> None:
    from django.db import connection

    from merchants.models import Merchant
    from privacy.pseudonyms import make_pseudonymiser

    merchant_ids = list(Merchant.objects.filter(slug__in=BENCH_MERCHANTS).values_list("id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM consumers_event WHERE merchant_id = ANY(%s)", [merchant_ids])
        if not events_only:
            pseudonymise = make_pseudonymiser()
            pseudonyms = [pseudonymise(_consumer_id(i)) for i in range(consumer_count)]
            cursor.execute("DELETE FROM consumers_product WHERE merchant_id = ANY(%s)", [merchant_ids])
            cursor.execute(
                "DELETE FROM consumers_consumer c WHERE c.pseudonym = ANY(%s) "
                "AND NOT EXISTS (SELECT 1 FROM consumers_event e WHERE e.consumer_id = c.id)",
                [pseudonyms],
            )
        for table in ("consumers_event", "consumers_product", "consumers_consumer"):
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")
            if not cursor.fetchone()[0]:
                # An empty table: rebuild its indexes too, so every run starts from the same compact
                # state rather than from the previous run's emptied index pages.
                cursor.execute(f"REINDEX TABLE {table}")
            cursor.execute(f"VACUUM ANALYZE {table}")


def _stored_events_as_copy_text(batch_size: int) -> list[str]:
    """The benchmark's stored events, as the COPY text batches the service wrote."""
    from django.db import connection

    from consumers.writer import COPY_COLUMNS

    buffer = bytearray()
    with connection.cursor() as cursor:
        query = f"COPY (SELECT {COPY_COLUMNS} FROM consumers_event ORDER BY id) TO STDOUT"
        with cursor.cursor.copy(query) as copy:
            for data in copy:
                buffer += data
    lines = buffer.decode().splitlines(keepends=True)
    return ["".join(lines[i : i + batch_size]) for i in range(0, len(lines), batch_size)]


def _raw_copy(batches: list[str]) -> float:
    """Seconds to COPY the batches straight into consumers_event, one transaction each: the database's ceiling."""
    from django.db import connection, transaction

    from consumers.writer import COPY_COLUMNS

    started = time.perf_counter()
    for text in batches:
        with transaction.atomic(), connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY consumers_event ({COPY_COLUMNS}) FROM STDIN") as copy:
                copy.write(text)
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    return time.perf_counter() - started


def run(ctx: BenchContext) -> list[Row]:
    if not ctx.on_postgres:
        return [Row(NAME, "events/s (COPY vs bulk_create)", None, "events/s", skipped="needs PostgreSQL")]

    from django.conf import settings

    from consumers.events import EventIngest, events_ingest
    from merchants.models import Merchant

    count = max(1000, int(FULL_EVENTS * ctx.scale))
    repeat = int(os.environ.get("BENCH_INGEST_REPEAT", "3"))
    consumers = max(1, count // EVENTS_PER_CONSUMER)
    for slug in BENCH_MERCHANTS:
        Merchant.objects.get_or_create(slug=slug, defaults={"name": slug})
    rows = make_rows(count)
    _cleanup(consumers)

    # The client-side ceiling: validation and pseudonymisation alone, no database writes.
    validate_rates = []
    for attempt in range(repeat):
        _label(rows, f"validate-{attempt}")
        ingest = EventIngest(actor="benchmark:ingest", method="copy", atomic=False)
        started = time.perf_counter()
        for start in range(0, count, 20_000):
            ingest.validate(rows[start : start + 20_000], start + 1)
        validate_rates.append(count / (time.perf_counter() - started))

    rates: dict[str, list[float]] = {"copy": [], "bulk_create": []}
    raw_rates: list[float] = []
    try:
        warm = rows[: min(5000, count)]
        for method in rates:  # warm both code paths and the connection
            _label(warm, f"warm-{method}")
            events_ingest(rows=warm, actor="benchmark:ingest", method=method)
            _cleanup(consumers)
        for attempt in range(repeat):
            for method in rates:
                _label(rows, f"{method}-{attempt}")
                started = time.perf_counter()
                report = events_ingest(rows=rows, actor="benchmark:ingest", method=method)
                elapsed = time.perf_counter() - started
                if report.accepted != count or report.rejected:
                    raise RuntimeError(f"{method} wrote {report.accepted} of {count} events")
                rates[method].append(count / elapsed)
                if method == "copy":
                    # The same events copied again with no service in front (consumers and products
                    # stay): what the database alone takes to store them.
                    batches = _stored_events_as_copy_text(settings.INGEST_BATCH_SIZE)
                    _cleanup(consumers, events_only=True)
                    raw_rates.append(count / _raw_copy(batches))
                _cleanup(consumers)
    finally:
        _cleanup(consumers)
        Merchant.objects.filter(slug__in=BENCH_MERCHANTS).delete()

    copy_rate = statistics.median(rates["copy"])
    bulk_rate = statistics.median(rates["bulk_create"])
    ratio = copy_rate / bulk_rate
    note = f"{count:,} events, {consumers:,} consumers, median of {repeat}"
    return [
        Row(
            NAME,
            "validation + pseudonymisation only",
            statistics.median(validate_rates),
            "events/s",
            note="no database: the client-side ceiling",
        ),
        Row(NAME, "COPY path events/s", copy_rate, "events/s", target=">= 100,000", note=note),
        Row(
            NAME,
            "raw COPY of the same events (no service)",
            statistics.median(raw_rates),
            "events/s",
            note="the database's ceiling for this table",
        ),
        Row(NAME, "bulk_create path events/s", bulk_rate, "events/s", note=note),
        Row(NAME, "COPY / bulk_create", ratio, "x", target=">= 5", ratio=f"{ratio:.1f}x"),
    ]
