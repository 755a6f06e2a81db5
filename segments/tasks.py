"""Celery entry points for segments. They take ids, do a bounded amount of work, and record failures."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.db import InterfaceError, OperationalError
from django.db.models import Q

from config.celery import legacy_task_alias

from .membership import UpdateOutcome, membership_drain, membership_sweep, membership_update, processing_orphans
from .models import Segment
from .services import (
    RefreshFailed,
    _merchant_message,
    segment_refresh_failure_record,
    segment_refresh_request,
    segment_refresh_run,
    segments_due,
    segments_refresh_batch,
)

logger = logging.getLogger("dmp.segments")

REFRESH_MAX_RETRIES = 4
RETRY_BACKOFF_SECONDS = 30
RETRY_BACKOFF_MAX_SECONDS = 30 * 60
DUE_BATCH = 200  # segments taken per run of the due-refresh task
REFRESH_BATCH = 25  # segments refreshed together by one batch task (bounded work, bounded memory)
DUE_MAX_ROUNDS = 500  # a run re-queues itself for the next batch at most this many times

# Stable task names: messages and beat rows refer to these, so moving or renaming a function never strands them.
REFRESH_TASK = "segments.refresh_segment"
REFRESH_SCHEDULED_TASK = "segments.refresh_scheduled"  # a segment's own schedule (segments.services creates it)
REFRESH_BATCH_TASK = "segments.refresh_batch"
REFRESH_DUE_TASK = "segments.refresh_due"
MEMBERSHIP_DRAIN_TASK = "segments.membership_drain"  # real-time segments: evaluate what ingestion changed
MEMBERSHIP_SWEEP_TASK = "segments.membership_sweep"  # real-time segments: windows that lapsed (beat)
MEMBERSHIP_MAX_ROUNDS = 1000  # a drain re-queues itself while work is left, at most this many times in a row


@shared_task(bind=True, name=REFRESH_TASK, max_retries=REFRESH_MAX_RETRIES, acks_late=True)
def segment_refresh_task(self, segment_id: int, version: int) -> dict:
    """Materialise one version of one segment. Superseded versions skip themselves.

    Failures are written on the segment every time (the merchant sees "attempt 2 failed, retrying: ...");
    ones retrying cannot fix (bad definition, no legal basis, seed too small) fail at once, the others are
    retried with exponential backoff and jitter.
    """
    try:
        snapshot = segment_refresh_run(segment_id=segment_id, version=version, actor="task:segment_refresh")
    except RefreshFailed as exc:
        segment_refresh_failure_record(segment_id=segment_id, version=version, error=str(exc), final=True)
        raise
    except Exception as exc:
        attempt = self.request.retries + 1
        final = self.request.retries >= self.max_retries
        segment_refresh_failure_record(
            segment_id=segment_id, version=version, error=_merchant_message(exc), final=final, attempt=attempt
        )
        if final:
            raise
        if self.request.is_eager:
            # Embedded mode has no queue to wait in (and Celery only retries eager tasks whose errors
            # propagate): retry at once, here.
            retried = segment_refresh_task.apply(
                args=(segment_id, version), retries=self.request.retries + 1, throw=False
            )
            return retried.result if isinstance(retried.result, dict) else {"segment_id": segment_id, "failed": True}
        countdown = get_exponential_backoff_interval(
            factor=RETRY_BACKOFF_SECONDS,
            retries=self.request.retries,
            maximum=RETRY_BACKOFF_MAX_SECONDS,
            full_jitter=True,
        )
        raise self.retry(exc=exc, countdown=countdown) from exc
    if snapshot is None:
        return {"segment_id": segment_id, "version": version, "skipped": True}
    return {"segment_id": segment_id, "version": version, "snapshot_id": snapshot.pk, "size": snapshot.size}


@shared_task(name=REFRESH_SCHEDULED_TASK, acks_late=True)
def segment_refresh_scheduled_task(segment_id: int) -> dict:
    """A custom schedule's tick (a django-celery-beat periodic task): queue a refresh of its segment."""
    try:
        version = segment_refresh_request(segment_id=segment_id, actor="beat:segment_schedule")
    except Segment.DoesNotExist:
        return {"segment_id": segment_id, "skipped": True}
    return {"segment_id": segment_id, "version": version}


@shared_task(
    bind=True,
    name=REFRESH_BATCH_TASK,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=RETRY_BACKOFF_SECONDS,
    retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=REFRESH_MAX_RETRIES,
)
def segments_refresh_batch_task(self, segment_ids: list[int], actor: str = "task:segments_refresh_batch") -> dict:
    """Refresh up to REFRESH_BATCH segments together (one catalogue load, one write transaction).

    Segments that cannot be computed are recorded as failed and skipped; a database outage retries the batch
    with backoff (re-running is safe: it takes new versions and the guard keeps the newest).
    """
    return segments_refresh_batch(segment_ids=list(segment_ids)[:REFRESH_BATCH], actor=actor)


