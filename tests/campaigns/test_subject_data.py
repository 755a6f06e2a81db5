from django.utils import timezone
from pyroaring import BitMap

from campaigns.activation import campaign_run_begin
from campaigns.models import CampaignAudience, Delivery, Group, TrackingEvent
from privacy.subject_data import handlers

from .conftest import freeze_audience, make_campaign, make_consumers, record_consent, run_activation


def campaigns_handler():
    [handler] = [h for h in handlers() if h.name == "campaigns"]
    return handler


def test_access_lists_the_consumers_messages_with_tracking(merchant, dm_approved, consented_consumers):
    campaign = run_activation(make_campaign(merchant), consented_consumers)
    delivery = Delivery.objects.filter(campaign=campaign, group=Group.TREATMENT).first()
    TrackingEvent.objects.create(delivery=delivery, kind="opened", occurred_at=timezone.now(), idempotency_key="o")
    handler = campaigns_handler()
    assert handler.layer == 6
    [item] = handler.access(delivery.consumer_id)
    assert item["campaign"] == "Spring sale" and item["store"] == "Acme Outdoor"
    assert item["status"] == "dispatched" and item["dispatched_at"]
    assert [t["kind"] for t in item["tracking"]] == ["opened"]


def test_erase_deletes_deliveries_tracking_and_in_flight_audience_membership(
    merchant, dm_approved, consented_consumers
):
    done = run_activation(make_campaign(merchant), consented_consumers)
    delivery = Delivery.objects.filter(campaign=done, group=Group.TREATMENT).first()
    consumer_id = delivery.consumer_id
    TrackingEvent.objects.create(delivery=delivery, kind="opened", occurred_at=timezone.now(), idempotency_key="o")
    in_flight = make_campaign(merchant, name="In flight")
    campaign_run_begin(campaign_id=in_flight.pk)
    freeze_audience(in_flight, consented_consumers)

    counts = campaigns_handler().erase(consumer_id)
    assert counts == {"deliveries": 1, "tracking_events": 1, "audiences_in_flight": 1}
    assert not Delivery.objects.filter(consumer_id=consumer_id).exists()
    members = BitMap.deserialize(bytes(CampaignAudience.objects.get(campaign=in_flight).members))
    assert consumer_id not in members and len(members) == len(consented_consumers) - 1
    assert campaigns_handler().access(consumer_id) == []


def test_access_for_someone_never_targeted_is_empty(db):
    [consumer_id] = make_consumers(1)
    record_consent([consumer_id])
    assert campaigns_handler().access(consumer_id) == []
