"""Journeys at scale: 1M consumers waiting in a journey (BENCH_SCALE shrinks it; 0.1 → 100 000).

Set-up (not timed): the campaigns benchmark's population (consumers with express consent, a merchant) and a
journey `wait 1d → send`, activated, with one enrolment per consumer written by COPY, all waiting (due tomorrow).

Figures:
- scheduler overhead per tick: `journeys_tick` with every consumer waiting and nothing due (triggers read, the
  due-enrolment query on the (state, next_run_at) index, no work): the median of 5;
- processing due steps: 100 000 × scale enrolments made due at once (their wait over), then ticks in this process
  (`enqueue=False`: the same step function the Celery task calls) until none is due; each one ends its wait, passes
  the messaging rule (may_message, per consumer), the frequency caps, renders and writes its message, in its own
  transaction;
- event → message latency: a cart event ingested for a consented consumer, then a tick, until the journey's message
  is written (p50 / p99 over 60 events; the tick runs at once here);
- the same with a real Celery worker (needs CELERY_BROKER_URL): nobody ticks, the ingested batch schedules the tick
  (JOURNEY_EVENT_TICK_S) on the worker, while another thread ingests 5,000 view events/s; p50 / p99 over 30 events.
"""

from __future__ import annotations

import time
from datetime import timedelta

from benchmarks import BenchContext, Row, median_time, percentile

N_FULL = 1_000_000
DUE_FULL = 100_000
NAME = "journeys"


def _journey(merchant, name: str, steps: list[dict], trigger_event: str):
    from journeys.services import journey_activate, journey_create

    journey = journey_create(
        merchant=merchant,
        actor="bench",
        name=name,
        trigger_kind="event",
        trigger_event=trigger_event,
        holdout_share=0,
        steps=steps,
    )
    journey_activate(journey=journey, actor="bench")
    return journey


def _clear(merchant) -> None:
    from django.db import connection

    from journeys.models import Journey

    ids = list(Journey.objects.filter(merchant=merchant).values_list("pk", flat=True))
    if not ids:
        return
    with connection.cursor() as cursor:
        for table in ("journeys_journeysend", "journeys_journeysteprun", "journeys_journeyenrolment"):
            cursor.execute(f"DELETE FROM {table} WHERE journey_id = ANY(%s)", [ids])
        cursor.execute("UPDATE journeys_journey SET current_version_id = NULL WHERE id = ANY(%s)", [ids])
        cursor.execute("DELETE FROM journeys_journeyversion WHERE journey_id = ANY(%s)", [ids])
        cursor.execute("DELETE FROM journeys_journey WHERE id = ANY(%s)", [ids])


def _enrol_all(journey, ids) -> None:
    from django.db import transaction
    from django.utils import timezone

    from benchmarks.bench_campaigns import _copy
    from journeys.models import JourneyEnrolment

    now = timezone.now()
    due = (now + timedelta(days=1)).isoformat()
    started = now.isoformat()
    version = journey.current_version_id
    with transaction.atomic():
        _copy(
            JourneyEnrolment._meta.db_table,
            [
                "journey_id",
                "version_id",
                "consumer_id",
                "entry_no",
                "state",
                "step",
                "next_run_at",
                "attempts",
                "entered_at",
                "step_started_at",
                "exit_reason",
            ],
            ((journey.pk, version, cid, 1, "active", 0, due, 0, started, started, "") for cid in ids),
        )


def _consented(raw_ids: list[str]) -> None:
    from django.utils import timezone

    from consumers.models import Consumer
    from consumers.profiles import profiles_ingest
    from privacy.models import ConsentKind, ConsentStatus, Purpose
    from privacy.pseudonyms import pseudonymise
    from privacy.services import ConsentChange, consents_record

    profiles_ingest(rows=[{"consumer_id": raw, "country": "SG"} for raw in raw_ids], actor="bench")
    ids = Consumer.objects.filter(pseudonym__in=[pseudonymise(raw) for raw in raw_ids]).values_list("pk", flat=True)
    now = timezone.now()
    consents_record(
        changes=[
            ConsentChange(cid, Purpose.DIRECT_MARKETING, ConsentStatus.GRANTED, ConsentKind.EXPRESS, "bench", now)
            for cid in ids
        ],
        actor="bench",
    )


def _cart(merchant, raw: str, category: str) -> dict:
    from django.utils import timezone

    return {
        "event_id": f"{raw}-cart",
        "consumer_id": raw,
        "merchant": merchant.slug,
        "sku": f"BENCH-{category}",
        "category_path": category,
        "event_type": "cart",
        "occurred_at": timezone.now().isoformat(),
    }


