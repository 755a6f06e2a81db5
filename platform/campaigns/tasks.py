"""Celery entry points: thin, taking ids. The work and its guarantees live in activation.py (and the modules it
drives) and services.py."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from celery.signals import worker_ready
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from .activation import StepOutcome, campaign_activation_step, campaign_fail, campaign_run_begin
from .services import campaign_occurrence_create, campaigns_resume_stalled

logger = logging.getLogger("dmp.campaigns")

# Each step works for at most this long, then re-queues itself: no task runs unbounded, and a
# worker shutdown or deploy loses at most one step's uncommitted batch.
STEP_TIME_BUDGET_S = 20.0
# A hard limit on the chain (a 10M audience needs well under a thousand steps).
MAX_STEPS = 5000
INTERNAL_ERROR_REASON = "The activation stopped on an internal error; it has been logged for the platform team."


class CampaignTask(Task):
    """Records the failure on the campaign once retries are exhausted, where the merchant sees it."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        campaign_id = args[0] if args else kwargs.get("campaign_id")
        logger.error(
            "campaign.task_failed",
            extra={"fields": {"campaign_id": campaign_id, "task": self.name, "error": type(exc).__name__}},
        )
        if campaign_id is not None:
            campaign_fail(campaign_id=campaign_id, reason=INTERNAL_ERROR_REASON, code="internal_error")


@shared_task(
    bind=True,
    base=CampaignTask,
    name="campaigns.activate",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
    acks_late=True,
)
def campaign_activate_task(self, campaign_id: int, run_token: int | None = None, step: int = 0) -> str:
    """Start (run_token None) or continue a campaign's activation; re-queues itself while work remains."""
    if run_token is None:
        run_token = campaign_run_begin(campaign_id=campaign_id)
        if run_token is None:
            return "not-startable"
    outcome = campaign_activation_step(campaign_id=campaign_id, run_token=run_token, time_budget_s=STEP_TIME_BUDGET_S)
    if outcome == StepOutcome.MORE:
        if step + 1 >= MAX_STEPS:
            campaign_fail(
                campaign_id=campaign_id,
                reason=f"The activation did not finish within {MAX_STEPS} steps and was stopped.",
                code="too_many_steps",
            )
            return "too-many-steps"
        campaign_activate_task.apply_async(args=(campaign_id, run_token, step + 1))
    return outcome.value


@shared_task(
    name="campaigns.forecast_freeze",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
    acks_late=True,
)
def campaign_forecast_freeze_task(campaign_id: int, like_campaign_id: int | None = None) -> bool:
    """Freeze the launched campaign's forecast once (idempotent: a redelivered task finds it frozen)."""
    from .uplift import campaign_forecast_freeze

    return campaign_forecast_freeze(campaign_id=campaign_id, like_campaign_id=like_campaign_id) is not None


@shared_task(name="campaigns.occurrence", acks_late=True)
def campaign_occurrence_task(series_id: int) -> int | None:
    """Beat's tick for a recurring campaign: create this occurrence and start it."""
    child = campaign_occurrence_create(series_id=series_id, at=timezone.now())
    return child.pk if child else None


@shared_task(name="campaigns.resume_stalled", acks_late=True)
def campaigns_resume_stalled_task(min_idle_s: float = 60.0) -> int:
    """Beat runs this every minute; a starting worker runs it at once (a restart resumes from the DB)."""
    return campaigns_resume_stalled(min_idle_s=min_idle_s)


@worker_ready.connect
def _resume_on_worker_start(sender=None, **_kwargs) -> None:
    # A worker that starts after a crash picks up what the crashed one left: campaigns whose run
    # lock nobody holds. Ones another live worker is running keep their lock and are left alone.
    try:
        campaigns_resume_stalled_task.delay(0.0)
    except Exception:  # the broker may be briefly unavailable at start-up; beat will resume them
        logger.warning("campaign.resume_on_start_failed", exc_info=True)
