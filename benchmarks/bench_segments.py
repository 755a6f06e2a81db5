"""Segments: estimate latency (in process and through the API), bitmap against SQL, and bulk refresh.

Everything runs in a scratch database (created and dropped here) filled with synthetic data:

- 100 tags over N consumers (N = 10M × BENCH_SCALE) with realistic densities: partitions for age range (7),
  country (20, Zipf-like), discount sensitivity (3), RFM group (5), lifecycle stage (4) and persona (6); 35
  interests each held independently by 1-15% of consumers; 10 store and 10 brand loyalties at 0.5-3%.
- (a) a 5-term AND/OR/NOT estimate in process: p50 of `audience_estimate` (parse, resolve, legal-basis check,
  bitmap algebra, consent intersection) and of the bitmap evaluation alone, at N.
  The SQL evaluator needs ConsumerTag rows; N × ~7 rows (~70M at full size) is too heavy for a 2-core box
  shared by others, so the ratio is measured at SQL_N = 1M × BENCH_SCALE consumers (~7M ConsumerTag rows
  loaded with COPY, PostgreSQL only), bitmap and SQL on the same consumers, same expression, same run; the
  counts are checked to be equal.
- (b) the estimate endpoint's round trip p50 through the Django test client (auth, throttle, serializers).
- (c) refreshing 1,000 rule segments (random 3-6-term expressions) over N consumers with
  `refresh_segments --all` in process: each refresh resolves, evaluates, diffs against the previous snapshot,
  stores the members and writes an audit entry. Timed on the second pass (every segment has a previous
  snapshot, the steady state); the first pass is in the note.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection
from pyroaring import BitMap

from benchmarks import BenchContext, Row, audit_checkpoint_for_database, percentile
from dbtools.backend import on_sqlite
from dbtools.pgcopy import copy_text

FULL_CONSUMERS = 10_000_000
FULL_SQL_CONSUMERS = 1_000_000
SEGMENTS = 1000
EXPRESSION = (
    "country:SG AND (interest:sports OR interest:outdoor) AND NOT discount_sensitivity:high AND age_range:25-34"
)
NAME = "segments"


# ------------------------------------------------------------------------------------------------ synthetic tags


def _partition(rng, n, names, probs):
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum()
    return names, rng.choice(len(names), size=n, p=probs).astype(np.int16)


def synthesise(n: int, seed: int = 7) -> dict[tuple[str, str], np.ndarray]:
    """Consumer ids 1..n per (family, value), as sorted uint32 arrays."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1, dtype=np.uint32)
    tags: dict[tuple[str, str], np.ndarray] = {}

    def add_partition(family, names, probs, coverage=1.0):
        names = [*names, None]
        total = sum(probs)
        probs = [p / total * coverage for p in probs]
        probs.append(max(0.0, 1 - sum(probs)))
        _, assign = _partition(rng, n, names, probs)
        order = np.argsort(assign, kind="stable")
        counts = np.bincount(assign, minlength=len(names))
        start = 0
        for index, name in enumerate(names):
            chunk = ids[order[start : start + counts[index]]]
            start += counts[index]
            if name is not None:
                tags[(family, name)] = np.sort(chunk)

    add_partition(
        "age_range",
        ["18-24", "25-34", "35-44", "45-54", "55-64", "65-plus", "under-18"],
        [0.2, 0.3, 0.2, 0.12, 0.07, 0.03, 0.03],
        coverage=0.95,
    )
    countries = [
        "SG",
        "MY",
        "TH",
        "ID",
        "PH",
        "VN",
        "JP",
        "KR",
        "CN",
        "HK",
        "TW",
        "AU",
        "NZ",
        "IN",
        "US",
        "GB",
        "DE",
        "FR",
        "CA",
        "AE",
    ]
    add_partition("country", countries, [1 / (i + 1) for i in range(len(countries))])
    add_partition("discount_sensitivity", ["low", "medium", "high"], [0.4, 0.35, 0.25], coverage=0.8)
    add_partition(
        "rfm", ["champions", "loyal", "at_risk", "hibernating", "new"], [0.1, 0.2, 0.2, 0.35, 0.15], coverage=0.6
    )
    add_partition("lifecycle", ["new", "active", "lapsing", "churned"], [0.15, 0.35, 0.2, 0.3])
    add_partition("persona", [f"persona-{i}" for i in range(6)], [0.25, 0.2, 0.18, 0.15, 0.12, 0.1], coverage=0.9)
    interests = [
        "sports",
        "outdoor",
        "beauty",
        "fashion",
        "electronics",
        "home",
        "toys",
        "books",
        "grocery",
        "pets",
        "garden",
        "music",
        "games",
        "travel",
        "auto",
        "baby",
        "health",
        "jewellery",
        "shoes",
        "bags",
        "watches",
        "art",
        "crafts",
        "office",
        "kitchen",
        "furniture",
        "lighting",
        "bedding",
        "fitness",
        "cycling",
        "camping",
        "fishing",
        "photography",
        "phones",
        "computers",
    ]
    densities = np.linspace(0.15, 0.01, len(interests))
    for name, density in zip(interests, densities, strict=True):
        tags[("interest", name)] = ids[rng.random(n, dtype=np.float32) < density]
    for family, low, high in (("loyalty_store", 0.005, 0.03), ("loyalty_brand", 0.005, 0.02)):
        for i, density in enumerate(np.linspace(high, low, 10)):
            tags[(family, f"{family.split('_')[1]}-{i}")] = ids[rng.random(n, dtype=np.float32) < density]
    return tags


