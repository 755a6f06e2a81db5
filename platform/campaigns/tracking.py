"""Tracking: opens, clicks and conversions the operator reports for delivered messages, recorded once each.

A campaign message is named by its delivery id. Other senders (journeys) name their messages by a signed
reference (`message_ref`, "<source>:<id>:<signature>") and register a TrackingSource here, so this layer never
imports them: the source says what is wrong with its references and records the valid events. One request is
checked as a whole across all sources before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
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
    delivery_id: int | None
    kind: str
    occurred_at: datetime
    order_value: Decimal | None = None
    idempotency_key: str = ""
    message_ref: str = ""  # instead of delivery_id: a message of a registered source (a journey's)


@dataclass(frozen=True)
class TrackingSource:
    """A sender whose messages are tracked by reference. `problems(events)` returns one message per event whose
    reference is not valid (forged, unknown, never sent), by position in the list it was given; `record(events)`
    writes the events (all valid) idempotently and returns how many were new. Both run inside one transaction."""

    prefix: str
    problems: Callable[[list[TrackingInput]], dict[int, str]]
    record: Callable[[list[TrackingInput]], int]


TRACKING_SOURCES: dict[str, TrackingSource] = {}


def tracking_source_register(source: TrackingSource) -> None:
    TRACKING_SOURCES[source.prefix] = source


def message_ref_source(message_ref: str) -> TrackingSource | None:
    """The registered source a reference names by its prefix ("journey:…"), or None."""
    prefix, _, _ = message_ref.partition(":")
    return TRACKING_SOURCES.get(prefix)


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
    campaign_events = [(i, e) for i, e in enumerate(events) if not e.message_ref]
    by_source: dict[str, list[tuple[int, TrackingInput]]] = {}
    ref_problems: dict[int, str] = {}
    for index, event in enumerate(events):
        if not event.message_ref:
            continue
        source = message_ref_source(event.message_ref)
        if source is None:
            ref_problems[index] = "Not a message reference the platform issued."
        else:
            by_source.setdefault(source.prefix, []).append((index, event))
    for prefix, indexed in by_source.items():
        found_problems = TRACKING_SOURCES[prefix].problems([e for _, e in indexed])
        for position, problem in found_problems.items():
            ref_problems[indexed[position][0]] = problem
    ids = {e.delivery_id for _, e in campaign_events if e.delivery_id is not None}
    deliveries = {
        pk: (group, status)
        for pk, group, status in Delivery.objects.filter(pk__in=ids).values_list("pk", "group", "status")
    }
    errors: dict[str, dict[str, list[str]]] = {}
    for index, event in enumerate(events):
        found = deliveries.get(event.delivery_id) if event.delivery_id is not None else None
        problems: dict[str, list[str]] = {}
        if event.message_ref:
            if index in ref_problems:
                problems["message_ref"] = [ref_problems[index]]
        elif found is None:
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
    for _, event in campaign_events:
        wanted.setdefault((event.delivery_id or 0, event.idempotency_key or event.kind), event)
    with transaction.atomic():
        recorded_by_sources = sum(
            TRACKING_SOURCES[prefix].record([e for _, e in indexed]) for prefix, indexed in by_source.items()
        )
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
    recorded = len(new) + recorded_by_sources
    return TrackingResult(recorded=recorded, duplicates=len(events) - recorded)
