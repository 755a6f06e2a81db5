"""Journeys with a real Celery worker on Redis and PostgreSQL: the abandoned cart end to end, and a worker killed
(SIGKILL) while steps are due: after a restart every consumer gets every message exactly once."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from consumers.models import EventType
from journeys.models import EnrolmentState, JourneyEnrolment, JourneySend
from journeys.services import journey_activate, journey_create
from journeys.tasks import journeys_tick
from journeys.templates import journey_from_template
from privacy.models import Purpose
from tests.factories import EventFactory, consents_record_for, consumers_create, events_ingest_rows
from tests.factories.consumers import event_row

pytestmark = pytest.mark.worker


def wait_for(predicate, *, timeout: float, what: str, worker, tick: bool = True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick:
            journeys_tick()  # what beat does every minute, here as often as the test needs
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}\n{worker.log[-4000:]}")


@pytest.fixture
def worker_env(monkeypatch, settings):
    """No quiet hours (the test runs at any hour), small batches and a short lease, in both processes."""
    for name, value in (("JOURNEY_QUIET_HOURS", ""), ("JOURNEY_BATCH_SIZE", "25"), ("JOURNEY_STEP_LEASE_S", "4")):
        monkeypatch.setenv(name, value)
    settings.JOURNEY_QUIET_HOURS = ""
    settings.JOURNEY_BATCH_SIZE = 25
    settings.JOURNEY_STEP_LEASE_S = 4


def test_abandoned_cart_with_a_real_worker(worker_env, celery_worker_process, merchant, approve_activity):
    approve_activity(Purpose.DIRECT_MARKETING)
    journey = journey_from_template(merchant=merchant, key="abandoned_cart", actor="test")
    journey.holdout_share = 0
    journey.save(update_fields=["holdout_share"])
    journey_activate(journey=journey, actor="test")
    quiet, bought, refused = consumers_create(3, prefix="worker-cart")
    consents_record_for([quiet.pk, bought.pk], purpose=Purpose.DIRECT_MARKETING)
    now = timezone.now()
    for person in (quiet, bought, refused):
        EventFactory(
            merchant=merchant, consumer=person, sku="TENT", title="Tent", event_type=EventType.CART, occurred_at=now
        )
    wait_for(
        lambda: JourneyEnrolment.objects.filter(journey=journey).count() == 3,
        timeout=60,
        what="enrolments",
        worker=celery_worker_process,
    )
    EventFactory(
        merchant=merchant,
        consumer=bought,
        sku="TENT",
        event_type=EventType.PURCHASE,
        occurred_at=now + timedelta(minutes=5),
    )
    # Two hours pass: the wait for a purchase began two hours ago.
    JourneyEnrolment.objects.filter(journey=journey).update(
        entered_at=now - timedelta(hours=2, minutes=1),
        step_started_at=now - timedelta(hours=2, minutes=1),
        next_run_at=now - timedelta(seconds=1),
    )

    def settled():
        return not JourneyEnrolment.objects.filter(journey=journey, step=0, state=EnrolmentState.ACTIVE).exists()

    wait_for(settled, timeout=60, what="the nudge", worker=celery_worker_process)
    sends = list(JourneySend.objects.filter(journey=journey).values_list("consumer_id", "title"))
    assert sends == [(quiet.pk, "Still thinking about Tent?")]
    states = dict(JourneyEnrolment.objects.filter(journey=journey).values_list("consumer_id", "exit_reason"))
    assert states[bought.pk] == "exit_condition" and states[refused.pk] == "no_express_consent"


def test_killing_the_worker_while_steps_are_due_loses_and_doubles_nothing(
    worker_env, celery_worker_process, merchant, approve_activity
):
    approve_activity(Purpose.DIRECT_MARKETING)
    steps = [
        {"type": "send", "title": "First for you", "body": "From {store_name}", "products": 0},
        {"type": "send", "title": "Second for you", "body": "From {store_name}", "products": 0},
    ]
    journey = journey_create(
        merchant=merchant,
        actor="test",
        name="Two messages",
        trigger_kind="event",
        trigger_event="carted()",
        holdout_share=0,
        steps=steps,
    )
    journey_activate(journey=journey, actor="test")
    people = consumers_create(1500, prefix="worker-kill")
    ids = [p.pk for p in people]
    consents_record_for(ids, purpose=Purpose.DIRECT_MARKETING)
    now = timezone.now()
    events_ingest_rows(
        [
            event_row(consumer=p, merchant=merchant, sku="BAG", event_type=EventType.CART, occurred_at=now)
            for p in people
        ]
    )

    def some_sent():
        return JourneySend.objects.filter(journey=journey).count() >= 200

    wait_for(some_sent, timeout=120, what="the first messages", worker=celery_worker_process)
    celery_worker_process.stop(kill=True)
    at_kill = JourneySend.objects.filter(journey=journey).count()
    assert at_kill < 2 * len(ids), "everything was sent before the kill; use more consumers"

    celery_worker_process.start()

    def finished():
        return not JourneyEnrolment.objects.filter(journey=journey, state=EnrolmentState.ACTIVE).exists() and (
            JourneyEnrolment.objects.filter(journey=journey).count() == len(ids)
        )

    wait_for(finished, timeout=240, what="the resumed journey", worker=celery_worker_process)
    per_consumer = Counter(JourneySend.objects.filter(journey=journey).values_list("consumer_id", "step"))
    assert set(per_consumer) == {(cid, step) for cid in ids for step in (0, 1)}  # none lost
    assert set(per_consumer.values()) == {1}  # none doubled
    assert set(JourneyEnrolment.objects.filter(journey=journey).values_list("state", flat=True)) == {"completed"}


def _cart_then_message_without_a_tick(person, merchant, journey, sku: str, worker) -> None:
    """The consented person carts a tent; the journey's message must follow with nobody ticking (no beat, no test
    tick): whatever the cart sets off on the worker has to schedule the tick itself."""
    consents_record_for([person.pk], purpose=Purpose.DIRECT_MARKETING)
    events_ingest_rows(
        [event_row(consumer=person, merchant=merchant, sku=sku, category_path="tents", event_type=EventType.CART)]
    )
    wait_for(
        lambda: JourneySend.objects.filter(journey=journey, consumer_id=person.pk).exists(),
        timeout=60,
        what="the journey's message",
        worker=worker,
        tick=False,
    )


def test_an_ingested_event_reaches_its_journey_without_waiting_for_beat(
    worker_env, celery_worker_process, merchant, approve_activity
):
    """Nobody ticks here (no beat, no test tick): the committed batch itself schedules the tick on the worker."""
    from django.core.cache import cache

    from journeys.tasks import EVENT_TICK_KEY

    cache.delete(EVENT_TICK_KEY)
    approve_activity(Purpose.DIRECT_MARKETING)
    journey = journey_create(
        merchant=merchant,
        actor="test",
        name="welcome to tents",
        trigger_kind="event",
        trigger_event='carted(category="tents")',
        holdout_share=0,
        steps=[{"type": "send", "title": "Hello from {store_name}", "body": "Tents are in.", "products": 0}],
    )
    journey_activate(journey=journey, actor="test")
    (person,) = consumers_create(1, prefix="worker-event-tick")
    _cart_then_message_without_a_tick(person, merchant, journey, "TENT-2", celery_worker_process)


def test_entering_a_real_time_segment_reaches_its_journey_without_waiting_for_beat(
    worker_env, celery_worker_process, merchant, approve_activity
):
    """Nobody ticks here either: the cart moves a real-time segment on the worker (the drain), the entry's commit
    schedules the tick, and the journey triggered by entering that segment sends its message."""
    from django.core.cache import cache

    from journeys.tasks import SEGMENT_TICK_KEY
    from segments.models import RefreshPolicy
    from segments.services import segment_create, segment_refresh

    cache.delete(SEGMENT_TICK_KEY)
    approve_activity(Purpose.DIRECT_MARKETING)
    approve_activity(Purpose.TAGGING)
    browser, person = consumers_create(2, prefix="worker-segment-tick")
    # The store sells tents (a segment may only target what its catalogue has): someone else looked at one.
    events_ingest_rows(
        [event_row(consumer=browser, merchant=merchant, sku="TENT-3", category_path="tents", event_type=EventType.VIEW)]
    )
    segment = segment_create(
        merchant=merchant,
        name="tent carts",
        actor="test",
        expression='carted(category="tents")',
        refresh_policy=RefreshPolicy.REALTIME,
    )
    segment_refresh(segment_id=segment.pk, actor="test")
    journey = journey_create(
        merchant=merchant,
        actor="test",
        name="welcome to tent carts",
        trigger_kind="segment_entered",
        trigger_segment_id=segment.pk,
        holdout_share=0,
        steps=[{"type": "send", "title": "Hello from {store_name}", "body": "Tents are in.", "products": 0}],
    )
    journey_activate(journey=journey, actor="test")
    _cart_then_message_without_a_tick(person, merchant, journey, "TENT-3", celery_worker_process)
