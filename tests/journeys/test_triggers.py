"""Triggers and entry rules: segment transitions (win-back), re-entry, the keyed holdout, pause and resume."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from journeys.engine import holdout
from journeys.models import EnrolmentState, JourneyEnrolment, JourneySend
from journeys.services import journey_activate, journey_create, journey_pause
from journeys.templates import journey_from_template
from segments.models import MembershipTransition, TransitionKind
from tests.factories.tags import tags_assign

from .conftest import CART, MORNING, at, event, shoppers, tick

H = timedelta(hours=1)
ONE_SEND = [{"type": "send", "title": "Hello from {store_name}", "body": "New in.", "products": 0}]


def test_win_back_enrols_consumers_entering_the_lapsing_segment_in_id_order(merchant, dm_approved):
    lapsing, left, other = shoppers(3)
    tags_assign({("lifecycle", "lapsing"): [lapsing.pk]})  # the family exists once tagging has run
    with at(MORNING):
        journey = journey_from_template(merchant=merchant, key="win_back", actor="test")
        journey.holdout_share = 0
        journey.save(update_fields=["holdout_share"])
        journey_activate(journey=journey, actor="test")
    assert journey.trigger_segment.definition == "lifecycle:lapsing"
    for consumer, kind in ((lapsing, TransitionKind.ENTERED), (left, TransitionKind.EXITED)):
        MembershipTransition.objects.create(
            segment=journey.trigger_segment, consumer_id=consumer.pk, kind=kind, at=MORNING, source="stream"
        )
    tick(MORNING + timedelta(minutes=1))
    assert list(JourneyEnrolment.objects.values_list("consumer_id", flat=True)) == [lapsing.pk]
    assert list(JourneySend.objects.values_list("consumer_id", "title")) == [
        (lapsing.pk, f"We miss you at {merchant.name}")
    ]
    tick(MORNING + timedelta(minutes=2))  # the cursor moved on: nobody is enrolled twice
    assert JourneyEnrolment.objects.count() == 1


def test_reentry_never_and_after_days(merchant, dm_approved):
    with at(MORNING):
        never = journey_create(
            merchant=merchant,
            actor="test",
            name="Once",
            trigger_kind="event",
            trigger_event="carted()",
            holdout_share=0,
            steps=ONE_SEND,
        )
        weekly = journey_create(
            merchant=merchant,
            actor="test",
            name="Weekly",
            trigger_kind="event",
            trigger_event="carted()",
            holdout_share=0,
            reentry="after_days",
            reentry_days=7,
            steps=ONE_SEND,
            frequency_cap=None,
        )
        journey_activate(journey=never, actor="test")
        journey_activate(journey=weekly, actor="test")
    [shopper] = shoppers(1)
    for day in (0, 2, 8):
        moment = MORNING + timedelta(days=day, minutes=1)
        event(merchant, shopper, CART, moment, sku=f"S-{day}")
        tick(moment + timedelta(minutes=1))
    assert JourneyEnrolment.objects.filter(journey=never).count() == 1
    assert list(
        JourneyEnrolment.objects.filter(journey=weekly).order_by("entry_no").values_list("entry_no", flat=True)
    ) == [1, 2]


@settings(max_examples=50, deadline=None)
@given(journey_id=st.integers(1, 10**6), consumer_id=st.integers(1, 10**9))
def test_the_holdout_is_deterministic_and_monotone_in_the_share(journey_id, consumer_id):
    assert holdout(journey_id, consumer_id, 0.1) == holdout(journey_id, consumer_id, 0.1)
    if holdout(journey_id, consumer_id, 0.1):
        assert holdout(journey_id, consumer_id, 0.3)
    assert not holdout(journey_id, consumer_id, 0)


def test_the_holdout_share_is_close_to_the_setting():
    held = sum(holdout(7, consumer_id, 0.2) for consumer_id in range(20_000))
    assert 0.19 < held / 20_000 < 0.21


def test_pausing_keeps_due_steps_and_resuming_runs_them(merchant, dm_approved):
    with at(MORNING):
        journey = journey_create(
            merchant=merchant,
            actor="test",
            name="Later",
            trigger_kind="event",
            trigger_event="carted()",
            holdout_share=0,
            steps=[{"type": "wait", "duration": "1h"}, *ONE_SEND],
        )
        journey_activate(journey=journey, actor="test")
    [shopper] = shoppers(1)
    event(merchant, shopper, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    with at(MORNING + timedelta(minutes=30)):
        journey_pause(journey=journey, actor="test")
    tick(MORNING + 2 * H)
    assert JourneySend.objects.count() == 0
    with at(MORNING + 3 * H):
        journey_activate(journey=journey, actor="test")
    tick(MORNING + 3 * H + timedelta(minutes=1))
    assert JourneySend.objects.count() == 1
    assert JourneyEnrolment.objects.get().state == EnrolmentState.COMPLETED