def _worker_latency(merchant, steps: list[dict], n: int = 30) -> tuple[list[float], str]:
    """Event → message with a real Celery worker on the configured broker: ingest, tick (the step task goes to the
    worker), poll until the message is written."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    import threading
    from pathlib import Path

    from django.conf import settings
    from django.db import connection

    from config.celery import app as celery_app
    from consumers.events import events_ingest
    from journeys.models import JourneySend

    if not settings.CELERY_BROKER_URL:
        return [], "needs CELERY_BROKER_URL"
    journey = _journey(merchant, "bench worker latency", steps, 'carted(category="bench-worker")')
    raw_ids = [f"bench-journey-worker-{journey.pk}-{i}" for i in range(n)]
    _consented(raw_ids)
    db = connection.settings_dict
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://{}@{}:{}/{}".format(
            db["USER"] or "postgres", db["HOST"] or "127.0.0.1", db["PORT"] or 5432, db["NAME"]
        ),
        "PYTHONPATH": f"{root / 'platform'}:{root}",
        "JOURNEY_QUIET_HOURS": "",
    }
    log = tempfile.NamedTemporaryFile(prefix="bench-journeys-worker-", suffix=".log", delete=False)  # noqa: SIM115
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--concurrency=1",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"bench-journeys-{os.getpid()}@%h",
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    latencies: list[float] = []
    try:
        deadline = time.monotonic() + 60
        while not celery_app.control.ping(timeout=0.5):
            if time.monotonic() > deadline or worker.poll() is not None:
                return [], "the worker did not start"
        stop = threading.Event()
        streamed: list[float] = []
        stream = threading.Thread(
            target=_stream, args=(merchant.slug, f"{journey.pk}", stop, streamed), name="bench-stream", daemon=True
        )
        stream.start()
        time.sleep(2)  # the stream is running before the first measured event
        try:
            for i, raw in enumerate(raw_ids):
                begin = time.perf_counter()
                # No tick here: the committed batch schedules one (JOURNEY_EVENT_TICK_S), as in production.
                events_ingest(rows=[_cart(merchant, raw, "bench-worker")], actor="bench")
                wait_until = time.monotonic() + 90
                while JourneySend.objects.filter(journey=journey).count() < i + 1 and time.monotonic() < wait_until:
                    time.sleep(0.005)
                if JourneySend.objects.filter(journey=journey).count() >= i + 1:
                    latencies.append(time.perf_counter() - begin)
        finally:
            stop.set()
            stream.join(timeout=60)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    rate = streamed[0] / streamed[1] if len(streamed) == 2 and streamed[1] else 0.0
    return latencies, (
        f"{len(latencies)} of {n} delivered by a real worker, tick scheduled by the ingested batch "
        f"(JOURNEY_EVENT_TICK_S={settings.JOURNEY_EVENT_TICK_S}), while {rate:,.0f} other events/s were ingested"
    )


STREAM_RATE = 5000  # events per second ingested beside the measured ones
STREAM_CONSUMERS = 20_000


def _stream(merchant_slug: str, run: str, stop, streamed: list[float]) -> None:
    """Views at STREAM_RATE (posted every 100 ms: what arrived since the last post) until stop is set; appends
    (events sent, seconds) to streamed. Their batches schedule journey ticks too, as any ingested batch does."""
    from django.db import connection
    from django.utils import timezone

    from consumers.events import events_ingest

    started = time.monotonic()
    sent = 0
    try:
        while not stop.is_set():
            tick = time.monotonic()
            due = min(int((tick - started) * STREAM_RATE), sent + 20_000)
            if due > sent:
                now = timezone.now().isoformat()
                rows = [
                    {
                        "event_id": f"bench-journeys-stream-{run}-{k}",
                        "consumer_id": f"bench-journeys-stream-{k % STREAM_CONSUMERS}",
                        "merchant": merchant_slug,
                        "sku": "BENCH-STREAM",
                        "event_type": "view",
                        "occurred_at": now,
                    }
                    for k in range(sent, due)
                ]
                events_ingest(rows=rows, actor="bench", writers=1)
                sent = due
            spare = 0.1 - (time.monotonic() - tick)
            if spare > 0:
                time.sleep(spare)
        streamed.extend([sent, time.monotonic() - started])
    finally:
        connection.close()


def run(ctx: BenchContext) -> list[Row]:
    if not ctx.on_postgres:
        return [Row(NAME, "1M consumers waiting", None, "s", skipped="needs PostgreSQL (DATABASE_URL)")]
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from benchmarks.bench_campaigns import _approve_activities, _population
    from consumers.events import events_ingest
    from consumers.models import Consumer
    from consumers.profiles import profiles_ingest
    from journeys.models import JourneyEnrolment, JourneySend
    from journeys.tasks import journeys_tick
    from privacy.models import ConsentKind, ConsentStatus, Purpose
    from privacy.pseudonyms import pseudonymise
    from privacy.services import ConsentChange, consents_record

    call_command("migrate", verbosity=0)
    settings.JOURNEY_QUIET_HOURS = ""  # the benchmark runs at any hour
    settings.PLATFORM_FREQUENCY_CAP = 0  # caps are checked either way; the benchmark's consumers get many messages
    n = max(2_000, int(N_FULL * ctx.scale))
    n_due = max(500, int(DUE_FULL * ctx.scale))
    _approve_activities()
    merchant, members = _population(n)
    ids = list(members)[:n]
    _clear(merchant)
    steps = [
        {"type": "wait", "duration": "1d"},
        {"type": "send", "title": "Hello from {store_name}", "body": "New in.", "products": 0},
    ]
    waiting = _journey(merchant, "bench waiting", steps, 'carted(category="bench-never")')
    _enrol_all(waiting, ids)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE journeys_journeyenrolment")
    scale_note = f"{len(ids):,} consumers waiting" + ("" if n == N_FULL else f" (BENCH_SCALE={ctx.scale})")

    tick_s, _ = median_time(lambda: journeys_tick(enqueue=False), repeat=5, warmup=1)

    now = timezone.now()
    due_ids = ids[:n_due]
    for start in range(0, len(due_ids), 50_000):
        JourneyEnrolment.objects.filter(journey=waiting, consumer_id__in=due_ids[start : start + 50_000]).update(
            next_run_at=now - timedelta(seconds=1), step_started_at=now - timedelta(days=2)
        )
    started = time.perf_counter()
    ticks = 0
    while True:
        totals = journeys_tick(enqueue=False)
        ticks += 1
        if not totals["claimed"] or ticks > 10_000:
            break
    process_s = time.perf_counter() - started
    sent = JourneySend.objects.filter(journey=waiting).count()

    latency_journey = _journey(merchant, "bench latency", [steps[1]], 'carted(category="bench-latency")')
    raw_ids = [f"bench-journey-latency-{latency_journey.pk}-{i}" for i in range(60)]
    profiles_ingest(rows=[{"consumer_id": raw, "country": "SG"} for raw in raw_ids], actor="bench")
    pseudonyms = [pseudonymise(raw) for raw in raw_ids]
    consumer_ids = list(Consumer.objects.filter(pseudonym__in=pseudonyms).values_list("pk", flat=True))
    consents_record(
        changes=[
            ConsentChange(cid, Purpose.DIRECT_MARKETING, ConsentStatus.GRANTED, ConsentKind.EXPRESS, "bench", now)
            for cid in consumer_ids
        ],
        actor="bench",
    )
    latencies = []
    for i, raw in enumerate(raw_ids):
        row = {
            "event_id": f"{raw}-cart",
            "consumer_id": raw,
            "merchant": merchant.slug,
            "sku": "BENCH-LATENCY",
            "category_path": "bench-latency",
            "event_type": "cart",
            "occurred_at": timezone.now().isoformat(),
        }
        begin = time.perf_counter()
        events_ingest(rows=[row], actor="bench")
        journeys_tick(enqueue=False)
        if JourneySend.objects.filter(journey=latency_journey).count() >= i + 1:
            latencies.append(time.perf_counter() - begin)
    delivered = JourneySend.objects.filter(journey=latency_journey).count()
    worker_latencies, worker_note = _worker_latency(merchant, [steps[1]])
    worker_rows = (
        [
            Row(
                NAME,
                "event → message p50 (real worker)",
                percentile(worker_latencies, 50) * 1000,
                "ms",
                note=worker_note,
            ),
            Row(NAME, "event → message p99 (real worker)", percentile(worker_latencies, 99) * 1000, "ms"),
        ]
        if worker_latencies
        else [Row(NAME, "event → message (real worker)", None, "ms", skipped=worker_note)]
    )
    return [
        Row(NAME, "scheduler overhead per tick (nothing due)", tick_s * 1000, "ms", note=scale_note),
        Row(
            NAME,
            f"process {n_due:,} due steps (wait ends, rule, caps, send)",
            process_s,
            "s",
            note=f"{sent:,} messages written in {ticks} ticks; {scale_note}",
        ),
        Row(
            NAME,
            "event → message p50 (in-process tick)",
            percentile(latencies, 50) * 1000,
            "ms",
            note=f"{delivered} of 60 delivered; ticked at once (a batch schedules a tick within JOURNEY_EVENT_TICK_S)",
        ),
        Row(
            NAME, "event → message p99 (in-process tick)", percentile(latencies, 99) * 1000 if latencies else None, "ms"
        ),
        *worker_rows,
    ]
