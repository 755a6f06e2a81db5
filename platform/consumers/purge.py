"""Retention: raw events older than the retention period are purged in bounded, audited rounds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction

from privacy.audit import audit_record

from .models import Event


@dataclass(frozen=True)
class PurgeRound:
    """What one round of an event purge did, and what should follow it once it commits."""

    cutoff: datetime
    round_number: int
    deleted: int  # this round
    total: int  # this run so far
    more: bool  # events past the cutoff remain
    requeue: bool  # another round of this run should follow
    retag: bool  # the run is over and deleted something: the event-derived tags need recomputing


def events_purge_batch(*, cutoff: datetime, batch_size: int) -> int:
    """Delete up to batch_size events older than cutoff, oldest ids first. Returns how many went."""
    ids = list(Event.objects.filter(occurred_at__lt=cutoff).order_by("pk").values_list("pk", flat=True)[:batch_size])
    if not ids:
        return 0
    deleted, _ = Event.objects.filter(pk__in=ids).delete()
    return deleted


def events_purge_expired_run(
    *,
    cutoff: datetime,
    round_number: int,
    deleted_before: int,
    batch_size: int,
    batches_per_task: int,
    max_rounds: int,
    actor: str,
) -> PurgeRound:
    """One round of a retention purge: at most `batches_per_task` batches and its audit entry, in one transaction.

    Says whether another round should follow (more to delete and fewer than `max_rounds` so far) or, when the
    run ends having deleted something, that the event-derived tags need recomputing; the caller acts on that
    after commit.
    """
    deleted = 0
    more = True
    with transaction.atomic():
        for _ in range(batches_per_task):
            n = events_purge_batch(cutoff=cutoff, batch_size=batch_size)
            deleted += n
            if n < batch_size:
                more = False
                break
        total = deleted_before + deleted
        requeue = more and round_number + 1 < max_rounds
        audit_record(
            actor=actor,
            action="retention.events_purged",
            object_type="Event",
            counts={"deleted": deleted, "deleted_this_run": total},
            details={
                "cutoff": cutoff.isoformat(),
                "retention_days": settings.EVENT_RETENTION_DAYS,
                "round": round_number,
                "batch_size": batch_size,
                "more_to_delete": more,
                "hard_limit_reached": more and not requeue,
            },
        )
    return PurgeRound(
        cutoff=cutoff,
        round_number=round_number,
        deleted=deleted,
        total=total,
        more=more,
        requeue=requeue,
        retag=not requeue and total > 0,
    )
