"""The webhook channel against a real local HTTP server that verifies signatures as an operator would."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from campaigns.models import CampaignStatus, Channel, Delivery, DeliveryStatus, Group
from campaigns.webhook import (
    webhook_post,
    webhook_signature,
    webhook_signature_valid,
)
from tests.webhook_receiver import SECRET

from .conftest import make_campaign, run_activation


def test_signature_covers_timestamp_and_body():
    body = b'{"a":1}'
    signature = webhook_signature(secret=SECRET, timestamp="1700000000", body=body)
    assert signature.startswith("sha256=")
    assert webhook_signature_valid(
        secret=SECRET, timestamp="1700000000", body=body, signature=signature, now=1700000010
    )
    assert not webhook_signature_valid(
        secret=SECRET, timestamp="1700000000", body=b'{"a":2}', signature=signature, now=1700000010
    )
    assert not webhook_signature_valid(
        secret=SECRET, timestamp="1700000001", body=body, signature=signature, now=1700000010
    )
    # a replay long after the fact is refused even with a correct signature
    assert not webhook_signature_valid(
        secret=SECRET, timestamp="1700000000", body=body, signature=signature, now=1700000000 + 3600
    )


def test_the_local_server_verifies_every_signed_post(receiver):
    result = webhook_post({"hello": "world"})
    assert result.ok and result.attempts == 1
    assert receiver.bad_signatures == 0 and receiver.requests == [{"hello": "world"}]


def test_a_wrongly_signed_request_is_rejected_by_the_receiver(receiver, settings):
    settings.OPERATOR_WEBHOOK_SECRET = "not-the-operators-secret"
    result = webhook_post({"x": 1})
    assert not result.ok and "HTTP 401" in result.error
    assert receiver.bad_signatures == 1 and result.attempts == 1  # a 401 is not retried


def test_transient_failures_are_retried_with_backoff(receiver):
    receiver.fail_next = 2
    result = webhook_post({"x": 1})
    assert result.ok and result.attempts == 3


def test_webhook_campaign_sends_each_message_once_signed(
    merchant, dm_approved, consented_consumers, receiver, settings
):
    settings.CAMPAIGN_WEBHOOK_BATCH_SIZE = 40
    receiver.fail_next = 1  # the first request is retried once
    campaign = run_activation(
        make_campaign(merchant, channel=Channel.WEBHOOK, coupon_code="SPRING", body_template="{offer}"),
        consented_consumers,
    )
    assert campaign.status == CampaignStatus.COMPLETED
    treatment = Delivery.objects.filter(campaign=campaign, group=Group.TREATMENT)
    assert sorted(receiver.delivery_ids) == sorted(treatment.values_list("pk", flat=True))
    assert set(Counter(receiver.delivery_ids).values()) == {1}
    assert receiver.bad_signatures == 0
    message = receiver.requests[0]["messages"][0]
    assert message["body"] == "code SPRING" and message["coupon_code"] == "SPRING"
    assert len(message["consumer"]) == 64  # the consumer's pseudonym, never a raw identifier
    assert set(treatment.values_list("status", flat=True)) == {DeliveryStatus.DISPATCHED}
    assert treatment.filter(delivered_at__isnull=True).count() == 0
    assert sorted(set(treatment.values_list("attempts", flat=True))) == [1, 2]


def test_webhook_failures_are_recorded_on_deliveries_and_the_campaign(
    merchant, dm_approved, consented_consumers, receiver, settings
):
    settings.CAMPAIGN_WEBHOOK_ATTEMPTS = 3
    receiver.always_status = 500
    campaign = run_activation(
        make_campaign(merchant, channel=Channel.WEBHOOK, control_share=Decimal("0")), consented_consumers
    )
    assert campaign.status == CampaignStatus.FAILED
    assert "did not accept the messages: HTTP 500" in campaign.failure_reason
    deliveries = Delivery.objects.filter(campaign=campaign)
    assert set(deliveries.values_list("status", flat=True)) == {DeliveryStatus.FAILED}
    first_batch = deliveries.filter(attempts=3)
    assert first_batch.exists()
    assert "HTTP 500" in first_batch.first().last_error and "gave up after 3 attempts" in first_batch.first().last_error
    assert campaign.failed_count == 200 and campaign.dispatched_count == 0


def _webhook_campaign_written(merchant, consumers):
    """A webhook campaign whose deliveries are written for `consumers` and which is about to dispatch: (campaign,
    its run token)."""
    from campaigns.activation import campaign_run_begin
    from campaigns.deliveries import deliveries_write_batch, run_context
    from campaigns.models import Campaign, Phase

    from .conftest import freeze_audience

    campaign = make_campaign(merchant, channel=Channel.WEBHOOK, control_share=Decimal("0"))
    token = campaign_run_begin(campaign_id=campaign.pk)
    freeze_audience(campaign, consumers)
    ctx = run_context(Campaign.objects.select_related("merchant").get(pk=campaign.pk))
    while deliveries_write_batch(ctx=ctx, run_token=token):
        pass
    Campaign.objects.filter(pk=campaign.pk).update(phase=Phase.DISPATCHING)
    return campaign, token


def test_a_withdrawal_before_dispatch_keeps_the_message_off_the_webhook(
    merchant, dm_approved, consented_consumers, receiver
):

    from .conftest import run_steps, withdraw_consent

    campaign, token = _webhook_campaign_written(merchant, consented_consumers)
    withdraw_consent(consented_consumers[:7])
    run_steps(campaign, token)
    withdrawn = Delivery.objects.filter(campaign=campaign, consumer_id__in=consented_consumers[:7])
    assert set(withdrawn.values_list("status", flat=True)) == {DeliveryStatus.WITHDRAWN}
    assert set(receiver.delivery_ids).isdisjoint(withdrawn.values_list("pk", flat=True))
    assert len(receiver.delivery_ids) == len(consented_consumers) - 7


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_claimers_never_post_a_campaign_message_twice_however_long_a_dispatch_takes(
    merchant, dm_approved, consented_consumers, receiver, settings, monkeypatch
):
    """Unlike a journey's messages (a lease until a time), a campaign's dispatch is held by its run lock, a session
    lock that lasts as long as the worker's connection: while one worker is still posting, however long that
    takes, the sweep does not resume the campaign and another worker's step does not claim it."""
    import threading

    from django.db import connection

    from campaigns import dispatch
    from campaigns.activation import StepOutcome, campaign_activation_step
    from campaigns.services import campaigns_resume_stalled

    from .conftest import run_steps

    settings.CAMPAIGN_WEBHOOK_BATCH_SIZE = 40  # five POSTs
    campaign, token = _webhook_campaign_written(merchant, consented_consumers)
    real_post = dispatch.webhook_post
    second: list = []

    def other_worker():  # another process: its own connection
        try:
            second.append(campaigns_resume_stalled(min_idle_s=0))  # the campaign's heartbeat is older than that
            second.append(campaign_activation_step(campaign_id=campaign.pk, run_token=token, time_budget_s=60))
        finally:
            connection.close()

    def slow_post(payload, **kwargs):
        result = real_post(payload, **kwargs)
        if not second:  # while the first worker is still posting its batch
            thread = threading.Thread(target=other_worker)
            thread.start()
            thread.join()
        return result

    monkeypatch.setattr(dispatch, "webhook_post", slow_post)
    assert run_steps(campaign, token) == StepOutcome.DONE

    assert second == [0, StepOutcome.BUSY]
    deliveries = Delivery.objects.filter(campaign=campaign)
    assert sorted(receiver.delivery_ids) == sorted(deliveries.values_list("pk", flat=True))  # each posted once
    assert set(deliveries.values_list("status", flat=True)) == {DeliveryStatus.DISPATCHED}
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED and campaign.dispatched_count == len(consented_consumers)
