"""Trigger rows committed out of id order: on PostgreSQL an id is taken at insert, not at commit, so a row with a lower
id can become visible after the tick's cursor passed it. Each tick re-reads a window behind the cursor; the trigger
row stored on the enrolment (unique per journey) keeps a re-read row from enrolling anyone twice."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from consumers.models import Event
from journeys.models import EnrolmentState, JourneyEnrolment
from journeys.services import journey_activate, journey_create
from journeys.templates import journey_from_template
from segments.models import MembershipTransition, TransitionKind
from tests.factories.tags import tags_assign

from .conftest import CART, MORNING, PURCHASE, at, event, shoppers, tick

ONE_SEND = [{"type": "send", "title": "Hello from {store_name}", "body": "New in.", "products": 0}]
MINUTE = timedelta(minutes=1)


def _cart_journey(merchant):
    with at(MORNING):
        journey = journey_create(
            merchant=merchant,
            actor="test",
            name="Carts",
            trigger_kind="event",
            trigger_event="carted()",
            holdout_share=0,
            steps=ONE_SEND,
        )
        journey_activate(journey=journey, actor="test")
    return journey


def _win_back(merchant):
    with at(MORNING):
        journey = journey_from_template(merchant=merchant, key="win_back", actor="test")
        journey.holdout_share = 0
        journey.save(update_fields=["holdout_share"])
        journey_activate(journey=journey, actor="test")
    journey.refresh_from_db()
    return journey


def _cart_row(merchant, consumer, n: int) -> Event:
    return Event.objects.create(
        source_key=f"reread-{n}",
        consumer=consumer,
        merchant=merchant,
        event_type=CART,
        occurred_at=MORNING + MINUTE,
    )


def _committed_late(insert):
    """Run `insert` in a transaction on another connection and hold it open: returns (the row, commit)."""
    inserted, release, done = threading.Event(), threading.Event(), {}

    def hold():
        try:
            with transaction.atomic():
                done["row"] = insert()
                inserted.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    worker = threading.Thread(target=hold)
    worker.start()
    assert inserted.wait(timeout=30)

    def commit():
        release.set()
        worker.join(timeout=30)

    return done["row"], commit


def _enrolled(journey) -> list[int]:
    return sorted(JourneyEnrolment.objects.filter(journey=journey).values_list("consumer_id", flat=True))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_committed_after_a_later_id_was_read_still_enrols_exactly_once(merchant, dm_approved):
    journey = _cart_journey(merchant)
    late, early = shoppers(2, prefix="reread-event")
    late_row, commit = _committed_late(lambda: _cart_row(merchant, late, 1))
    try:
        early_row = _cart_row(merchant, early, 2)  # a higher id, committed first
        assert early_row.pk > late_row.pk
        tick(MORNING + 2 * MINUTE)  # reads past the late row's id while it is invisible
        assert _enrolled(journey) == [early.pk]
    finally:
        commit()
    tick(MORNING + 3 * MINUTE)
    tick(MORNING + 4 * MINUTE)
    assert _enrolled(journey) == sorted([late.pk, early.pk])
    assert JourneyEnrolment.objects.get(journey=journey, consumer_id=late.pk).trigger_event_id == late_row.pk


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_segment_entry_committed_after_a_later_id_was_read_still_enrols_exactly_once(merchant, dm_approved):
    late, early = shoppers(2, prefix="reread-segment")
    tags_assign({("lifecycle", "lapsing"): [late.pk, early.pk]})
    journey = _win_back(merchant)

    def entered(consumer):
        return MembershipTransition.objects.create(
            segment=journey.trigger_segment, consumer_id=consumer.pk, kind=TransitionKind.ENTERED, at=MORNING + MINUTE
        )

    late_row, commit = _committed_late(lambda: entered(late))
    try:
        assert entered(early).pk > late_row.pk
        tick(MORNING + 2 * MINUTE)
        assert _enrolled(journey) == [early.pk]
    finally:
        commit()
    tick(MORNING + 3 * MINUTE)
    tick(MORNING + 4 * MINUTE)
    assert _enrolled(journey) == sorted([late.pk, early.pk])


def test_rows_behind_the_cursor_are_read_again_within_the_window_and_never_enrol_twice(merchant, dm_approved):
    journey = _cart_journey(merchant)
    [shopper] = shoppers(1, prefix="reread-twice")
    event(merchant, shopper, CART, MORNING + MINUTE)
    for minute in range(2, 8):  # every tick re-reads the event while it lies in the window
        tick(MORNING + minute * MINUTE)
    assert _enrolled(journey) == [shopper.pk]
    journey.refresh_from_db()
    assert len(journey.trigger_checkpoints) <= 12  # one per tick in the window, plus the floor


def test_the_database_refuses_a_second_enrolment_from_the_same_trigger_row(merchant, dm_approved):
    journey = _cart_journey(merchant)
    [shopper] = shoppers(1, prefix="reread-unique")
    cart = event(merchant, shopper, CART, MORNING + MINUTE)
    tick(MORNING + 2 * MINUTE)
    first = JourneyEnrolment.objects.get(journey=journey)
    assert first.trigger_event_id == cart.pk
    with pytest.raises(IntegrityError), transaction.atomic():
        JourneyEnrolment.objects.create(
            journey=journey,
            version=first.version,
            consumer_id=shopper.pk,
            entry_no=2,
            entered_at=first.entered_at,
            trigger_event_id=cart.pk,
        )


def test_a_row_read_while_the_consumer_was_in_the_journey_does_not_enrol_them_when_re_read_after_it_ended(
    merchant, dm_approved
):
    with at(MORNING):
        journey = journey_create(
            merchant=merchant,
            actor="test",
            name="Daily carts",
            trigger_kind="event",
            trigger_event="carted()",
            exit_condition="purchased()",
            holdout_share=0,
            reentry="after_days",
            reentry_days=1,
            steps=[{"type": "wait_for", "event": "purchased()", "timeout": "3d", "on_event": "exit"}, *ONE_SEND],
        )
        journey_activate(journey=journey, actor="test")
    [shopper] = shoppers(1, prefix="reread-reentry")
    event(merchant, shopper, CART, MORNING + MINUTE)
    tick(MORNING + 2 * MINUTE)
    next_day = MORNING + timedelta(days=1, minutes=10)  # re-entry would be allowed by now, but they are still in
    event(merchant, shopper, CART, next_day, sku="S-2")
    tick(next_day + MINUTE)  # read: the shopper is in the journey, so the cart starts nothing
    event(merchant, shopper, PURCHASE, next_day + 2 * MINUTE)
    tick(next_day + 7 * MINUTE)  # the purchase ends their enrolment

    tick(next_day + 8 * MINUTE)  # the cart lies in the re-read window: judged as when it was first read

    entries = JourneyEnrolment.objects.filter(journey=journey, consumer_id=shopper.pk)
    assert list(entries.values_list("entry_no", "state")) == [(1, EnrolmentState.EXITED)]
    # A cart after the enrolment ended is a new entry, as the policy allows.
    event(merchant, shopper, CART, next_day + 9 * MINUTE, sku="S-3")
    tick(next_day + 10 * MINUTE)
    assert sorted(entries.values_list("entry_no", flat=True)) == [1, 2]
