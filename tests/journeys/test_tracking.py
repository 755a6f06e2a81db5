"""Opens, clicks and conversions of journey messages through the operator's tracking endpoint, by the signed
message_ref the inbox gives: counted once, in the released report; a forged or foreign reference is a 400."""

from __future__ import annotations

from datetime import timedelta

from django.core import signing

from journeys.models import JourneySend, JourneyTrackingEvent, SendStatus
from journeys.tracking import journey_message_ref
from tests.release_helpers import released_public

from .conftest import CART, MORNING, at, event, shoppers, tick
from .test_variants import SEND, _journey


def _sent(merchant, n: int = 3):
    journey = _journey(merchant, [SEND])
    people = shoppers(n)
    for person in people:
        event(merchant, person, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    return journey, people


def _track(operator_client, *events):
    with at(MORNING + timedelta(minutes=30)):
        return operator_client.post("/api/v1/tracking/", {"events": list(events)}, format="json")


def test_an_open_of_a_journey_message_counts_once(merchant, merchant_client, operator_client, dm_approved):
    journey, people = _sent(merchant)
    with at(MORNING + timedelta(minutes=10)):
        inbox = operator_client.get(f"/api/v1/inbox/{people[0].pseudonym}").json()["messages"]
    [message] = inbox
    assert message["kind"] == "journey" and message["message_ref"].startswith("journey:")
    opened = {"message_ref": message["message_ref"], "kind": "opened"}
    first = _track(operator_client, opened, {"message_ref": message["message_ref"], "kind": "clicked"})
    assert first.status_code == 200, first.content
    assert first.json() == {"recorded": 2, "duplicates": 0}
    assert _track(operator_client, opened, opened).json() == {"recorded": 0, "duplicates": 2}
    assert JourneyTrackingEvent.objects.filter(kind="opened").count() == 1
    send = JourneySend.objects.get(pk=message["delivery_id"])
    report = merchant_client.get(f"/api/v1/journeys/{journey.pk}/report").json()
    [step] = report["steps"]
    assert step["opened"] == released_public(f"journey:{journey.pk}:step:0:opened", 1)
    assert step["clicked"] == released_public(f"journey:{journey.pk}:step:0:clicked", 1)
    variant = step["variants"][send.variant - 1]
    prefix = f"journey:{journey.pk}:version:1:step:0:variant:{send.variant}"
    assert variant["opened"] == released_public(f"{prefix}:opened", 1)


def test_a_tracked_conversion_counts_for_its_message(merchant, operator_client, dm_approved):
    from journeys.selectors import journey_message_funnel

    journey, _ = _sent(merchant, 2)
    send = JourneySend.objects.filter(journey=journey).first()
    ref = journey_message_ref(send.pk)
    response = _track(operator_client, {"message_ref": ref, "kind": "converted", "order_value": "25.00"})
    assert response.status_code == 200, response.content
    assert journey_message_funnel(journey, by_variant=False)[(0,)]["converted"] == 1


def test_forged_and_foreign_references_are_refused_with_the_reason(merchant, operator_client, dm_approved, settings):
    journey, _ = _sent(merchant, 1)
    send = JourneySend.objects.get(journey=journey)
    genuine = journey_message_ref(send.pk)
    forged = journey_message_ref(send.pk).rsplit(":", 1)[0] + ":not-the-signature"
    other_message = genuine.replace(f"journey:{send.pk}:", f"journey:{send.pk + 1}:")
    foreign = signing.Signer(key="another-installations-key", salt="journeys.message-ref").sign(f"journey:{send.pk}")
    for ref in (forged, other_message, foreign, "campaign:12:abc", "12"):
        response = _track(operator_client, {"message_ref": ref, "kind": "opened"})
        assert response.status_code == 400, (ref, response.content)
        [problem] = response.json()["error"]["details"]["events"]["0"]["message_ref"]
        assert problem.startswith("Not a message reference the platform issued"), ref
    response = _track(
        operator_client, {"message_ref": genuine, "kind": "opened"}, {"message_ref": forged, "kind": "opened"}
    )
    assert response.status_code == 400
    problems = response.json()["error"]["details"]["events"]
    assert list(problems) == ["1"] and "signature" in problems["1"]["message_ref"][0]
    assert not JourneyTrackingEvent.objects.exists()  # one bad event rejects the request: nothing is written


def test_a_message_that_was_never_sent_cannot_be_opened(merchant, operator_client, dm_approved):
    journey, _ = _sent(merchant, 1)
    send = JourneySend.objects.get(journey=journey)
    JourneySend.objects.filter(pk=send.pk).update(status=SendStatus.WITHDRAWN)
    response = _track(operator_client, {"message_ref": journey_message_ref(send.pk), "kind": "opened"})
    assert response.status_code == 400
    assert "never sent (it is withdrawn)" in response.content.decode()


def test_an_event_names_its_message_once(operator_client, dm_approved, merchant):
    journey, _ = _sent(merchant, 1)
    ref = journey_message_ref(JourneySend.objects.get(journey=journey).pk)
    both = _track(operator_client, {"message_ref": ref, "delivery_id": 5, "kind": "opened"})
    neither = _track(operator_client, {"kind": "opened"})
    for response in (both, neither):
        assert response.status_code == 400
        assert "exactly one of delivery_id" in response.content.decode()
