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

from privacy.audit import audit_record
from privacy.services import ProcessingNotPermitted

from .models import Event
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
    return int(getattr(settings, "RETENTION_PURGE_BATCH", 5000))


def purge_batches_per_task() -> int:
    return int(getattr(settings, "RETENTION_PURGE_BATCHES_PER_TASK", 20))


def purge_max_rounds() -> int:
    """How many times one run may re-queue itself; the next scheduled run carries on after that."""
    return int(getattr(settings, "RETENTION_PURGE_MAX_ROUNDS", 50))


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


def events_purge_batch(*, cutoff: datetime, batch_size: int) -> int:
    """Delete up to batch_size events older than cutoff, oldest ids first. Returns how many went."""
    ids = list(Event.objects.filter(occurred_at__lt=cutoff).order_by("pk").values_list("pk", flat=True)[:batch_size])
    if not ids:
        return 0
    deleted, _ = Event.objects.filter(pk__in=ids).delete()
    return deleted


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
    and its audit entry in one transaction, then re-queues itself after commit
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
    deleted = 0
    more = True
    with transaction.atomic():
        for _ in range(batches_per_task):
            n = events_purge_batch(cutoff=cutoff_at, batch_size=batch_size)
            deleted += n
            if n < batch_size:
                more = False
                break
        total = deleted_before + deleted
        next_round = round_number + 1
        requeue = more and next_round < max_rounds
        audit_record(
            actor=f"task:{EVENTS_PURGE_TASK}",
            action="retention.events_purged",
            object_type="Event",
            counts={"deleted": deleted, "deleted_this_run": total},
            details={
                "cutoff": cutoff_at.isoformat(),
                "retention_days": settings.EVENT_RETENTION_DAYS,
                "round": round_number,
                "batch_size": batch_size,
                "more_to_delete": more,
                "hard_limit_reached": more and not requeue,
            },
        )
        if requeue:
            kwargs = {
                "cutoff": cutoff_at.isoformat(),
                "round_number": next_round,
                "deleted_before": total,
                "batch_size": batch_size,
                "batches_per_task": batches_per_task,
                "max_rounds": max_rounds,
            }
            transaction.on_commit(lambda: events_purge_expired.apply_async(kwargs=kwargs))
        elif total:
            retag = {"families": list(EVENT_DERIVED_TAG_FAMILIES)}
            transaction.on_commit(lambda: enqueue_by_name(RETAG_TASK, retag))
    logger.info(
        "retention.events_purged",
        extra={"fields": {"round": round_number, "deleted": deleted, "total": total, "more": more}},
    )
    return {"deleted": deleted, "total": total, "round": round_number, "requeued": requeue}