def _bitmap(array: np.ndarray) -> BitMap:
    bitmap = BitMap(array)
    bitmap.run_optimize()
    return bitmap


# ------------------------------------------------------------------------------------------------ scratch database


@contextlib.contextmanager
def scratch_database():
    """A fresh database with every migration applied, dropped afterwards."""
    db = settings.DATABASES["default"]
    original_name = db["NAME"]
    test = db.setdefault("TEST", {})
    previous_test_name = test.get("NAME")
    if on_sqlite():
        test["NAME"] = str(settings.VAR_DIR / "bench_segments.sqlite3")
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    else:
        test["NAME"] = f"bench_segments_{original_name}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    previous_checkpoint = audit_checkpoint_for_database()
    try:
        yield
    finally:
        connection.creation.destroy_test_db(original_name, verbosity=0)
        for leftover in (Path(settings.AUDIT_CHECKPOINT_PATH), Path(f"{settings.AUDIT_CHECKPOINT_PATH}.lock")):
            leftover.unlink(missing_ok=True)  # the chain it vouched for is gone with the database
        audit_checkpoint_for_database(previous_checkpoint)
        if previous_test_name is None:
            test.pop("NAME", None)
        else:
            test["NAME"] = previous_test_name


def _setup_platform():
    from merchants.models import ApiKeyKind
    from merchants.services import api_key_issue, merchant_create
    from privacy.models import ActivityStatus, LegalBasis, ProcessingActivity, Purpose

    ProcessingActivity.objects.create(
        name="Tagging (benchmark)",
        purpose=Purpose.TAGGING,
        legal_basis=LegalBasis.BUSINESS_IMPROVEMENT,
        description="Benchmark.",
        assessment="Benchmark data only.",
        status=ActivityStatus.APPROVED,
        approved_at=datetime.now(UTC),
    )
    merchant = merchant_create(slug="bench", name="Bench")
    key = api_key_issue(kind=ApiKeyKind.MERCHANT, name="bench", merchant=merchant).raw_key
    return merchant, key


SOURCE_MARK = datetime(2026, 1, 1, tzinfo=UTC)


def _store_bitmaps(tag_ids: dict[tuple[str, str], int], arrays, limit: int, consent: np.ndarray) -> None:
    from tags.bitmaps import DIRECT_MARKETING_CONSENT_KEY, LIVE_CONSUMERS_KEY, bitmap_store, tag_key

    for key, array in arrays.items():
        bitmap_store(key=tag_key(tag_ids[key]), bitmap=_bitmap(array[array <= limit]))
    live = BitMap()
    live.add_range(1, limit + 1)
    # As a tagging run stores them: marked with the newest consumer (and consent) they include, so reads only
    # look for what is newer. The benchmark's consumer rows are stamped a day before SOURCE_MARK (see
    # _copy_sql_rows): the SQL-scale rows are a subset of the synthetic 10M ids, and rows inside the change window
    # would make the first read rebuild the universe from them.
    bitmap_store(key=LIVE_CONSUMERS_KEY, bitmap=live, source_mark=SOURCE_MARK)
    bitmap_store(key=DIRECT_MARKETING_CONSENT_KEY, bitmap=_bitmap(consent[consent <= limit]), source_mark=SOURCE_MARK)


