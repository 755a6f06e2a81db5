"""Celery entry points for training. Thin: they take plain values and call the service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from config.celery import legacy_task_alias
from privacy.services import ProcessingNotPermitted

from .memory import MemoryBudgetExceeded
from .services import recommender_train, training_config

logger = logging.getLogger("dmp.recommend")

# Stable task names: messages and beat rows refer to these.
TRAIN_TASK = "recommend.train"
TRAIN_SCHEDULED_TASK = "recommend.train_scheduled"


@shared_task(
    bind=True,
    name=TRAIN_TASK,
    autoretry_for=(DatabaseError, OSError),
    retry_backoff=30,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=3,
    acks_late=True,
)
def recommender_train_task(self, algorithm: str, params: dict | None = None, actor: str = "schedule") -> int | None:
    """Train one algorithm; returns the TrainingRun id (failed when over the memory budget), or None when refused
    for want of a legal basis."""
    config = training_config(algorithm=algorithm, params=params or {})
    try:
        run = recommender_train(config=config, actor=actor)
    except ProcessingNotPermitted as exc:
        # Not retried: nothing changes until a privacy officer approves an activity.
        logger.warning("recommend.training_refused", extra={"fields": {"algorithm": algorithm, "reason": exc.reason}})
        return None
    except MemoryBudgetExceeded as exc:
        # Not retried either: the run is recorded as failed with the message; it needs a larger budget.
        logger.warning(
            "recommend.training_refused",
            extra={"fields": {"algorithm": algorithm, "run": exc.run_id, "reason": "memory_budget"}},
        )
        return exc.run_id
    return run.pk


@shared_task(name=TRAIN_SCHEDULED_TASK, acks_late=True)
def recommender_train_scheduled() -> list[str]:
    """The beat entry: one task per configured algorithm, each retried on its own."""
    algorithms = settings.RECOMMEND_SCHEDULED_ALGORITHMS
    results = []
    for algorithm in algorithms:
        results.append(recommender_train_task.delay(algorithm, None, "schedule").id)
    return results


# The names these tasks had before they were named explicitly: queued messages under them still run (forwarded).
# Remove one release after the rename.
legacy_train = legacy_task_alias("recommend.tasks.recommender_train_task", recommender_train_task)
legacy_train_scheduled = legacy_task_alias("recommend.tasks.recommender_train_scheduled", recommender_train_scheduled)
