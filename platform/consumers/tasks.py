"""Celery entry points of the consumers layer: risk scan and event retention.

Both are scheduled by django-celery-beat entries that a data migration
creates (editable in the admin); both are thin over their service.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import current_app, shared_task
from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from privacy.services import ProcessingNotPermitted

from .purge import events_purge_expired_run
from .risk import risk_scan

logger = logging.getLogger("dmp.consumers")

RISK_SCAN_TASK = "consumers.risk_scan"
EVENTS_PURGE_TASK = "consumers.events_purge_expired"

# Re-tagging after a purge is the tags layer's job. Consumers (layer 2) cannot import tags (layer 3), so the
# task is called by name: tags/tasks.py registers it under this name and takes `families`.
RETAG_TASK = "tags.compute"
# The tag families computed from events (the profile families age_range and country do not change).
EVENT_DERIVED_TAG_FAMILIES = (
    "interest",
    "discount_sensitivity",
    "loyalty_store",
    "loyalty_brand",
    "rfm",
    "lifecycle",
    "persona",
)


def purge_batch_size() -> int:
    return settings.RETENTION_PURGE_BATCH


def purge_batches_per_task() -> int:
    return settings.RETENTION_PURGE_BATCHES_PER_TASK


def purge_max_rounds() -> int:
    """How many times one run may re-queue itself; the next scheduled run carries on after that."""
    return settings.RETENTION_PURGE_MAX_ROUNDS


@shared_task(name=RISK_SCAN_TASK, autoretry_for=(OperationalError, IntegrityError), retry_backoff=True, max_retries=5)
def risk_scan_task() -> dict:
    try:
        result = risk_scan(actor=f"task:{RISK_SCAN_TASK}")
    except ProcessingNotPermitted as exc:
        # Refusing is the intended outcome without an approved activity: visible in the log, nothing written.
        logger.warning("risk_scan.refused", extra={"fields": {"reason": exc.reason}})
        return {"refused": exc.reason}
    return {"findings": result.findings, **result.counts}


def enqueue_by_name(name: str, kwargs: dict) -> bool:
    """Send a task another layer defines, without importing it.

    Uses the registered task where this process knows it (so eager mode runs it
    in-process); otherwise sends it to the broker by name. With no broker and
    no such task there is nowhere to send it: logged and skipped.
    """
    app = current_app
    app.loader.import_default_modules()
    task = app.tasks.get(name)
    if task is not None:
        task.apply_async(kwargs=kwargs)
        return True
    if app.conf.task_always_eager:
        logger.warning("task.not_registered", extra={"fields": {"task": name}})
        return False
    app.send_task(name, kwargs=kwargs)
    return True


@shared_task(name=EVENTS_PURGE_TASK, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def events_purge_expired(
    cutoff: str | None = None,
    round_number: int = 0,
    deleted_before: int = 0,
    batch_size: int | None = None,
    batches_per_task: int | None = None,
    max_rounds: int | None = None,
) -> dict:
    """Delete events older than EVENT_RETENTION_DAYS, in bounded batches.

    One invocation deletes at most `batches_per_task` batches of `batch_size`
    events (settings RETENTION_PURGE_BATCHES_PER_TASK, RETENTION_PURGE_BATCH)
    and its audit entry in one transaction (events_purge_expired_run), then re-queues itself after commit
    while there is more, at most `max_rounds` times (RETENTION_PURGE_MAX_ROUNDS);
    the next scheduled run carries on from there. The cutoff and the bounds are
    fixed at the first round and passed along, so one run has one meaning. When
    the run ends, the event-derived tag families are re-tagged once.
    """
    cutoff_at = (
        datetime.fromisoformat(cutoff) if cutoff else timezone.now() - timedelta(days=settings.EVENT_RETENTION_DAYS)
    )
    batch_size = batch_size or purge_batch_size()
    batches_per_task = batches_per_task or purge_batches_per_task()
    max_rounds = max_rounds or purge_max_rounds()
    with transaction.atomic():
        result = events_purge_expired_run(
            cutoff=cutoff_at,
            round_number=round_number,
            deleted_before=deleted_before,
            batch_size=batch_size,
            batches_per_task=batches_per_task,
            max_rounds=max_rounds,
            actor=f"task:{EVENTS_PURGE_TASK}",
        )
        if result.requeue:
            kwargs = {
                "cutoff": cutoff_at.isoformat(),
                "round_number": round_number + 1,
                "deleted_before": result.total,
                "batch_size": batch_size,
                "batches_per_task": batches_per_task,
                "max_rounds": max_rounds,
            }
            transaction.on_commit(lambda: events_purge_expired.apply_async(kwargs=kwargs))
        elif result.retag:
            retag = {"families": list(EVENT_DERIVED_TAG_FAMILIES)}
            transaction.on_commit(lambda: enqueue_by_name(RETAG_TASK, retag))
    logger.info(
        "retention.events_purged",
        extra={
            "fields": {"round": round_number, "deleted": result.deleted, "total": result.total, "more": result.more}
        },
    )
    return {"deleted": result.deleted, "total": result.total, "round": round_number, "requeued": result.requeue}
