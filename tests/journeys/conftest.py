"""Journey test helpers: a merchant's shoppers with and without consent, events sent through ingestion, a tick at
a given time (time-machine moves the clock; the tick runs the step tasks eagerly)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from consumers.models import EventType
from journeys.services import journey_activate
from journeys.tasks import journeys_tick
from journeys.templates import journey_from_template
from privacy.models import Purpose
from tests.factories import EventFactory, ProductFactory, consents_record_for, consumers_ingest
from tests.webhook_receiver import receiver  # noqa: F401 - the local webhook server fixture

# 10:00 in Singapore, outside the platform's quiet hours (21:00-08:00 there).
MORNING = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def tick(moment: datetime) -> dict:
    with at(moment):
        return journeys_tick()


def shoppers(n: int, *, prefix: str = "journey-shopper", consent: bool = True, moment: datetime = MORNING) -> list:
    with at(moment):
        consumers = consumers_ingest([f"{prefix}-{i}@example.org" for i in range(n)])
        if consent:
            consents_record_for([c.pk for c in consumers], purpose=Purpose.DIRECT_MARKETING)
    return consumers


def event(merchant, consumer, kind: int, moment: datetime, *, sku: str = "TENT-1", received: datetime | None = None):
    """An event that happened at `moment`, ingested at `received` (default: then)."""
    with at(received or moment):
        return EventFactory(
            merchant=merchant,
            consumer=consumer,
            sku=sku,
            title="Alpine tent",
            category_path="outdoor/tents",
            event_type=kind,
            occurred_at=moment,
            price="120.00",
        )


CART, PURCHASE = EventType.CART, EventType.PURCHASE


@pytest.fixture
def dm_approved(approve_activity):
    return approve_activity(Purpose.DIRECT_MARKETING)


@pytest.fixture
def catalogue(merchant):
    return [ProductFactory(merchant=merchant, sku=f"GEAR-{i}", title=f"Gear {i}") for i in range(5)]


@pytest.fixture
def abandoned_cart(merchant, dm_approved):
    """The abandoned-cart template, without a holdout (every consumer is treated), activated in the morning."""
    with at(MORNING):
        journey = journey_from_template(merchant=merchant, key="abandoned_cart", actor="test")
        journey.holdout_share = 0
        journey.save(update_fields=["holdout_share"])
        journey_activate(journey=journey, actor="test")
    journey.refresh_from_db()
    return journey
