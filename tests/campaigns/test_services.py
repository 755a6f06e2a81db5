from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.models import Delivery, DeliveryStatus, Group, TrackingEvent
from campaigns.services import (
    InvalidCursor,
    TrackingInput,
    campaign_audience_export,
    inbox_messages_take,
    tracking_events_record,
)
from consumers.models import Consumer
from merchants.errors import Conflict, Invalid
from privacy.models import AuditEntry, Suppression, SuppressionReason
from privacy.pseudonyms import merchant_pseudonym

from .conftest import make_campaign, run_activation, withdraw_consent


@pytest.fixture
def sent_campaign(merchant, dm_approved, consented_consumers):
    return run_activation(make_campaign(merchant, body_template="Your picks"), consented_consumers)


def treated(campaign):
    return Delivery.objects.filter(campaign=campaign, group=Group.TREATMENT).select_related("consumer").order_by("pk")


# --- inbox ---


def test_inbox_returns_a_message_once_and_marks_it_delivered(sent_campaign):
    delivery = treated(sent_campaign).first()
    [message] = inbox_messages_take(pseudonym=delivery.consumer.pseudonym)
    assert message.delivery_id == delivery.pk and message.body == "Your picks" and message.store_name == "Acme Outdoor"
    assert inbox_messages_take(pseudonym=delivery.consumer.pseudonym) == []
    delivery.refresh_from_db()
    assert delivery.delivered_at is not None


def test_inbox_holds_nothing_for_the_control_group(sent_campaign):
    held_out = Delivery.objects.filter(campaign=sent_campaign, group=Group.CONTROL).select_related("consumer").first()
    assert inbox_messages_take(pseudonym=held_out.consumer.pseudonym) == []


def test_inbox_withdraws_a_message_whose_consumer_withdrew_before_reading(sent_campaign):
    delivery = treated(sent_campaign).first()
    withdraw_consent([delivery.consumer_id])
    assert inbox_messages_take(pseudonym=delivery.consumer.pseudonym) == []
    delivery.refresh_from_db()
    assert (
        delivery.status == DeliveryStatus.WITHDRAWN and "withdrawn before the message was read" in delivery.last_error
    )
    sent_campaign.refresh_from_db()
    assert sent_campaign.withdrawn_count == 1 and sent_campaign.dispatched_count == sent_campaign.treatment_count - 1


def test_inbox_of_an_unknown_pseudonym_is_none(db):
    assert inbox_messages_take(pseudonym="0" * 64) is None


# --- tracking ---


def test_tracking_is_idempotent(sent_campaign):
    delivery = treated(sent_campaign).first()
    now = timezone.now()
    events = [
        TrackingInput(delivery.pk, "opened", now),
        TrackingInput(delivery.pk, "opened", now),
        TrackingInput(delivery.pk, "converted", now, Decimal("12.50"), "order-1"),
        TrackingInput(delivery.pk, "converted", now, Decimal("7.00"), "order-2"),
    ]
    first = tracking_events_record(events=events)
    assert (first.recorded, first.duplicates) == (3, 1)
    again = tracking_events_record(events=events)
    assert (again.recorded, again.duplicates) == (0, 4)
    assert TrackingEvent.objects.filter(delivery=delivery).count() == 3


def test_tracking_refuses_bad_events_and_writes_nothing(sent_campaign):
    delivery = treated(sent_campaign).first()
    held_out = Delivery.objects.filter(campaign=sent_campaign, group=Group.CONTROL).first()
    now = timezone.now()
    with pytest.raises(Invalid) as exc:
        tracking_events_record(
            events=[
                TrackingInput(delivery.pk, "opened", now),
                TrackingInput(999_999, "clicked", now),
                TrackingInput(held_out.pk, "opened", now),
                TrackingInput(delivery.pk, "clicked", now, Decimal("3")),
                TrackingInput(delivery.pk, "opened", now + timedelta(days=1), idempotency_key="later"),
            ]
        )
    details = exc.value.details["events"]
    assert set(details) == {"1", "2", "3", "4"}
    assert "was not found" in details["1"]["delivery_id"][0]
    assert "never sent" in details["2"]["delivery_id"][0]
    assert "order value" in details["3"]["order_value"][0]
    assert "future" in details["4"]["occurred_at"][0]
    assert not TrackingEvent.objects.exists()


# --- audience export ---


def test_export_pages_through_the_consented_treatment_audience_as_merchant_pseudonyms(sent_campaign, merchant):
    deliveries = list(treated(sent_campaign))
    gone = deliveries[0]
    withdraw_consent([gone.consumer_id])
    expected = {merchant_pseudonym(merchant_id=merchant.pk, pseudonym=d.consumer.pseudonym) for d in deliveries[1:]}
    seen, cursor, pages = [], None, 0
    while True:
        page = campaign_audience_export(campaign=sent_campaign, actor="apikey:1", cursor=cursor, limit=50)
        seen.extend(page.pseudonyms)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) and set(seen) == expected
    raw = set(Consumer.objects.values_list("pseudonym", flat=True))
    assert raw.isdisjoint(seen)  # never the platform's own pseudonyms
    entries = AuditEntry.objects.filter(action="campaign.audience_exported")
    assert entries.count() == pages
    assert sum(e.counts["exported"] for e in entries) == len(expected)
    assert all(e.purpose == "direct_marketing" and e.activity_id for e in entries)


def test_export_pseudonyms_differ_between_merchants(db):
    assert merchant_pseudonym(merchant_id=1, pseudonym="a" * 64) != merchant_pseudonym(
        merchant_id=2, pseudonym="a" * 64
    )


def test_export_refuses_a_cursor_from_elsewhere_and_a_campaign_not_sent(sent_campaign, merchant):
    page = campaign_audience_export(campaign=sent_campaign, actor="a", cursor=None, limit=10)
    with pytest.raises(InvalidCursor):
        campaign_audience_export(campaign=sent_campaign, actor="a", cursor=page.next_cursor + "x", limit=10)
    draft = make_campaign(merchant, status="draft")
    with pytest.raises(Conflict):
        campaign_audience_export(campaign=draft, actor="a", cursor=None, limit=10)


def test_export_leaves_out_suppressed_consumers(sent_campaign):
    first = treated(sent_campaign).first()
    Suppression.objects.create(consumer_id=first.consumer_id, reason=SuppressionReason.OBJECTION)
    page = campaign_audience_export(campaign=sent_campaign, actor="a", cursor=None, limit=10_000)
    assert len(page.pseudonyms) == treated(sent_campaign).count() - 1
