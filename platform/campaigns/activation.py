"""Activation: resolve the audience, write one delivery per consumer, dispatch, in bounded resumable batches.

An activation runs as a chain of steps (campaigns.tasks.campaign_activate_task). Each step

1. takes a PostgreSQL session advisory lock on the campaign, so at most one step works on it at
   a time (a killed worker's connection closes and PostgreSQL frees its lock at once);
2. checks its run token against the campaign's, so a step superseded by a resume skips itself;
3. re-checks the direct-marketing processing basis (a suspended activity stops the sends);
4. advances the campaign one batch at a time until its time budget is spent: resolving the
   audience once (frozen as a bitmap, with the launch audit entry, in one transaction), then
   writing deliveries from `write_cursor`, then dispatching from `dispatch_cursor`.

Every batch commits its rows, its cursor and its progress counters in one transaction, so a
crash at any point either keeps a whole batch or none of it, and the next step carries on
from the last committed cursor. UNIQUE (campaign, consumer) and the conditional status updates
(pending → dispatched) make a repeated batch harmless: nobody is written or sent twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum

from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from privacy.audit import audit_record
from privacy.services import ProcessingBasis

from .audience import SegmentMembers, audience_resolve, campaign_audience_freeze, campaign_segment_members
from .basis import ActivationRefused, direct_marketing_basis, personalisation_basis_check
from .deliveries import Superseded, deliveries_write_batch, run_context
from .dispatch import deliveries_dispatch_batch
from .models import (
    Campaign,
    CampaignAudience,
    CampaignStatus,
    Channel,
    Delivery,
    DeliveryStatus,
    Phase,
)

logger = logging.getLogger("dmp.campaigns")

# A two-key advisory lock (namespace, campaign id) guards one campaign's steps.
RUN_LOCK_NAMESPACE = 7_320_552

ERROR_CANCELLED = "not sent: the campaign was cancelled"


# --- locks -----------------------------------------------------------------------------------------


def _lock_key(campaign_id: int) -> int:
    return campaign_id % 2_147_483_647


@contextmanager
def campaign_run_lock(campaign_id: int) -> Iterator[bool]:
    """Yield True when this process may work on the campaign now (nobody else holds its lock)."""
    if connection.vendor != "postgresql":  # the embedded mode runs one process with eager tasks
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RUN_LOCK_NAMESPACE, _lock_key(campaign_id)])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK_NAMESPACE, _lock_key(campaign_id)])
            except DatabaseError:  # a broken connection has released the lock already
                logger.warning("campaign.lock_release_failed", extra={"fields": {"campaign_id": campaign_id}})


# --- the step ---------------------------------------------------------------------------------------


class StepOutcome(Enum):
    MORE = "more"  # budget spent, work remains: enqueue the next step
    DONE = "done"  # completed, failed or cancelled
    BUSY = "busy"  # another worker holds the campaign right now
    SUPERSEDED = "superseded"  # a newer run token took over, or the campaign is not running


def campaign_run_begin(*, campaign_id: int) -> int | None:
    """scheduled → running, with a new run token; None when the campaign is not waiting to start."""
    now = timezone.now()
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if campaign is None or campaign.status != CampaignStatus.SCHEDULED or campaign.is_series:
            return None
        campaign.status = CampaignStatus.RUNNING
        campaign.phase = Phase.RESOLVING
        campaign.started_at = now
        campaign.heartbeat_at = now
        campaign.run_token += 1
        campaign.save(update_fields=["status", "phase", "started_at", "heartbeat_at", "run_token", "updated_at"])
    logger.info("campaign.started", extra={"fields": {"campaign_id": campaign_id}})
    return campaign.run_token


MembersSource = Callable[..., tuple[list[SegmentMembers], list[SegmentMembers]]]


def campaign_activation_step(
    *,
    campaign_id: int,
    run_token: int,
    time_budget_s: float,
    actor: str = "task:campaigns.activate",
    members_source: MembersSource = campaign_segment_members,
) -> StepOutcome:
    """Advance a running campaign by as many batches as fit in the time budget.

    `members_source(campaign=, actor=)` gives the included and excluded segments' fresh members;
    the default refreshes the campaign's segments (tests may pass the bitmaps instead).
    """
    with campaign_run_lock(campaign_id) as acquired:
        if not acquired:
            return StepOutcome.BUSY
        campaign = Campaign.objects.select_related("merchant").filter(pk=campaign_id).first()
        if campaign is None or campaign.run_token != run_token:
            return StepOutcome.SUPERSEDED
        if campaign.status == CampaignStatus.CANCELLED:
            campaign_stop_pending(campaign_id=campaign_id, status=DeliveryStatus.WITHDRAWN, reason=ERROR_CANCELLED)
            return StepOutcome.DONE
        if campaign.status != CampaignStatus.RUNNING:
            return StepOutcome.SUPERSEDED
        Campaign.objects.filter(pk=campaign_id).update(steps=F("steps") + 1, heartbeat_at=timezone.now())
        deadline = time.monotonic() + time_budget_s
        try:
            basis = direct_marketing_basis()
            personalisation_basis_check(campaign)
            if campaign.phase in (Phase.NONE, Phase.RESOLVING):
                include, exclude = members_source(campaign=campaign, actor=actor)
                resolution = audience_resolve(campaign=campaign, include=include, exclude=exclude, now=timezone.now())
                campaign = campaign_audience_freeze(
                    campaign_id=campaign_id, resolution=resolution, basis=basis, actor=campaign.launched_by or actor
                )
                campaign = Campaign.objects.select_related("merchant").get(pk=campaign_id)
            ctx = run_context(campaign)
            while True:
                if campaign.phase == Phase.WRITING:
                    if not deliveries_write_batch(ctx=ctx, run_token=run_token):
                        Campaign.objects.filter(pk=campaign_id, run_token=run_token).update(phase=Phase.DISPATCHING)
                        campaign.phase = Phase.DISPATCHING
                elif campaign.phase == Phase.DISPATCHING:
                    if not deliveries_dispatch_batch(ctx=ctx, run_token=run_token):
                        campaign_complete(campaign_id=campaign_id, run_token=run_token, basis=basis)
                        return StepOutcome.DONE
                else:
                    return StepOutcome.SUPERSEDED
                if time.monotonic() >= deadline:
                    return StepOutcome.MORE
        except Superseded:
            return _after_superseded(campaign_id)
        except ActivationRefused as exc:
            campaign_fail(campaign_id=campaign_id, reason=exc.reason, code=exc.code)
            return StepOutcome.DONE


def _after_superseded(campaign_id: int) -> StepOutcome:
    status = Campaign.objects.filter(pk=campaign_id).values_list("status", flat=True).first()
    if status == CampaignStatus.CANCELLED:
        campaign_stop_pending(campaign_id=campaign_id, status=DeliveryStatus.WITHDRAWN, reason=ERROR_CANCELLED)
        return StepOutcome.DONE
    return StepOutcome.SUPERSEDED


def campaign_complete(*, campaign_id: int, run_token: int, basis: ProcessingBasis) -> None:
    now = timezone.now()
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != CampaignStatus.RUNNING or campaign.run_token != run_token:
            return
        campaign.status = CampaignStatus.COMPLETED
        campaign.phase = Phase.DONE
        campaign.completed_at = now
        campaign.heartbeat_at = now
        campaign.save(update_fields=["status", "phase", "completed_at", "heartbeat_at", "updated_at"])
        CampaignAudience.objects.filter(campaign_id=campaign_id).delete()
        audit_record(
            actor="task:campaigns.activate",
            action="campaign.completed",
            merchant_id=campaign.merchant_id,
            purpose=basis.purpose,
            legal_basis=basis.legal_basis,
            activity_id=basis.activity_id,
            object_type="Campaign",
            object_id=campaign.pk,
            counts=campaign_counts(campaign),
        )
    logger.info("campaign.completed", extra={"fields": {"campaign_id": campaign_id, **campaign_counts(campaign)}})


def campaign_counts(campaign: Campaign) -> dict[str, int]:
    return {
        "audience": campaign.audience_count,
        "treatment": campaign.treatment_count,
        "control": campaign.control_count,
        "personalised": campaign.personalised_count,
        "written": campaign.written_count,
        "dispatched": campaign.dispatched_count,
        "withdrawn": campaign.withdrawn_count,
        "failed": campaign.failed_count,
    }


def campaign_stop_pending(*, campaign_id: int, status: str, reason: str, include_unread_inbox: bool = False) -> int:
    """Mark every message not yet sent (and, on cancel, not yet read from the inbox) as not sent."""
    with transaction.atomic():
        Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        pending = Delivery.objects.filter(campaign_id=campaign_id, status=DeliveryStatus.PENDING)
        stopped = pending.update(status=status, last_error=reason)
        unread = 0
        if include_unread_inbox:
            unread = Delivery.objects.filter(
                campaign_id=campaign_id,
                campaign__channel=Channel.INBOX,
                status=DeliveryStatus.DISPATCHED,
                delivered_at__isnull=True,
            ).update(status=status, last_error=reason)
        counter = "failed_count" if status == DeliveryStatus.FAILED else "withdrawn_count"
        Campaign.objects.filter(pk=campaign_id).update(
            **{counter: F(counter) + stopped + unread},
            dispatched_count=F("dispatched_count") - unread,
        )
        CampaignAudience.objects.filter(campaign_id=campaign_id).delete()
    return stopped + unread


def campaign_fail(*, campaign_id: int, reason: str, code: str = "failed") -> None:
    """running/scheduled → failed with a reason the merchant can read; pending messages are not sent."""
    now = timezone.now()
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if campaign is None or campaign.status not in (CampaignStatus.SCHEDULED, CampaignStatus.RUNNING):
            return
        campaign.status = CampaignStatus.FAILED
        campaign.failure_reason = reason
        campaign.completed_at = now
        campaign.save(update_fields=["status", "failure_reason", "completed_at", "updated_at"])
        campaign_stop_pending(campaign_id=campaign_id, status=DeliveryStatus.FAILED, reason=f"not sent: {reason}"[:500])
    logger.warning("campaign.failed", extra={"fields": {"campaign_id": campaign_id, "code": code}})
