"""Data-subject rights and risk control at marketplace size.

500,000 events (BENCH_SCALE scales it) from 25,000 consumers, each on their own
phone, with 2-4-person households sharing tablets and rings of 7 accounts on one
device, spread over the last 60 days. Figures:

- the three risk rules as grouped SQL (what `risk_scan` runs), against the same
  rules read in Python over every event fetched from the database, side by side;
- one erasure request end to end (submit, every handler, audit) for a consumer
  with 200 events, and one access document for such a consumer;
- the retention purge deleting 10 % of the events (made older than the
  retention window), in its default bounded batches.

Everything the benchmark creates is removed afterwards (audit entries stay: the log is append-only).
"""

from __future__ import annotations

import random
import statistics
import time
from collections import defaultdict
from datetime import timedelta

from benchmarks import BenchContext, Row, median_time

NAME = "rights"
FULL_EVENTS = 500_000
EVENTS_PER_CONSUMER = 20
MERCHANT_SLUG = "bench-rights"


def _populate(count: int, seed: int = 11):
    from django.utils import timezone

    from consumers.models import Consumer, Event, EventType
    from merchants.models import Merchant
    from privacy.pseudonyms import make_pseudonymiser

    rng = random.Random(seed)
    merchant, _ = Merchant.objects.get_or_create(slug=MERCHANT_SLUG, defaults={"name": "Bench rights"})
    pseudonymise = make_pseudonymiser()
    consumers = max(50, count // EVENTS_PER_CONSUMER)
    created = Consumer.objects.bulk_create(
        [Consumer(pseudonym=pseudonymise(f"bench-rights-{seed}-{i}"), country="SG") for i in range(consumers)],
        batch_size=5000,
    )
    ids = [c.pk for c in created]
    # Devices: own phone; every 10th consumer also shares a household tablet (2-4 people); every 200th is in a ring.
    devices = {cid: [f"p{cid}"] for cid in ids}
    for start in range(0, len(ids), 30):
        household = ids[start : start + 2 + start % 3]
        for cid in household:
            devices[cid].append(f"t{start}")
    for start in range(0, len(ids), 1400):
        for cid in ids[start : start + 7]:
            devices[cid].append(f"r{start}")
    now = timezone.now()
    types = [EventType.VIEW] * 6 + [EventType.CLICK, EventType.CART, EventType.PURCHASE, EventType.CANCEL]
    batch = []
    for n in range(count):
        cid = ids[n % len(ids)]
        kind = rng.choice(types)
        batch.append(
            Event(
                source_key=f"br{seed}-{n}",
                consumer_id=cid,
                merchant=merchant,
                event_type=kind,
                occurred_at=now - timedelta(minutes=rng.randint(1, 60 * 24 * 60)),
                discount=2 if kind == EventType.PURCHASE and rng.random() < 0.3 else 0,
                order_ref=f"o{cid}-{rng.randint(0, 5)}" if kind in (EventType.PURCHASE, EventType.CANCEL) else "",
                device=rng.choice(devices[cid]),
            )
        )
        if len(batch) == 20_000:
            Event.objects.bulk_create(batch)
            batch = []
    Event.objects.bulk_create(batch)
    return merchant, ids


def _cleanup():
    from consumers.models import Consumer, Event
    from merchants.models import Merchant
    from privacy.models import DataSubjectRequest

    merchant = Merchant.objects.filter(slug=MERCHANT_SLUG).first()
    if merchant is None:
        return
    consumer_ids = list(Event.objects.filter(merchant=merchant).values_list("consumer_id", flat=True).distinct())
    Event.objects.filter(merchant=merchant).delete()
    for start in range(0, len(consumer_ids), 5000):
        Consumer.objects.filter(pk__in=consumer_ids[start : start + 5000]).delete()
    DataSubjectRequest.objects.filter(submitted_by="benchmark:rights").delete()
    merchant.delete()


def _python_rules(now) -> set[tuple[int, str]]:
    """The same three rules, read in Python over every event: the approach the SQL replaces."""
    from consumers import risk
    from consumers.models import Event, EventType

    since_device = now - timedelta(days=risk.DEVICE_WINDOW_DAYS)
    since_orders = now - timedelta(days=risk.CANCELLATION_WINDOW_DAYS)
    on_device, redeeming = defaultdict(set), defaultdict(set)
    orders = defaultdict(lambda: (set(), set()))
    for cid, kind, at, device, discount, ref in Event.objects.values_list(
        "consumer_id", "event_type", "occurred_at", "device", "discount", "order_ref"
    ).iterator(chunk_size=20_000):
        if device and at >= since_device:
            on_device[device].add(cid)
            if kind == EventType.PURCHASE and discount > 0:
                redeeming[device].add(cid)
        if at >= since_orders and kind in (EventType.PURCHASE, EventType.CANCEL) and ref:
            orders[cid][0 if kind == EventType.PURCHASE else 1].add(ref)
    found = set()
    for members in on_device.values():
        if len(members) >= risk.SHARED_DEVICE_MIN_ACCOUNTS:
            found |= {(c, "shared_device") for c in members}
    for members in redeeming.values():
        if len(members) >= risk.OFFER_DEVICE_MIN_ACCOUNTS:
            found |= {(c, "offer_multi_account") for c in members}
    for cid, (placed, cancelled) in orders.items():
        if len(placed) >= risk.CANCELLATION_MIN_ORDERS and len(cancelled) * 100 >= len(placed) * 50:
            found.add((cid, "cancellation_ratio"))
    return found


def run(ctx: BenchContext) -> list[Row]:
    from django.conf import settings
    from django.utils import timezone

    from consumers import risk
    from consumers.models import Event
    from consumers.tasks import events_purge_expired
    from privacy.subject_rights import subject_access_document, subject_request_process, subject_request_submit

    count = max(2000, int(FULL_EVENTS * ctx.scale))
    rows: list[Row] = []
    _cleanup()
    try:
        started = time.perf_counter()
        merchant, ids = _populate(count)
        setup_s = time.perf_counter() - started
        now = timezone.now()

        def sql_rules():
            return {(f.consumer_id, f.reason) for rule in risk.RULES for f in rule(now=now)}

        sql_s, _ = median_time(sql_rules, repeat=3)
        python_s, _ = median_time(lambda: _python_rules(now), repeat=3)
        sql_found = sql_rules()
        agree = sql_found == _python_rules(now)  # every order line carries a reference here, so the readings match
        rows.append(
            Row(
                NAME,
                f"risk rules, {count:,} events (grouped SQL)",
                sql_s,
                "s",
                target="< 10 s at 500k",
                ratio=f"{python_s / sql_s:.1f}x vs Python",
                note=f"{len(sql_found):,} flags; same flags both ways: {agree}; setup {setup_s:.0f} s",
            )
        )
        rows.append(Row(NAME, f"risk rules, {count:,} events (Python over all rows)", python_s, "s"))

        # Subjects with 200 events each, on top of the population.
        heavy = ids[-6:]
        from consumers.models import EventType

        Event.objects.bulk_create(
            [
                Event(
                    source_key=f"brh-{cid}-{n}",
                    consumer_id=cid,
                    merchant=merchant,
                    event_type=EventType.VIEW,
                    occurred_at=now - timedelta(hours=n),
                )
                for cid in heavy
                for n in range(200)
            ]
        )
        from consumers.models import Consumer

        pseudonyms = dict(Consumer.objects.filter(pk__in=heavy).values_list("pk", "pseudonym"))
        access_s, _ = median_time(lambda: subject_access_document(pseudonym=pseudonyms[heavy[0]]), repeat=5)
        rows.append(Row(NAME, "access document, consumer with ~220 events", access_s * 1000, "ms", target="< 1000 ms"))

        # Erasure takes a raw identifier; the bench consumers' raw ids are known by construction.
        raw_ids = {cid: f"bench-rights-11-{ids.index(cid)}" for cid in heavy}
        erase_samples = []
        for cid in heavy[1:]:
            started = time.perf_counter()
            request = subject_request_submit(kind="erasure", raw_identifier=raw_ids[cid], actor="benchmark:rights")
            done = subject_request_process(request_id=request.pk, actor="benchmark:rights")
            erase_samples.append(time.perf_counter() - started)
            if done.result["removed"]["consumers"]["profile"] != 1:
                raise RuntimeError("the benchmark erasure did not remove the consumer")
        rows.append(
            Row(
                NAME,
                "erasure request end to end, consumer with ~220 events",
                statistics.median(erase_samples) * 1000,
                "ms",
                target="< 1000 ms",
                note=f"{len(erase_samples)} erasures in a table of {count:,} events",
            )
        )

        # Retention: age 10 % of the events past the window, then purge them.
        old_ids = list(Event.objects.filter(merchant=merchant).order_by("pk").values_list("pk", flat=True)[::10])
        past = now - timedelta(days=settings.EVENT_RETENTION_DAYS + 5)
        for start in range(0, len(old_ids), 20_000):
            Event.objects.filter(pk__in=old_ids[start : start + 20_000]).update(occurred_at=past)
        started = time.perf_counter()
        result = events_purge_expired.apply().get()
        purge_s = time.perf_counter() - started
        rows.append(
            Row(
                NAME,
                f"retention purge, {len(old_ids):,} of {count:,} events",
                len(old_ids) / purge_s,
                "events/s",
                note=f"first round deleted {result['deleted']:,} (batches of 5,000)",
            )
        )
    finally:
        _cleanup()
    return rows
