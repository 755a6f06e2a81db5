"""The abandoned-cart journey end to end on the embedded defaults: events in through ingestion, the tick (eager
step tasks), the clock moved with time-machine."""

from __future__ import annotations

from datetime import timedelta

from journeys.models import EnrolmentState, JourneyEnrolment, JourneySend
from privacy.audit import audit_chain_verify
from privacy.models import AuditEntry
from tests.campaigns.conftest import withdraw_consent

from .conftest import CART, MORNING, PURCHASE, at, event, shoppers, tick

H = timedelta(hours=1)


def sends(journey):
    return list(JourneySend.objects.filter(journey=journey).order_by("created_at").values_list("consumer_id", "title"))


def test_a_cart_without_a_purchase_gets_the_nudge_after_two_hours_then_the_offer(abandoned_cart, merchant, catalogue):
    [shopper] = shoppers(1)
    event(merchant, shopper, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    enrolment = JourneyEnrolment.objects.get(journey=abandoned_cart)
    assert enrolment.consumer_id == shopper.pk and enrolment.state == EnrolmentState.ACTIVE
    tick(MORNING + H)
    assert sends(abandoned_cart) == []  # still inside the 2 h wait

    tick(MORNING + 2 * H + timedelta(minutes=3))
    [(consumer_id, title)] = sends(abandoned_cart)
    assert consumer_id == shopper.pk
    assert title == "Still thinking about Alpine tent?"
    message = JourneySend.objects.get(journey=abandoned_cart)
    assert "It is waiting in your cart at" in message.body

    tick(MORNING + 12 * H)
    assert len(sends(abandoned_cart)) == 1  # the reminder waits 22 h more
    tick(MORNING + 25 * H)
    titles = [title for _, title in sends(abandoned_cart)]
    assert titles == ["Still thinking about Alpine tent?", "10% off with code CART10 on your cart"]
    enrolment.refresh_from_db()
    assert enrolment.state == EnrolmentState.COMPLETED
    tick(MORNING + 50 * H)
    assert len(sends(abandoned_cart)) == 2  # nothing more, nothing twice


def test_a_purchase_before_the_wait_ends_means_no_message(abandoned_cart, merchant):
    [shopper] = shoppers(1)
    event(merchant, shopper, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    event(merchant, shopper, PURCHASE, MORNING + H)
    tick(MORNING + 3 * H)
    tick(MORNING + 30 * H)
    assert sends(abandoned_cart) == []
    enrolment = JourneyEnrolment.objects.get(journey=abandoned_cart)
    assert enrolment.state == EnrolmentState.EXITED


def test_no_message_without_consent(abandoned_cart, merchant):
    [shopper] = shoppers(1, consent=False)
    event(merchant, shopper, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    tick(MORNING + 3 * H)
    assert sends(abandoned_cart) == []
    enrolment = JourneyEnrolment.objects.get(journey=abandoned_cart)
    assert (enrolment.state, enrolment.exit_reason) == (EnrolmentState.EXITED, "no_express_consent")


def test_consent_withdrawn_mid_journey_stops_every_later_message(abandoned_cart, merchant):
    [shopper] = shoppers(1)
    event(merchant, shopper, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    tick(MORNING + 3 * H)
    assert len(sends(abandoned_cart)) == 1
    with at(MORNING + 4 * H):
        withdraw_consent([shopper.pk])
    tick(MORNING + 30 * H)
    assert len(sends(abandoned_cart)) == 1
    assert JourneyEnrolment.objects.get(journey=abandoned_cart).state == EnrolmentState.EXITED


def test_quiet_hours_defer_the_message_to_the_morning(abandoned_cart, merchant):
    evening = MORNING + 9 * H + timedelta(minutes=30)  # 19:30 in Singapore; the nudge falls due at 21:30
    [shopper] = shoppers(1, moment=evening)
    event(merchant, shopper, CART, evening)
    tick(evening + timedelta(minutes=1))
    tick(evening + 2 * H + timedelta(minutes=5))
    assert sends(abandoned_cart) == []  # deferred, not dropped
    enrolment = JourneyEnrolment.objects.get(journey=abandoned_cart)
    assert enrolment.state == EnrolmentState.ACTIVE
    next_morning = MORNING + 22 * H  # 08:00 in Singapore
    assert enrolment.next_run_at == next_morning
    tick(next_morning + timedelta(minutes=1))
    assert len(sends(abandoned_cart)) == 1


def test_events_before_activation_and_late_events_follow_the_documented_policy(abandoned_cart, merchant):
    early, late, normal = shoppers(3)
    # A cart that happened before the journey was activated, imported late: nobody is enrolled for it.
    event(merchant, early, CART, MORNING - H, received=MORNING + timedelta(minutes=1))
    # A purchase that happened inside the wait but arrived after the wait had already been checked once: matched
    # by its event time, it still ends the journey.
    event(merchant, late, CART, MORNING + timedelta(minutes=1))
    # A purchase that happened before the cart (older than the enrolment) is ignored: the nudge goes.
    event(merchant, normal, PURCHASE, MORNING - 2 * H, received=MORNING + timedelta(minutes=1))
    event(merchant, normal, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    assert set(JourneyEnrolment.objects.values_list("consumer_id", flat=True)) == {late.pk, normal.pk}
    tick(MORNING + H)
    event(merchant, late, PURCHASE, MORNING + 90 * timedelta(minutes=1), received=MORNING + 2 * H)
    tick(MORNING + 2 * H + timedelta(minutes=5))
    assert [c for c, _ in sends(abandoned_cart)] == [normal.pk]


def test_processing_is_audited_with_counts_only(abandoned_cart, merchant):
    shopper, other = shoppers(2)
    event(merchant, shopper, CART, MORNING + timedelta(minutes=1))
    event(merchant, other, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    tick(MORNING + 3 * H)
    entries = AuditEntry.objects.filter(object_type="journey").order_by("id")
    actions = [e.action for e in entries]
    assert actions[:2] == ["journey.activated", "journey.enrolled"]
    processed = entries.filter(action="journey.steps_processed").last()
    assert processed.counts["sent"] == 2 and processed.purpose == "direct_marketing"
    assert str(shopper.pk) not in str(processed.details)
    assert audit_chain_verify().intact


def test_access_lists_and_erasure_deletes_what_journeys_hold(abandoned_cart, merchant):
    from journeys.subject_data import access, erase

    [shopper] = shoppers(1)
    event(merchant, shopper, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    tick(MORNING + 3 * H)
    [entry] = access(shopper.pk)
    assert entry["journey"] == "Abandoned cart" and entry["messages"][0]["title"].startswith("Still thinking")
    assert erase(shopper.pk) == {"enrolments": 1, "step_runs": 2, "messages": 1}
    assert access(shopper.pk) == []


def test_the_nudge_names_recommended_products_of_the_merchant_but_not_the_carted_one(
    abandoned_cart, merchant, approve_activity
):
    from privacy.models import Purpose

    approve_activity(Purpose.RECOMMENDATION)
    buyers = shoppers(3, prefix="popular-buyer")
    for buyer in buyers:  # what others buy makes the popular products a newcomer is recommended
        for sku in ("LAMP-1", "STOVE-1"):
            event(merchant, buyer, PURCHASE, MORNING - 2 * H, sku=sku)
    [shopper] = shoppers(1)
    event(merchant, shopper, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    tick(MORNING + 3 * H)
    message = JourneySend.objects.get(journey=abandoned_cart)
    assert message.product_ids, message.body
    assert "You might also like" in message.body
    from consumers.models import Product

    carted = Product.objects.get(merchant=merchant, sku="TENT-1")
    assert carted.pk not in message.product_ids
