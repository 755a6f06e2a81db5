"""Previews as a chosen sample consumer, and test sends to the operator's test inbox."""

from __future__ import annotations

import pytest

from campaigns.inbox import inbox_messages_take
from campaigns.models import Campaign, Delivery, Group
from campaigns.preview import PREVIEW_SAMPLES, message_preview, preview_samples
from campaigns.selectors import campaign_funnels
from campaigns.testsend import campaign_test_send
from consumers.models import Consumer
from merchants.errors import Conflict
from privacy.models import AuditEntry

from .conftest import make_consumers, record_consent
from .test_api import URL, create


def _preview(world, segment, sample):
    return message_preview(
        merchant_id=world.merchant.pk,
        store_name="Shop",
        title_template="Hi from {store_name}",
        body_template="Look",
        coupon_code="",
        discount_percent=None,
        personalised_products=0,
        segment_ids=[segment.pk],
        sample=sample,
    )


def test_samples_are_a_few_reachable_members_chosen_by_index(world):
    segment = world.segment("SG", "country:SG")
    samples = preview_samples(merchant_id=world.merchant.pk, segment_ids=[segment.pk], with_offer=False)
    assert len(samples) == PREVIEW_SAMPLES and set(samples) <= set(world.ids[:200])
    assert samples == preview_samples(merchant_id=world.merchant.pk, segment_ids=[segment.pk], with_offer=False)
    assert _preview(world, segment, 3).sample == 3
    assert _preview(world, segment, 99).sample == PREVIEW_SAMPLES  # clamped to the samples there are
    assert _preview(world, segment, 1).message.title == "Hi from Shop"


def test_no_samples_from_a_group_smaller_than_the_minimum(world):
    small = world.segment("MY", "country:MY")  # 100 consumers, 50 of them consented: under MIN_AUDIENCE
    assert preview_samples(merchant_id=world.merchant.pk, segment_ids=[small.pk], with_offer=False) == []
    assert _preview(world, small, 2).sample is None


@pytest.fixture
def test_inbox(settings, db):
    [consumer_id] = make_consumers(1, start=900_000)
    record_consent([consumer_id])
    consumer = Consumer.objects.get(pk=consumer_id)
    settings.CAMPAIGN_TEST_INBOX_PSEUDONYM = consumer.pseudonym
    return consumer


def test_a_test_send_reaches_only_the_test_inbox_and_is_never_counted(
    merchant_client, world, test_inbox, django_capture_on_commit_callbacks
):
    created = create(merchant_client, world)
    campaign = Campaign.objects.get(pk=created["id"])
    delivery = campaign_test_send(campaign=campaign, actor="user:1", sample=2)
    again = campaign_test_send(campaign=campaign, actor="user:1", sample=2)
    assert delivery.pk == again.pk and delivery.group == Group.TEST  # one test delivery per campaign
    assert list(Delivery.objects.filter(campaign=campaign).values_list("consumer_id", flat=True)) == [test_inbox.pk]
    assert AuditEntry.objects.filter(action="campaign.test_sent", object_id=str(campaign.pk)).count() == 2
    [message] = inbox_messages_take(pseudonym=test_inbox.pseudonym)
    assert message.campaign_id == campaign.pk and "has something for you" in message.title
    funnels = campaign_funnels(campaign)
    assert funnels[Group.TREATMENT].size == 0 and funnels[Group.CONTROL].size == 0
    # Launching afterwards sends the real campaign; the report still counts only the real groups.
    with django_capture_on_commit_callbacks(execute=True):
        merchant_client.post(f"{URL}{campaign.pk}/launch")
    campaign.refresh_from_db()
    funnels = campaign_funnels(campaign)
    assert funnels[Group.TREATMENT].size + funnels[Group.CONTROL].size == campaign.audience_count == 200


def test_test_sends_need_a_test_inbox_that_may_be_messaged(merchant_client, world, settings):
    created = create(merchant_client, world)
    campaign = Campaign.objects.get(pk=created["id"])
    settings.CAMPAIGN_TEST_INBOX_PSEUDONYM = ""
    with pytest.raises(Conflict, match="not set up"):
        campaign_test_send(campaign=campaign, actor="user:1")
    [no_consent] = make_consumers(1, start=910_000)
    settings.CAMPAIGN_TEST_INBOX_PSEUDONYM = Consumer.objects.get(pk=no_consent).pseudonym
    with pytest.raises(Conflict, match="test message was not sent"):
        campaign_test_send(campaign=campaign, actor="user:1")
    assert not Delivery.objects.filter(campaign=campaign).exists()
