"""Celery entry point for the predicted traits. Thin: plain values in, predict.services does the work."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from django.db import InterfaceError, OperationalError

from privacy.services import ProcessingNotPermitted
from tags.services import tagging_refusal_record

from .services import predictions_compute

logger = logging.getLogger("dmp.predict")


@shared_task(
    bind=True,
    name="predict.compute",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=60,
    retry_backoff_max=1800,
    retry_jitter=True,
    max_retries=5,
    acks_late=True,
)
def predictions_compute_task(self, families: list[str] | None = None, as_of: str | None = None) -> dict:
    """Train, validate and band the predicted families. Idempotent: a retry recomputes the same bands.

    Database outages are retried with backoff; a refusal (no approved tagging basis) is recorded as a refused
    TaggingRun, where operators look for tagging runs, and not retried.
    """
    actor = "task:predict.compute"
    try:
        report = predictions_compute(
            actor=actor, families=families, as_of=datetime.fromisoformat(as_of) if as_of else None
        )
    except ProcessingNotPermitted as exc:
        tagging_refusal_record(actor=actor, families=families or ["predicted traits"], reason=str(exc))
        logger.warning("predict.compute_refused", extra={"fields": {"reason": exc.reason}})
        return {"status": "refused", "reason": exc.reason}
    return {"status": "succeeded", "run_id": report.run_id, "published": report.published, "cards": report.cards}
