"""The activation as Celery runs it: eagerly here, and with a real worker on Redis that gets killed mid-launch."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from campaigns.activation import campaign_run_begin
from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from campaigns.tasks import campaign_activate_task, campaigns_resume_stalled_task

from .conftest import freeze_audience, make_campaign


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
def test_killing_the_worker_in_the_middle_of_a_launch_loses_and_doubles_nothing(
    small_batches, celery_worker_process, merchant, approve_activity
):
    """Launched through the service: the worker refreshes the segment, resolves, writes and dispatches;
    it is killed (SIGKILL) while writing, a new worker resumes from the database."""
    from campaigns.services import campaign_create, campaign_launch
    from privacy.models import Purpose

    from .conftest import SegmentWorld

    approve_activity(Purpose.DIRECT_MARKETING)
    approve_activity(Purpose.TAGGING)
    world = SegmentWorld(merchant, sg=10_000, my=0, consented=10_000)
    segment = world.segment("Everyone in SG", "country:SG")
    campaign = campaign_create(
        merchant=merchant,
        actor="apikey:test",
        name="Big launch",
        include_segment_ids=[segment.pk],
        title_template="Hello from {store_name}",
        body_template="New in.",
        personalised_products=0,
    )
    campaign_launch(campaign=campaign, actor="apikey:test")  # enqueued on commit, to the real broker

    def progressed():
        c = Campaign.objects.get(pk=campaign.pk)
        return c if c.written_count >= 1000 else None

    at_kill = wait_for(progressed, timeout=120, what="the first batches", worker=celery_worker_process)
    celery_worker_process.stop(kill=True)
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
    assert set(per_consumer) == set(world.ids)  # every audience member, none lost
    assert set(per_consumer.values()) == {1}  # none doubled
    assert done.dispatched_count == Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.DISPATCHED).count()
    assert done.dispatched_count == done.treatment_count
    assert done.written_count == len(world.ids)
    assert done.run_token > at_kill.run_token  # resumed under a new token
