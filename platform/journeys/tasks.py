"""Celery entry points: the periodic tick (beat, every minute, and soon after ingested events when an event-triggered
journey is active) and the step task it fans out to. Both take ids, are bounded, and are safe to run twice: the work
and its guarantees live in engine.py."""

from __future__ import annotations

import logging

from celery import current_app, shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError
from django.db.models import QuerySet
from django.utils import timezone

from consumers.changes import EVENTS, ConsumersChanged

from .delivery import journey_webhook_dispatch, journeys_with_pending_webhooks
from .engine import due_claim, enrolments_step, triggers_ingest
from .models import Journey, JourneyStatus, TriggerKind
from .winner import journey_winners_pick

logger = logging.getLogger("dmp.journeys")

TRIGGER_ROWS_PER_TICK = 10_000  # per journey: a burst is read over several ticks, never unbounded
WEBHOOK_ROUNDS_PER_TASK = 10  # dispatches one webhook task runs before it re-queues itself
EVENT_TICK_KEY = "journeys:event-tick:scheduled"
SEGMENT_TICK_KEY = "journeys:segment-tick:scheduled"


def journeys_tick(*, enqueue: bool = True) -> dict[str, int]:
    """Read new triggers of every active journey, then claim due steps in batches and hand each batch to a
    step task (or run it here when `enqueue` is False)."""
    totals = {"enrolled": 0, "claimed": 0, "batches": 0}
    for journey_id in Journey.objects.filter(status=JourneyStatus.ACTIVE).values_list("pk", flat=True):
        try:
            counts = triggers_ingest(journey_id=journey_id, limit=TRIGGER_ROWS_PER_TICK)
        except Exception:  # one broken journey must not stop the others; recorded where the merchant looks
            logger.exception("journey.trigger_failed", extra={"fields": {"journey_id": journey_id}})
            Journey.objects.filter(pk=journey_id).update(last_error="Reading the trigger failed; the team is told.")
            continue
        totals["enrolled"] += counts["enrolled"]
    batch = max(1, settings.JOURNEY_BATCH_SIZE)
    while totals["claimed"] < settings.JOURNEY_TICK_MAX_STEPS:
        pairs = due_claim(limit=min(batch, settings.JOURNEY_TICK_MAX_STEPS - totals["claimed"]))
        if not pairs:
            break
        totals["claimed"] += len(pairs)
        totals["batches"] += 1
        if enqueue:
            journey_steps_task.delay([list(p) for p in pairs])
        else:
            enrolments_step(pairs=pairs)
    # Webhook messages a dispatch never picked up (its task was lost, or a worker died mid-POST and the lease ran
    # out): the step batches enqueue their own dispatch on commit; this sweep is the safety net.
    for journey_id in journeys_with_pending_webhooks(now=timezone.now()):
        if enqueue:
            journey_webhook_task.delay(journey_id)
        else:
            journey_webhook_dispatch(journey_id=journey_id)
    return totals


@shared_task(name="journeys.tick", acks_late=True, autoretry_for=(OperationalError, InterfaceError), max_retries=3)
def journeys_tick_task() -> dict[str, int]:
    return journeys_tick()


@shared_task(
    name="journeys.steps",
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=8,
)
def journey_steps_task(pairs: list[list[int]]) -> dict[str, int]:
    """Run a claimed batch of (enrolment id, step) pairs. Replayed after a crash it does nothing twice: each
    enrolment is re-checked at its claimed step under a row lock, and step runs and sends are unique."""
    return enrolments_step(pairs=[(int(a), int(b)) for a, b in pairs])


@shared_task(
    name="journeys.webhook",
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=8,
)
def journey_webhook_task(journey_id: int, round_no: int = 0) -> dict[str, int]:
    """POST a journey's pending webhook messages (journeys.delivery), a bounded number of rounds, then re-queue
    itself while some are left (up to a hard limit; the tick's sweep picks up anything beyond)."""
    totals = {"sent": 0, "failed": 0, "withdrawn": 0}
    for _ in range(WEBHOOK_ROUNDS_PER_TASK):
        counts = journey_webhook_dispatch(journey_id=journey_id)
        for key in totals:
            totals[key] += counts[key]
        if not counts["more"] or counts["failed"]:
            return totals
    if round_no < WEBHOOK_ROUNDS_PER_TASK:
        journey_webhook_task.delay(journey_id, round_no + 1)
    return totals


@shared_task(name="journeys.winners", acks_late=True, autoretry_for=(OperationalError, InterfaceError), max_retries=3)
def journeys_winners_task() -> dict[str, int]:
    """Hourly (beat): settle the auto_winner send steps of active journeys that have a winner now."""
    now = timezone.now()
    picked = 0
    for journey_id in Journey.objects.filter(status=JourneyStatus.ACTIVE).values_list("pk", flat=True):
        picked += len(journey_winners_pick(journey_id=journey_id, now=now))
    return {"picked": picked}


def journeys_event_tick_request(change: ConsumersChanged) -> None:
    """The change-feed listener (after an ingested batch commits): schedule a tick JOURNEY_EVENT_TICK_S from now when
    an event-triggered journey is active, so its trigger is read within seconds rather than at beat's next minute.

    Coalesced: while a scheduled tick is in its first half of the delay, later batches schedule nothing (that tick
    reads their events too); any batch after that schedules the next one. So every committed event has a tick
    starting within JOURNEY_EVENT_TICK_S after it, and a burst costs at most two ticks per delay. Ticks are safe to
    overlap (each journey's triggers are read under its row lock). 0 turns it off; in embedded mode (eager Celery,
    no worker) beat's schedule or a manual tick does the work, never the request.
    """
    if change.input != EVENTS:
        return
    _tick_soon(Journey.objects.filter(status=JourneyStatus.ACTIVE, trigger_kind=TriggerKind.EVENT), EVENT_TICK_KEY)


def journeys_segment_tick_request(segment_ids: frozenset[int]) -> None:
    """The segments' entry feed (after entry transitions commit, streamed or refreshed): the same coalesced tick
    when an active journey starts on entering one of those segments, so a consumer who enters a real-time segment
    is reached within seconds, as for an event trigger. The journeys are asked first here (entries come a few times
    a second at most): news for segments no journey starts on must not hold back news for one that does."""
    triggered = Journey.objects.filter(
        status=JourneyStatus.ACTIVE,
        trigger_kind=TriggerKind.SEGMENT_ENTERED,
        trigger_segment_id__in=sorted(segment_ids),
    )
    if triggered.exists():
        _tick_soon(None, SEGMENT_TICK_KEY)


def _tick_soon(triggered: QuerySet[Journey] | None, key: str) -> None:
    """Schedule a tick JOURNEY_EVENT_TICK_S from now if `triggered` (active journeys this news can start) has any,
    unless this feed scheduled one in the first half of that delay (it reads this news too). Each feed has its own
    key, so news of one kind never waits behind the other's check."""
    delay = settings.JOURNEY_EVENT_TICK_S
    if delay <= 0 or current_app.conf.task_always_eager:
        return
    # Held for half the delay (whole seconds, at least one): news after that finds the key gone and schedules the
    # next tick, so none waits for a tick that read the triggers before it committed.
    if not cache.add(key, "1", timeout=max(1, delay // 2)):
        return
    if triggered is not None and not triggered.exists():
        return
    journeys_tick_task.apply_async(countdown=delay)
