"""Frequency caps shared with campaigns: journey messages count toward the campaigns' caps, and campaign
messages toward the journeys'."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from campaigns.audience import frequency_capped_consumers
from journeys.models import JourneySend, StepOutcome
from tests.campaigns.conftest import make_campaign

from .conftest import CART, MORNING, event, shoppers, tick


def _journey_messages(journey, enrolment, n: int, when) -> None:
    for step in range(n):
        JourneySend.objects.create(
            enrolment=enrolment,
            journey=journey,
            merchant_id=journey.merchant_id,
            consumer_id=enrolment.consumer_id,
            step=100 + step,
            title="x",
            created_at=when,
        )


def test_journey_messages_count_toward_campaign_caps(abandoned_cart, merchant, settings):
    settings.PLATFORM_FREQUENCY_CAP = 3
    busy, quiet = shoppers(2)
    for person in (busy, quiet):
        event(merchant, person, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    enrolment = abandoned_cart.enrolments.get(consumer_id=busy.pk)
    _journey_messages(abandoned_cart, enrolment, 3, timezone.now())
    capped = frequency_capped_consumers(
        merchant_id=merchant.pk,
        frequency_cap=None,
        frequency_window_days=7,
        now=timezone.now(),
        consumer_ids=[busy.pk, quiet.pk],
    )
    assert capped == {busy.pk}


def test_a_capped_consumer_skips_the_journey_message(abandoned_cart, merchant, settings):
    from campaigns.models import Delivery, DeliveryStatus, Group

    settings.PLATFORM_FREQUENCY_CAP = 1
    [shopper] = shoppers(1)
    campaign = make_campaign(merchant, started_at=MORNING)
    Delivery.objects.create(
        campaign=campaign,
        consumer_id=shopper.pk,
        group=Group.TREATMENT,
        status=DeliveryStatus.DISPATCHED,
        created_at=MORNING,
    )
    event(merchant, shopper, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    tick(MORNING + timedelta(hours=3))
    assert not JourneySend.objects.filter(journey=abandoned_cart).exists()
    assert abandoned_cart.step_runs.filter(step=1).get().outcome == StepOutcome.CAPPED