def _copy_sql_rows(tag_ids, arrays, n_sql: int) -> int:
    """Consumer and ConsumerTag rows for consumers 1..n_sql, loaded with COPY (foreign-key triggers off)."""
    stamp = "2025-12-31 00:00:00+00"  # a day before SOURCE_MARK, outside the fresh-on-read change window
    rows = 0

    def consumer_chunks():
        for start in range(1, n_sql + 1, 200_000):
            stop = min(n_sql + 1, start + 200_000)
            yield "".join(f"{i}\tb{i}\t\t\t\t{stamp}\t{stamp}\n" for i in range(start, stop))

    def tag_chunks():
        nonlocal rows
        for key, array in arrays.items():
            ids = array[array <= n_sql]
            if ids.size:
                suffix = f"\t{tag_ids[key]}\t{stamp}\n"
                yield suffix.join(map(str, ids.tolist())) + suffix
                rows += int(ids.size)

    consumer_columns = ["id", "pseudonym", "age_range", "country", "gender", "created_at", "updated_at"]
    with connection.cursor() as cursor:
        raw = cursor.cursor
        raw.execute("SET session_replication_role = replica")
        copy_text(cursor, "consumers_consumer", consumer_columns, consumer_chunks())
        copy_text(cursor, "tags_consumertag", ["consumer_id", "tag_id", "assigned_at"], tag_chunks())
        raw.execute("SET session_replication_role = DEFAULT")
        raw.execute("ANALYZE consumers_consumer")
        raw.execute("ANALYZE tags_consumertag")
    return rows


def _segment_expressions(rng, tag_keys, count: int) -> list[str]:
    from segments.language import quote_value

    by_family: dict[str, list[str]] = {}
    for family, value in tag_keys:
        by_family.setdefault(family, []).append(value)
    families = sorted(by_family)

    def term(family):
        return f"{family}:{quote_value(str(rng.choice(by_family[family])))}"

    expressions = []
    for _ in range(count):
        chosen = rng.choice(families, size=int(rng.integers(2, 5)), replace=False)
        clauses = []
        for family in chosen:
            if rng.random() < 0.35:
                clauses.append(f"({term(family)} OR {term(family)})")
            else:
                clauses.append(term(family))
        if rng.random() < 0.4:
            clauses.append(f"NOT {term(str(rng.choice(families)))}")
        expressions.append(" AND ".join(clauses))
    return expressions


# ------------------------------------------------------------------------------------------------ the benchmark


