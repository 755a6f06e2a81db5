"""The activation as Celery runs it: eagerly here, and with a real worker on Redis that gets killed mid-launch."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from campaigns.activation import campaign_run_begin
from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, Group
from campaigns.tasks import campaign_activate_task, campaigns_resume_stalled_task

from .conftest import freeze_audience, make_campaign, make_consumers, record_consent


def test_the_task_chain_runs_a_prepared_campaign_to_completion(merchant, dm_approved, consented_consumers, settings):
    settings.CAMPAIGN_BATCH_SIZE = 30
    campaign = make_campaign(merchant)
    token = campaign_run_begin(campaign_id=campaign.pk)
    freeze_audience(campaign, consented_consumers)
    assert campaign_activate_task.delay(campaign.pk, token, 0).get() == "done"
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    assert Delivery.objects.filter(campaign=campaign).count() == 200


def test_a_second_start_message_does_nothing(merchant, dm_approved, consented_consumers):
    campaign = make_campaign(merchant)
    campaign_run_begin(campaign_id=campaign.pk)
    assert campaign_activate_task.delay(campaign.pk).get() == "not-startable"


def test_resume_leaves_recent_and_finished_campaigns_alone(merchant, dm_approved):
    make_campaign(merchant, status=CampaignStatus.COMPLETED)
    assert campaigns_resume_stalled_task.delay(60.0).get() == 0


def wait_for(predicate, *, timeout: float, interval: float = 0.02, what: str, worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}" + (f"\n{worker.log[-4000:]}" if worker else ""))


@pytest.fixture
def small_batches(monkeypatch):
    """Small batches in the worker process, so a kill lands in the middle of the run."""
    monkeypatch.setenv("CAMPAIGN_BATCH_SIZE", "250")


@pytest.mark.worker
def test_killing_the_worker_mid_launch_loses_and_doubles_nothing(
    small_batches, celery_worker_process, merchant, dm_approved
):
    ids = make_consumers(10_000)
    record_consent(ids)
    campaign = make_campaign(merchant)
    token = campaign_run_begin(campaign_id=campaign.pk)
    freeze_audience(campaign, ids)
    campaign_activate_task.delay(campaign.pk, token, 0)

    def progressed():
        c = Campaign.objects.get(pk=campaign.pk)
        return c if c.written_count >= 1000 else None

    at_kill = wait_for(progressed, timeout=120, what="the first batches", worker=celery_worker_process)
    celery_worker_process.stop(kill=True)  # SIGKILL, mid-batch: no clean shutdown, no ack
    at_kill.refresh_from_db()
    assert at_kill.status == CampaignStatus.RUNNING, "the run finished before the kill; use more consumers"
    assert at_kill.dispatched_count < at_kill.treatment_count

    celery_worker_process.start()  # resumes from the database state on start-up

    def finished():
        c = Campaign.objects.get(pk=campaign.pk)
        return c if c.status != CampaignStatus.RUNNING else None

    done = wait_for(finished, timeout=180, interval=0.2, what="the resumed run", worker=celery_worker_process)
    assert done.status == CampaignStatus.COMPLETED, done.failure_reason
    per_consumer = Counter(Delivery.objects.filter(campaign=campaign).values_list("consumer_id", flat=True))
    assert len(per_consumer) == len(ids) and set(per_consumer) == set(ids)  # none lost
    assert set(per_consumer.values()) == {1}  # none doubled
    treatment = Delivery.objects.filter(campaign=campaign, group=Group.TREATMENT)
    assert set(treatment.values_list("status", flat=True)) == {DeliveryStatus.DISPATCHED}
    assert done.written_count == len(ids)
    assert done.dispatched_count == treatment.count() == done.treatment_count
    assert done.run_token > token  # it was resumed under a new token
