"""Single steps: a wait until a local time of day, a branch on the segment language, editing an active trigger."""

from __future__ import annotations

from datetime import timedelta

import pytest

from journeys.models import EnrolmentState, JourneyEnrolment, JourneySend, StepOutcome
from journeys.services import journey_activate, journey_create, journey_update
from merchants.errors import Conflict

from .conftest import CART, MORNING, PURCHASE, at, event, shoppers, tick

H = timedelta(hours=1)
SEND = {"type": "send", "title": "Hello from {store_name}", "body": "New in.", "products": 0}


def _active(merchant, steps, **extra):
    with at(MORNING):
        journey = journey_create(
            merchant=merchant,
            actor="test",
            name="Steps",
            trigger_kind="event",
            trigger_event="carted()",
            holdout_share=0,
            steps=steps,
            **extra,
        )
        journey_activate(journey=journey, actor="test")
    return journey


def test_wait_until_a_time_of_day_in_the_journeys_time_zone(merchant, dm_approved):
    journey = _active(merchant, [{"type": "wait", "until": "12:00"}, SEND])  # noon in Singapore is 04:00 UTC
    [shopper] = shoppers(1)
    event(merchant, shopper, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    assert JourneyEnrolment.objects.get(journey=journey).next_run_at == MORNING + 2 * H
    tick(MORNING + 2 * H - timedelta(minutes=1))
    assert not JourneySend.objects.exists()
    tick(MORNING + 2 * H)
    assert JourneySend.objects.count() == 1


def test_a_branch_evaluates_the_segment_language_for_the_one_consumer(merchant, dm_approved):
    steps = [{"type": "branch", "condition": 'purchased(within="30d")', "then": 1, "else": "exit"}, SEND]
    journey = _active(merchant, steps)
    buyer, newcomer = shoppers(2)
    event(merchant, buyer, PURCHASE, MORNING - 24 * H, received=MORNING + timedelta(minutes=1), sku="OLD")
    for person in (buyer, newcomer):
        event(merchant, person, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    assert list(JourneySend.objects.values_list("consumer_id", flat=True)) == [buyer.pk]
    outcomes = dict(journey.step_runs.filter(step=0).values_list("enrolment__consumer_id", "outcome"))
    assert outcomes == {buyer.pk: StepOutcome.BRANCH_YES, newcomer.pk: StepOutcome.BRANCH_NO}
    left = JourneyEnrolment.objects.get(journey=journey, consumer_id=newcomer.pk)
    assert (left.state, left.exit_reason) == (EnrolmentState.EXITED, "step_0_no")


def test_the_trigger_of_an_active_journey_cannot_change(merchant, dm_approved):
    journey = _active(merchant, [SEND])
    with pytest.raises(Conflict):
        journey_update(journey=journey, actor="test", trigger_event="purchased()")
    journey.refresh_from_db()
    assert journey.trigger_event == "carted()"