def run(ctx: BenchContext) -> list[Row]:
    from django.core.management import call_command
    from rest_framework.test import APIClient

    from config.celery import app as celery_app
    from segments.evaluation import count_sql, definition_resolve, evaluate_bitmap
    from segments.language import parse, to_json
    from segments.models import Segment, SegmentSnapshot
    from segments.selectors import audience_estimate
    from tags.bitmaps import bitmap_cache_clear
    from tags.models import Tag

    n = max(20_000, int(FULL_CONSUMERS * ctx.scale))
    n_sql = max(10_000, int(FULL_SQL_CONSUMERS * ctx.scale))
    n_segments = max(20, int(SEGMENTS * min(1.0, ctx.scale * 20)))
    rows: list[Row] = []
    load_at_start = os.getloadavg()[0]
    started = time.perf_counter()
    arrays = synthesise(n)
    consent = np.sort(
        np.random.default_rng(11).choice(np.arange(1, n + 1, dtype=np.uint32), size=int(n * 0.35), replace=False)
    )
    synth_s = time.perf_counter() - started
    bitmap_cache_clear()
    with scratch_database():
        merchant, raw_key = _setup_platform()
        tag_ids = {}
        for family, value in arrays:
            tag = Tag.objects.create(family=family, value=value, label=value, definition="synthetic", rule_version="b")
            tag_ids[(family, value)] = tag.pk
        resolved = definition_resolve(parse(EXPRESSION), merchant=merchant)

        # (a, ratio) bitmap against SQL at SQL scale, PostgreSQL only
        if ctx.on_postgres:
            load_started = time.perf_counter()
            _store_bitmaps(tag_ids, arrays, n_sql, consent)
            bitmap_cache_clear()
            copied = _copy_sql_rows(tag_ids, arrays, n_sql)
            load_s = time.perf_counter() - load_started
            bitmap_count = len(evaluate_bitmap(resolved))
            sql_count = count_sql(resolved)
            bitmap_s = [_timed(lambda: evaluate_bitmap(resolved)) for _ in range(30)]
            sql_s = [_timed(lambda: count_sql(resolved)) for _ in range(5)]
            bitmap_p50, sql_p50 = statistics.median(bitmap_s), statistics.median(sql_s)
            rows.append(
                Row(
                    NAME,
                    f"5-term estimate, SQL evaluator ({n_sql:,} consumers, {copied:,} tag rows)",
                    sql_p50 * 1000,
                    "ms",
                    note=f"counts equal: {bitmap_count == sql_count} ({sql_count:,}); rows loaded in {load_s:.0f} s",
                )
            )
            rows.append(
                Row(
                    NAME,
                    f"5-term estimate, bitmap evaluator ({n_sql:,} consumers)",
                    bitmap_p50 * 1000,
                    "ms",
                    target="≥100× faster than SQL",
                    ratio=f"{sql_p50 / bitmap_p50:,.0f}×",
                )
            )
        else:
            rows.append(
                Row(
                    NAME,
                    "bitmap vs SQL evaluator",
                    None,
                    "ms",
                    skipped="the SQL comparison runs on PostgreSQL (set DATABASE_URL)",
                )
            )

        # (a) in process at full size
        _store_bitmaps(tag_ids, arrays, n, consent)
        bitmap_cache_clear()
        members = evaluate_bitmap(resolved)
        eval_s = [_timed(lambda: evaluate_bitmap(resolved)) for _ in range(100)]
        estimate = [_timed_cpu(lambda: audience_estimate(merchant=merchant, expression=EXPRESSION)) for _ in range(100)]
        estimate_s = [wall for wall, _ in estimate]
        rows.append(
            Row(
                NAME,
                f"5-term estimate in process, p50 ({n:,} consumers, {len(arrays)} tags)",
                percentile(estimate_s, 50) * 1000,
                "ms",
                target="≤ 5 ms",
                note=f"audience_estimate incl. parse, checks, consent; {len(members):,} members; "
                f"CPU p50 {percentile([c for _, c in estimate], 50) * 1000:.2f} ms; "
                f"bitmap algebra alone p50 {percentile(eval_s, 50) * 1000:.2f} ms",
            )
        )

        # (b) the endpoint
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        body = {"expression": EXPRESSION}

        def call():
            response = client.post("/api/v1/audiences/estimate", body, format="json")
            assert response.status_code == 200, response.content

        call()
        timings = [_timed_cpu(call) for _ in range(100)]
        round_trips = [wall for wall, _ in timings]
        rows.append(
            Row(
                NAME,
                f"estimate endpoint round trip, p50 ({n:,} consumers)",
                percentile(round_trips, 50) * 1000,
                "ms",
                target="≤ 30 ms",
                note=f"Django test client, merchant key; p95 {percentile(round_trips, 95) * 1000:.1f} ms; "
                f"CPU p50 {percentile([c for _, c in timings], 50) * 1000:.2f} ms",
            )
        )

        # (c) refresh many segments
        rng = np.random.default_rng(3)
        for i, expression in enumerate(_segment_expressions(rng, list(arrays), n_segments)):
            resolved_segment = definition_resolve(parse(expression), merchant=merchant)
            Segment.objects.create(
                merchant=merchant,
                name=f"segment {i}",
                definition=resolved_segment.text,
                definition_json=to_json(resolved_segment.node),
            )
        quiet = io.StringIO()
        # In process, whatever broker is configured: the figure is the refresh work, not queueing.
        eager = celery_app.conf.task_always_eager
        celery_app.conf.task_always_eager = True
        try:
            first_s = _timed(lambda: call_command("refresh_segments", "--all", stdout=quiet))
            second_s = _timed(lambda: call_command("refresh_segments", "--all", stdout=quiet))
        finally:
            celery_app.conf.task_always_eager = eager
        sizes = list(SegmentSnapshot.objects.filter(status="ready").values_list("size", flat=True))
        failed = Segment.objects.exclude(status="ready").count()
        rows.append(
            Row(
                NAME,
                f"refresh {n_segments:,} segments ({n:,} consumers)",
                second_s,
                "s",
                target="≤ 60 s (1,000 segments, 10M)",
                note=f"second pass (with diffs); first pass {first_s:.1f} s; median size "
                f"{int(statistics.median(sizes)):,}; not ready: {failed}",
            )
        )
    bitmap_cache_clear()
    load = os.getloadavg()[0]
    rows.append(
        Row(
            NAME,
            "synthetic data generation",
            synth_s,
            "s",
            note=f"for context; load average {load_at_start:.1f} at start, {load:.1f} at end ({os.cpu_count()} cores)",
        )
    )
    return rows


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _timed_cpu(fn) -> tuple[float, float]:
    """Wall and CPU seconds of this process: on a shared machine the gap is time spent waiting for a core."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu
