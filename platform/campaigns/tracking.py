"""Tracking: opens, clicks and conversions the operator reports for delivered messages, recorded once each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from merchants.errors import Invalid

from .models import (
    Delivery,
    DeliveryStatus,
    Group,
    TrackingEvent,
    TrackingKind,
)


@dataclass(frozen=True)
class TrackingInput:
    delivery_id: int
    kind: str
    occurred_at: datetime
    order_value: Decimal | None = None
    idempotency_key: str = ""


@dataclass(frozen=True)
class TrackingResult:
    recorded: int
    duplicates: int


def tracking_events_record(*, events: list[TrackingInput]) -> TrackingResult:
    """Record opened/clicked/converted events per delivery; re-posting an event changes nothing.

    Without an idempotency key an event is keyed by its kind, so each delivery has at most one
    open, one click and one conversion; send distinct keys (e.g. order ids) to record several.
    All events are checked first; one bad event rejects the request and nothing is written.
    """
    now = timezone.now()
    ids = {e.delivery_id for e in events}
    deliveries = {
        pk: (group, status)
        for pk, group, status in Delivery.objects.filter(pk__in=ids).values_list("pk", "group", "status")
    }
    errors: dict[str, dict[str, list[str]]] = {}
    for index, event in enumerate(events):
        found = deliveries.get(event.delivery_id)
        problems: dict[str, list[str]] = {}
        if found is None:
            problems["delivery_id"] = [f"Delivery {event.delivery_id} was not found."]
        elif found != (Group.TREATMENT, DeliveryStatus.DISPATCHED):
            problems["delivery_id"] = [
                f"Delivery {event.delivery_id} was never sent (it is {found[1]}), so it cannot be {event.kind}."
            ]
        if event.kind != TrackingKind.CONVERTED and event.order_value is not None:
            problems["order_value"] = ["Only a conversion carries an order value."]
        if event.order_value is not None and event.order_value < 0:
            problems["order_value"] = ["An order value cannot be negative."]
        if event.occurred_at > now + timedelta(minutes=5):
            problems["occurred_at"] = ["occurred_at is in the future."]
        if problems:
            errors[str(index)] = problems
    if errors:
        raise Invalid(
            "Some tracking events are not valid; none were recorded.", code="invalid", details={"events": errors}
        )

    wanted: dict[tuple[int, str], TrackingInput] = {}
    for event in events:
        wanted.setdefault((event.delivery_id, event.idempotency_key or event.kind), event)
    with transaction.atomic():
        existing = set(
            TrackingEvent.objects.filter(
                delivery_id__in=ids, idempotency_key__in={key for _, key in wanted}
            ).values_list("delivery_id", "idempotency_key")
        )
        new = [
            TrackingEvent(
                delivery_id=delivery_id,
                kind=event.kind,
                order_value=event.order_value,
                occurred_at=event.occurred_at,
                idempotency_key=key,
            )
            for (delivery_id, key), event in wanted.items()
            if (delivery_id, key) not in existing
        ]
        TrackingEvent.objects.bulk_create(new, ignore_conflicts=True)
    return TrackingResult(recorded=len(new), duplicates=len(events) - len(new))
