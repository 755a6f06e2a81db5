"""Celery entry points for tagging. Thin: they take plain values and call tags.services."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from django.db import InterfaceError, OperationalError

from privacy.services import ProcessingNotPermitted

from .services import tagging_refusal_record, tags_compute

logger = logging.getLogger("dmp.tags")


@shared_task(
    bind=True,
    name="tags.compute",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=60,
    retry_backoff_max=1800,
    retry_jitter=True,
    max_retries=5,
    acks_late=True,
)
def tags_compute_task(self, families: list[str] | None = None, as_of: str | None = None) -> dict:
    """Compute tags (all families, or those named). Idempotent: a retry or a duplicate recomputes the same tags.

    Database outages are retried with exponential backoff; a refusal (no
    approved tagging basis) is recorded as a refused TaggingRun and not
    retried; any other failure is recorded on its TaggingRun by the service.
    """
    actor = "task:tags.compute"
    try:
        report = tags_compute(families=families, actor=actor, as_of=datetime.fromisoformat(as_of) if as_of else None)
    except ProcessingNotPermitted as exc:
        tagging_refusal_record(actor=actor, families=families, reason=str(exc))
        logger.warning("tags.compute_refused", extra={"fields": {"reason": exc.reason}})
        return {"status": "refused", "reason": exc.reason}
    return {"status": "succeeded", **report.as_dict()}