def segments_refresh_queue(*, segment_ids: list[int], actor: str) -> dict[str, int]:
    """Refresh many segments in bounded batches: queued with a broker, run here one batch at a time without."""
    totals = {"refreshed": 0, "failed": 0, "superseded": 0, "queued": 0}
    for start in range(0, len(segment_ids), REFRESH_BATCH):
        chunk = segment_ids[start : start + REFRESH_BATCH]
        if segments_refresh_batch_task.app.conf.task_always_eager:
            for key, value in segments_refresh_batch(segment_ids=chunk, actor=actor).items():
                totals[key] += value
        else:
            segments_refresh_batch_task.delay(chunk, actor)
            totals["queued"] += len(chunk)
    return totals


@shared_task(name=REFRESH_DUE_TASK, acks_late=True)
def segments_refresh_due_task(policy: str | None = None, after_id: int = 0, round_number: int = 0) -> dict:
    """Refresh segments whose hourly or daily policy makes them due, a bounded batch per run.

    A run takes up to DUE_BATCH segments in id order (queued as refresh batches) and re-queues itself for the
    rest, at most DUE_MAX_ROUNDS times, so a runaway table cannot keep a worker busy for ever.
    """
    due = Segment.objects.filter(segments_due(policy=policy) & Q(pk__gt=after_id)).order_by("pk")
    batch = list(due.values_list("pk", flat=True)[:DUE_BATCH])
    outcome = segments_refresh_queue(segment_ids=batch, actor="beat:segments_due")
    if len(batch) == DUE_BATCH:
        if round_number + 1 < DUE_MAX_ROUNDS:
            segments_refresh_due_task.delay(policy=policy, after_id=batch[-1], round_number=round_number + 1)
        else:
            logger.warning("segments.refresh_due_truncated", extra={"fields": {"after_id": batch[-1]}})
    return {"segments": len(batch), **outcome, "after_id": batch[-1] if batch else after_id, "round": round_number}


@shared_task(
    bind=True,
    name=MEMBERSHIP_DRAIN_TASK,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=REFRESH_MAX_RETRIES,
)
def membership_drain_task(
    self,
    consumer_ids: list[int] | None = None,
    change_input: str = "events",
    segment_ids: list[int] | None = None,
    run_id: str | None = None,
    round_number: int = 0,
) -> dict:
    """Re-evaluate real-time segments for changed consumers: the ids given (a cascade after a refresh), then
    what the pending set holds, at most SEGMENT_STREAM_MAX_PER_RUN consumers per run.

    Idempotent (it evaluates current state, so running twice changes nothing more) and bounded: with work left
    it re-queues itself, at most MEMBERSHIP_MAX_ROUNDS times in a row; the sweep picks up anything left.
    """
    outcome = UpdateOutcome()
    if consumer_ids:
        outcome.add(membership_update(consumer_ids=consumer_ids, change_input=change_input, segment_ids=segment_ids))
    run = run_id or self.request.id or "eager"
    drained, more = membership_drain(run_id=run)
    outcome.add(drained)
    if more:
        if round_number + 1 < MEMBERSHIP_MAX_ROUNDS:
            membership_drain_task.apply_async(kwargs={"run_id": run, "round_number": round_number + 1})
        else:
            logger.warning("segments.membership_drain_truncated", extra={"fields": {"round": round_number}})
    return {**outcome.as_dict(), "more": more, "round": round_number}


@shared_task(
    bind=True,
    name=MEMBERSHIP_SWEEP_TASK,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=RETRY_BACKOFF_SECONDS,
    retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=REFRESH_MAX_RETRIES,
)
def membership_sweep_task(self) -> dict:
    """Beat: re-evaluate consumers whose `within` windows lapsed since the last sweep, and finish the work of
    drains that died (their processing sets)."""
    outcome = membership_sweep()
    finished = 0
    for run in processing_orphans():
        drained, _more = membership_drain(run_id=run)
        outcome.add(drained)
        finished += 1
    # Whatever is pending without a drain on its way (the broker refused the enqueue, say) is not left waiting.
    drained, more = membership_drain(run_id=f"sweep-{self.request.id or 'eager'}")
    outcome.add(drained)
    if more:
        membership_drain_task.apply_async()
    return {**outcome.as_dict(), "orphans_finished": finished}


# The names these tasks had before they were named explicitly (module.function). Messages already queued under
# them, and beat rows not yet migrated, still run: each old name forwards to the task under its new name.
# Remove once no worker can hold such a message (one release after the rename).
legacy_refresh = legacy_task_alias("segments.tasks.segment_refresh_task", segment_refresh_task)
legacy_refresh_scheduled = legacy_task_alias(
    "segments.tasks.segment_refresh_scheduled_task", segment_refresh_scheduled_task
)
legacy_refresh_batch = legacy_task_alias("segments.tasks.segments_refresh_batch_task", segments_refresh_batch_task)
legacy_refresh_due = legacy_task_alias("segments.tasks.segments_refresh_due_task", segments_refresh_due_task)
