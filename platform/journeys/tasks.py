"""Celery entry points: the periodic tick (beat, every minute, and soon after ingested events when an event-triggered
journey is active) and the step task it fans out to. Both take ids, are bounded, and are safe to run twice: the work
and its guarantees live in engine.py."""

from __future__ import annotations

import logging

from celery import current_app, shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError

from consumers.changes import EVENTS, ConsumersChanged

from .engine import due_claim, enrolments_step, triggers_ingest
from .models import Journey, JourneyStatus, TriggerKind

logger = logging.getLogger("dmp.journeys")

TRIGGER_ROWS_PER_TICK = 10_000  # per journey: a burst is read over several ticks, never unbounded
EVENT_TICK_KEY = "journeys:event-tick:scheduled"


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


def journeys_event_tick_request(change: ConsumersChanged) -> None:
    """The change-feed listener (after an ingested batch commits): schedule a tick JOURNEY_EVENT_TICK_S from now when
    an event-triggered journey is active, so its trigger is read within seconds rather than at beat's next minute.

    Coalesced: while a scheduled tick is in its first half of the delay, later batches schedule nothing (that tick
    reads their events too); any batch after that schedules the next one. So every committed event has a tick
    starting within JOURNEY_EVENT_TICK_S after it, and a burst costs at most two ticks per delay. Ticks are safe to
    overlap (each journey's triggers are read under its row lock). 0 turns it off; in embedded mode (eager Celery,
    no worker) beat's schedule or a manual tick does the work, never the request.
    """
    delay = settings.JOURNEY_EVENT_TICK_S
    if change.input != EVENTS or delay <= 0 or current_app.conf.task_always_eager:
        return
    # Held for half the delay (whole seconds, at least one): a batch after that finds the key gone and schedules the
    # next tick, so none waits for a tick that read the triggers before it committed.
    if not cache.add(EVENT_TICK_KEY, "1", timeout=max(1, delay // 2)):
        return
    if not Journey.objects.filter(status=JourneyStatus.ACTIVE, trigger_kind=TriggerKind.EVENT).exists():
        return
    journeys_tick_task.apply_async(countdown=delay)
