"""Real-time segments: streaming membership against full refreshes, and event-to-membership latency.

Runs in a scratch database (created and dropped here), built as the segment benchmarks build theirs: synthetic
tag bitmaps over N consumers (N = 1M × BENCH_SCALE; consumer rows, so events can reference them), a small
catalogue, and two events per consumer over the last 60 days (purchases, carts and views across four categories).

- (a) 100 real-time segments (random 2-4-term tag expressions AND one action with a window, some with NOT):
  the cost of streaming a batch of new events (1,000 events of 1,000 consumers: `membership_update`, which
  re-evaluates every segment the batch can move for those consumers only and writes what changed) per event,
  against a full refresh of the same 100 segments (`segments_refresh_batch`, behaviour caches cold as after new
  events). The ratio is full refresh ÷ one streamed batch.
- (b) PostgreSQL + Redis only: a real Celery worker (one process) drains the pending set while events arrive at
  5,000/s and this process posts what arrived every 100 ms to `POST /api/v1/ingest/events` (Django's test client,
  an operator key); each event (a cart) makes its consumer enter a real-time segment and re-evaluates the 34
  segments that count carts. The latency of an event is the time a watcher on another connection, looking every
  50 ms, first sees its transition committed, minus its post's 200. p50 and p99 over the run; the rate accepted,
  how long events waited for their post, and the transitions' own evaluation stamps are reported.

The world is written with COPY on PostgreSQL (progress with elapsed seconds on stderr).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection

from benchmarks import BenchContext, Row, percentile
from benchmarks.bench_segments import _bitmap, _segment_expressions, scratch_database, synthesise

FULL_CONSUMERS = 1_000_000
SEGMENTS = 100
STREAM_BATCH = 1000
NAME = "membership"
CATEGORIES = ["beauty", "outdoor", "home", "sports"]
ACTIONS = [
    'purchased(category="{c}", within="30d")',
    'carted(category="{c}", within="7d")',
    'viewed(category="{c}", within="14d", min_count=2)',
]
WORLD_TYPES = [1, 3, 4, 5]  # view, cart, favourite, purchase
LATENCY_CATEGORY = "garden"  # no event of the world is in it: every latency event makes its consumer enter
# Carts: a third of the 100 segments count carts, so each drain re-evaluates those too for the stream's consumers.
# BENCH_MEMBERSHIP_EVENT=favourite streams favourites, which only the latency segment counts: the pipeline's own
# latency, without the other segments' evaluation.
LATENCY_EVENT = os.environ.get("BENCH_MEMBERSHIP_EVENT", "cart")
LATENCY_ACTION = {"cart": "carted", "favourite": "favourited", "purchase": "purchased", "view": "viewed"}[LATENCY_EVENT]
LATENCY_SECONDS = 30
TARGET_RATE = 5000  # events per second
TICK_SECONDS = 0.1  # the operator's system posts what arrived every 100 ms
MAX_POST_ROWS = 20_000  # at most this many rows per post (the endpoint takes 50,000)


_STARTED = time.perf_counter()


def _progress(message: str) -> None:
    print(f"  membership [{time.perf_counter() - _STARTED:5.0f} s]: {message}", file=sys.stderr, flush=True)


def _world(n: int):
    """Merchant, tag bitmaps, consumer rows 1..n, products and 2n events; returns (merchant, tag ids, arrays).

    On PostgreSQL the consumers and events are written with COPY in chunks (1M consumers and 2M events in a few
    minutes rather than a quarter of an hour), with progress on stderr.
    """
    from django.utils import timezone

    from benchmarks.bench_segments import _setup_platform
    from consumers.models import Product
    from dbtools.backend import on_postgresql
    from tags.bitmaps import LIVE_CONSUMERS_KEY, bitmap_store, tag_key
    from tags.models import Tag

    merchant, _key = _setup_platform()
    arrays = synthesise(n)
    tag_ids = {}
    for family, value in arrays:
        tag = Tag.objects.create(family=family, value=value, label=value, definition="synthetic", rule_version="b")
        tag_ids[(family, value)] = tag.pk
    for key, array in arrays.items():
        bitmap_store(key=tag_key(tag_ids[key]), bitmap=_bitmap(array))
    _progress(f"{len(arrays)} tag bitmaps stored")
    # Stamped before the live bitmap's mark (and before now), as after a tagging run: otherwise every read of
    # the live-consumers bitmap would find them all in its change window and read them again.
    stamp = timezone.now() - timedelta(days=1)
    _consumers_write(n, stamp)
    if on_postgresql():  # ids were given: move the sequence past them for ingestion's consumers
        with connection.cursor() as cursor:
            cursor.execute("SELECT setval(pg_get_serial_sequence('consumers_consumer', 'id'), %s)", [n])
    live = _bitmap(np.arange(1, n + 1, dtype=np.uint32))
    bitmap_store(key=LIVE_CONSUMERS_KEY, bitmap=live, source_mark=stamp)
    products = [
        Product.objects.create(merchant=merchant, sku=f"P{i}", title="", category=c, category_path=c, brand="")
        for i, c in enumerate(CATEGORIES)
    ]
    Product.objects.create(
        merchant=merchant, sku="G1", title="", category=LATENCY_CATEGORY, category_path=LATENCY_CATEGORY, brand=""
    )
    _events_write(n, merchant.pk, [p.pk for p in products])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    _progress("analysed")
    return merchant, arrays


WORLD_CHUNK = 200_000


def _consumers_write(n: int, stamp: datetime) -> None:
    """Consumer rows 1..n whose raw ids are "bench-raw-<i>" (so the latency stream can name them)."""
    from consumers.models import Consumer
    from dbtools.backend import on_postgresql
    from dbtools.pgcopy import copy_text
    from privacy.pseudonyms import make_pseudonymiser

    for first in range(1, n + 1, WORLD_CHUNK):
        ids = range(first, min(n, first + WORLD_CHUNK - 1) + 1)
        pseudonymise = make_pseudonymiser()  # one per chunk: its cache of raw ids stays small
        if on_postgresql():
            at = stamp.isoformat()
            text = "".join(f"{i}\t{pseudonymise(f'bench-raw-{i}')}\t\t\t\t{at}\t{at}\n" for i in ids)
            with connection.cursor() as cursor:
                columns = ("id", "pseudonym", "age_range", "country", "gender", "created_at", "updated_at")
                copy_text(cursor, Consumer._meta.db_table, columns, text)
        else:
            Consumer.objects.bulk_create(
                (Consumer(id=i, pseudonym=pseudonymise(f"bench-raw-{i}")) for i in ids), batch_size=20_000
            )
            Consumer.objects.filter(pk__range=(ids[0], ids[-1])).update(created_at=stamp, updated_at=stamp)
        _progress(f"consumers {ids[-1]:,}/{n:,}")


def _events_write(n: int, merchant_id: int, product_ids: list[int]) -> None:
    """2n events over the last 60 days: random consumers and products, views, carts, favourites, purchases."""
    from django.utils import timezone

    from consumers.models import Event
    from consumers.writer import EVENT_COLUMNS
    from dbtools.backend import on_postgresql
    from dbtools.pgcopy import copy_text

    rng = np.random.default_rng(5)
    now = timezone.now()
    now_us = np.datetime64(now.replace(tzinfo=None), "us")
    total = 2 * n
    for first in range(0, total, WORLD_CHUNK):
        count = min(WORLD_CHUNK, total - first)
        consumers = rng.integers(1, n + 1, count).tolist()
        products = np.asarray(product_ids)[rng.integers(0, len(product_ids), count)].tolist()
        types = rng.choice(WORLD_TYPES, size=count, p=[0.6, 0.2, 0.1, 0.1]).tolist()
        ago_us = (rng.uniform(0, 60 * 24, count) * 3600e6).astype("timedelta64[us]")
        moments = (now_us - ago_us).tolist()  # naive UTC datetimes
        if on_postgresql():
            text = "".join(
                f"bench-{first + i}\t{c}\t{merchant_id}\t{p}\t{t}\t{m.isoformat()}+00:00\t1\t\\N\t0\t\t\n"
                for i, (c, p, t, m) in enumerate(zip(consumers, products, types, moments, strict=True))
            )
            with connection.cursor() as cursor:
                copy_text(cursor, Event._meta.db_table, EVENT_COLUMNS, text)
        else:
            Event.objects.bulk_create(
                (
                    Event(
                        source_key=f"bench-{first + i}",
                        consumer_id=c,
                        merchant_id=merchant_id,
                        product_id=p,
                        event_type=t,
                        occurred_at=m.replace(tzinfo=UTC),
                        quantity=1,
                    )
                    for i, (c, p, t, m) in enumerate(zip(consumers, products, types, moments, strict=True))
                ),
                batch_size=20_000,
            )
        _progress(f"events {first + count:,}/{total:,}")


def _segments(merchant, arrays, count: int) -> list[int]:
    from segments.evaluation import definition_resolve
    from segments.language import parse, to_json
    from segments.models import RefreshPolicy, Segment

    rng = np.random.default_rng(3)
    ids = []
    for i, tags in enumerate(_segment_expressions(rng, list(arrays), count)):
        action = ACTIONS[i % len(ACTIONS)].format(c=CATEGORIES[i % len(CATEGORIES)])
        expression = f"({tags}) AND {action}"
        if i % 5 == 4:
            expression = f"({tags}) AND NOT {action}"
        resolved = definition_resolve(parse(expression), merchant=merchant)
        segment = Segment.objects.create(
            merchant=merchant,
            name=f"segment {i}",
            definition=resolved.text,
            definition_json=to_json(resolved.node),
            refresh_policy=RefreshPolicy.REALTIME,
        )
        ids.append(segment.pk)
    return ids


def _new_events(merchant, n: int, count: int, seed: int, event_type: int = 4) -> list[int]:
    """count new events (of count distinct consumers), written directly; returns the consumers."""
    from django.utils import timezone

    from consumers.models import Event, Product

    rng = np.random.default_rng(seed)
    consumers = rng.choice(np.arange(1, n + 1), size=count, replace=False).tolist()
    products = list(Product.objects.filter(merchant=merchant, category__in=CATEGORIES).values_list("pk", flat=True))
    now = timezone.now()
    Event.objects.bulk_create(
        Event(
            source_key=f"bench-new-{seed}-{i}",
            consumer_id=c,
            merchant_id=merchant.pk,
            product_id=products[i % len(products)],
            event_type=event_type,
            occurred_at=now,
            quantity=1,
        )
        for i, c in enumerate(consumers)
    )
    return consumers


def run(ctx: BenchContext) -> list[Row]:
    from segments.evaluation import behaviour_cache_invalidate
    from segments.membership import membership_update
    from segments.models import MembershipTransition
    from segments.services import segments_refresh_batch
    from tags.bitmaps import bitmap_cache_clear

    n = max(20_000, int(FULL_CONSUMERS * ctx.scale))
    rows: list[Row] = []
    load_at_start = os.getloadavg()[0]
    bitmap_cache_clear()
    with scratch_database():
        started = time.perf_counter()
        merchant, arrays = _world(n)
        build_s = time.perf_counter() - started
        segment_ids = _segments(merchant, arrays, SEGMENTS)
        segments_refresh_batch(segment_ids=segment_ids, actor="bench")  # first snapshots
        _progress("first snapshots of the segments computed")
        # (a) a full refresh of the 100 segments, behaviour caches cold (as after new events)
        refresh_s = []
        for _ in range(2):
            behaviour_cache_invalidate()
            t = time.perf_counter()
            outcome = segments_refresh_batch(segment_ids=segment_ids, actor="bench")
            refresh_s.append(time.perf_counter() - t)
        full = min(refresh_s)
        _progress(f"full refreshes: {', '.join(f'{t:.1f} s' for t in refresh_s)}")
        # streaming: a batch of new events, every type, re-evaluated for their consumers only
        stream_s = []
        moved = 0
        for round_number in range(5):
            event_type = WORLD_TYPES[round_number % len(WORLD_TYPES)]
            consumers = _new_events(merchant, n, STREAM_BATCH, seed=100 + round_number, event_type=event_type)
            t = time.perf_counter()
            result = membership_update(consumer_ids=consumers, event_types=[event_type])
            stream_s.append(time.perf_counter() - t)
            moved += result.entered + result.exited
        stream = float(np.median(stream_s))
        per_event_ms = stream / STREAM_BATCH * 1000
        rows.append(
            Row(
                NAME,
                f"full refresh of {SEGMENTS} real-time segments ({n:,} consumers, {2 * n:,} events)",
                full,
                "s",
                note=f"segments_refresh_batch, behaviour caches cold; refreshed {outcome['refreshed']}",
            )
        )
        rows.append(
            Row(
                NAME,
                f"streamed update per event ({STREAM_BATCH:,}-event batches, {SEGMENTS} segments, {n:,} consumers)",
                per_event_ms,
                "ms",
                ratio=f"refresh = {full / stream:,.0f}× a batch, {full / (stream / STREAM_BATCH):,.0f}× an event",
                note=f"membership_update p50 {stream * 1000:.0f} ms per batch; {moved} transitions in 5 batches; "
                f"world built in {build_s:.0f} s",
            )
        )
        # (b) latency through a real worker
        if not ctx.on_postgres or not (settings.CELERY_BROKER_URL or "").startswith("redis"):
            rows.append(
                Row(
                    NAME,
                    "event accepted → membership updated",
                    None,
                    "s",
                    skipped="needs PostgreSQL (DATABASE_URL) and Redis (CELERY_BROKER_URL)",
                )
            )
        else:
            MembershipTransition.objects.all().delete()
            _progress("streaming through a real worker")
            try:
                rows.extend(_latency(merchant, n))
            except Exception as exc:  # keep (a)'s figures when the worker part fails
                rows.append(Row(NAME, "event accepted → membership updated", None, "s", skipped=f"failed: {exc}"[:120]))
    bitmap_cache_clear()
    rows.append(
        Row(
            NAME,
            "load average",
            os.getloadavg()[0],
            "",
            note=f"{load_at_start:.1f} at start ({os.cpu_count()} cores, shared)",
        )
    )
    return rows


WATCH_SECONDS = 0.05  # how often the watcher looks for newly committed transitions


class _Watcher(threading.Thread):
    """Sees transitions as other connections see them: every WATCH_SECONDS it reads the latency segment's
    transitions committed since its last look and notes, per consumer, the time it first saw one. A transition's
    own `at` is the evaluation's clock, taken before its chunk is evaluated and committed; this is when the
    change became visible, which is what "membership updated" means to a reader."""

    def __init__(self, segment_id: int) -> None:
        super().__init__(daemon=True)
        self.segment_id = segment_id
        self.seen: dict[int, datetime] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        from django.db import connection as thread_connection
        from django.utils import timezone

        from segments.models import MembershipTransition

        last = 0
        try:
            while not self.stop.is_set():
                rows = list(
                    MembershipTransition.objects.filter(segment_id=self.segment_id, id__gt=last)
                    .order_by()
                    .values_list("id", "consumer_id")
                )
                now = timezone.now()
                for pk, consumer_id in rows:
                    self.seen.setdefault(consumer_id, now)
                    last = max(last, pk)
                self.stop.wait(WATCH_SECONDS)
        finally:
            thread_connection.close()


def _latency(merchant, n: int) -> list[Row]:
    """Events arrive at TARGET_RATE (an operator's system queueing them) and are posted to the REST batch endpoint
    every TICK_SECONDS: everything that arrived since the last post, so a slow post makes the next one larger
    rather than the stream slower. A real Celery worker drains the pending set meanwhile."""
    from django.test import Client
    from django.utils import timezone

    from config.celery import app as celery_app
    from merchants.models import ApiKeyKind
    from merchants.services import api_key_issue
    from segments.models import MembershipTransition, RefreshPolicy, Segment
    from segments.services import segments_refresh_batch

    segment = Segment.objects.create(
        merchant=merchant,
        name="latency",
        definition=f'{LATENCY_ACTION}(category="{LATENCY_CATEGORY}")',
        refresh_policy=RefreshPolicy.REALTIME,
    )
    segments_refresh_batch(segment_ids=[segment.pk], actor="bench")
    realtime = Segment.objects.filter(refresh_policy=RefreshPolicy.REALTIME).count()
    operator_key = api_key_issue(kind=ApiKeyKind.OPERATOR, name="bench operator").raw_key
    client = Client()
    root = Path(__file__).resolve().parents[1]
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
        f"{connection.settings_dict['NAME']}",
        "PYTHONPATH": f"{root / 'platform'}:{root}",
    }
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    celery_app.control.purge()
    log = open(settings.VAR_DIR / "bench_membership_worker.log", "ab")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency=1", "--pool=prefork",
         "--without-gossip", "--without-mingle", "-n", f"bench-{os.getpid()}@%h", "--loglevel=WARNING"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not celery_app.control.ping(timeout=0.5):
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark's worker did not start")
        watcher = _Watcher(segment.pk)
        watcher.start()
        rng = np.random.default_rng(9)
        order = rng.permutation(np.arange(1, n + 1)).tolist()
        batches: list[tuple[int, int, datetime]] = []  # (first index, count, committed at)
        batch_of: dict[int, int] = {}
        sent = 0
        started_wall = timezone.now()
        started = time.monotonic()
        while time.monotonic() - started < LATENCY_SECONDS and sent < n:
            tick = time.monotonic()
            arrived = min(n, int((tick - started) * TARGET_RATE), sent + MAX_POST_ROWS)
            if arrived > sent:
                now_text = timezone.now().isoformat()
                rows = [
                    {
                        "event_id": f"latency-{sent + i}",
                        "consumer_id": f"bench-raw-{c}",
                        "merchant": merchant.slug,
                        "sku": "G1",
                        "event_type": LATENCY_EVENT,
                        "occurred_at": now_text,
                    }
                    for i, c in enumerate(order[sent:arrived])
                ]
                response = client.post(
                    "/api/v1/ingest/events",
                    data=json.dumps(rows),
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {operator_key}",
                )
                if response.status_code != 200:
                    raise RuntimeError(f"the ingest endpoint answered {response.status_code}")
                committed = timezone.now()  # the 200 is the acceptance: the batch committed before it
                for c in order[sent:arrived]:
                    batch_of[c] = len(batches)
                batches.append((sent, arrived - sent, committed))
                sent = arrived
            spare = TICK_SECONDS - (time.monotonic() - tick)
            if spare > 0:
                time.sleep(spare)
        elapsed = (batches[-1][2] - started_wall).total_seconds() if batches else 0.0
        wait_until = time.monotonic() + 180
        while MembershipTransition.objects.filter(segment=segment).count() < sent and time.monotonic() < wait_until:
            time.sleep(0.5)
        while len(watcher.seen) < sent and time.monotonic() < wait_until:
            time.sleep(0.2)
        watcher.stop.set()
        watcher.join(timeout=10)
        latencies = []  # accepted → visible to other connections (the watcher)
        stamped = []  # accepted → the transition's evaluation stamp
        for consumer_id, at in MembershipTransition.objects.filter(segment=segment, kind="entered").values_list(
            "consumer_id", "at"
        ):
            batch = batch_of.get(consumer_id)
            if batch is None:
                continue
            stamped.append((at - batches[batch][2]).total_seconds())
            if consumer_id in watcher.seen:
                latencies.append((watcher.seen[consumer_id] - batches[batch][2]).total_seconds())
        # How long an event waited to be accepted: its batch's commit minus its arrival (arrivals are evenly spaced).
        waits = [
            (committed - started_wall).total_seconds() - (first + i) / TARGET_RATE
            for first, count, committed in batches
            for i in range(count)
        ]
        done = len(latencies)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        celery_app.conf.task_always_eager = eager
    rate = sent / elapsed if elapsed else 0.0
    if not latencies:
        return [Row(NAME, "event accepted → membership updated", None, "s", skipped="no transitions observed")]
    sizes = [count for _first, count, _at in batches]
    return [
        Row(
            NAME,
            "event accepted → membership updated, p50",
            percentile(latencies, 50),
            "s",
            target="≤ 2 s at 5,000 events/s",
            note=f"{rate:,.0f} events/s accepted by POST /api/v1/ingest/events over {elapsed:.0f} s "
            f"({len(batches)} posts, median {int(np.median(sizes)):,} rows); {done:,}/{sent:,} seen committed "
            f"(looking every {WATCH_SECONDS * 1000:.0f} ms); {realtime} real-time segments; {LATENCY_EVENT} events",
        ),
        Row(NAME, "event accepted → membership updated, p99", percentile(latencies, 99), "s", target="≤ 10 s"),
        Row(
            NAME,
            "event accepted → transition's evaluation stamp, p50 / p99",
            percentile(stamped, 50) if stamped else None,
            "s",
            note=f"p99 {percentile(stamped, 99) if stamped else float('nan'):.2f} s; the stamp is taken before "
            "the chunk is evaluated and committed",
        ),
        Row(
            NAME,
            "event arrived → accepted (queue + POST), p50 / p99",
            percentile(waits, 50),
            "s",
            note=f"p99 {percentile(waits, 99):.2f} s; posts every {TICK_SECONDS * 1000:.0f} ms of what arrived",
        ),
    ]
