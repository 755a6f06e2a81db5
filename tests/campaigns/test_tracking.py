"""Tracking: idempotent, and a bad event refuses the whole request."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.models import Delivery, Group, TrackingEvent
from campaigns.tracking import TrackingInput, tracking_events_record
from merchants.errors import Invalid

from .conftest import treated


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
