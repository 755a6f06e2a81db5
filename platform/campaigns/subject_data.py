"""What campaigns hold about a consumer, for data-subject access and erasure requests."""

from __future__ import annotations

from django.db import transaction
from pyroaring import BitMap

from privacy.subject_data import SubjectDataHandler, register

from .models import CampaignAudience, Delivery, TrackingEvent
from .selectors import consumer_deliveries


def access(consumer_id: int) -> list[dict]:
    """Every campaign message the consumer was part of: campaign, dates, status, and what they did with it."""
    return [
        {
            "campaign": delivery.campaign.name,
            "store": delivery.campaign.merchant.name,
            "group": delivery.group,
            "status": delivery.status,
            "title": delivery.title,
            "body": delivery.body,
            "created_at": delivery.created_at.isoformat(),
            "dispatched_at": delivery.dispatched_at.isoformat() if delivery.dispatched_at else None,
            "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
            "tracking": [
                {
                    "kind": event.kind,
                    "occurred_at": event.occurred_at.isoformat(),
                    "order_value": None if event.order_value is None else str(event.order_value),
                }
                for event in sorted(delivery.tracking_events.all(), key=lambda e: (e.occurred_at, e.pk))
            ],
        }
        for delivery in consumer_deliveries(consumer_id)
    ]


def erase(consumer_id: int) -> dict[str, int]:
    """Delete the consumer's deliveries and tracking, and drop them from audiences being sent right now."""
    with transaction.atomic():
        _total, per_model = Delivery.objects.filter(consumer_id=consumer_id).delete()
        audiences = 0
        for audience in CampaignAudience.objects.select_for_update():
            members = BitMap.deserialize(bytes(audience.members))
            if consumer_id in members:
                members.discard(consumer_id)
                audience.members = members.serialize()
                audience.save(update_fields=["members"])
                audiences += 1
    return {
        "deliveries": per_model.get(Delivery._meta.label, 0),
        "tracking_events": per_model.get(TrackingEvent._meta.label, 0),
        "audiences_in_flight": audiences,
    }


register(SubjectDataHandler(name="campaigns", layer=6, access=access, erase=erase))
