"""Journey messages on the operator's webhook, against a real local HTTP server that verifies each signature: the
campaigns' payload with kind "journey", retries with backoff, failures recorded on the message, the journey and in
the report, and nothing sent twice."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from journeys import delivery
from journeys.delivery import journey_webhook_dispatch
from journeys.engine import due_claim, enrolments_step, triggers_ingest
from journeys.models import Journey, JourneySend, SendStatus
from journeys.services import journey_activate, journey_create
from tests.release_helpers import released_public

from .conftest import CART, MORNING, at, event, shoppers, tick
from .test_variants import SEND


def _webhook_journey(merchant):
    with at(MORNING):
        journey = journey_create(
            merchant=merchant,
            actor="test",
            name="Webhook",
            trigger_kind="event",
            trigger_event="carted()",
            holdout_share=0,
            channel="webhook",
            steps=[SEND],
        )
        journey_activate(journey=journey, actor="test")
    return journey


def _carts(merchant, n: int):
    people = shoppers(n)
    for person in people:
        event(merchant, person, CART, MORNING + timedelta(minutes=1))
    return people


def test_journey_messages_are_posted_signed_once_each_after_a_retry(
    merchant, dm_approved, receiver, operator_client, settings
):
    settings.CAMPAIGN_WEBHOOK_BATCH_SIZE = 4
    receiver.fail_next = 1  # the first POST is answered 503 and retried
    journey = _webhook_journey(merchant)
    people = _carts(merchant, 10)
    tick(MORNING + timedelta(minutes=2))
    sends = JourneySend.objects.filter(journey=journey)
    assert receiver.bad_signatures == 0
    assert sorted(receiver.delivery_ids) == sorted(sends.values_list("pk", flat=True))
    assert set(Counter(receiver.delivery_ids).values()) == {1}
    assert set(sends.values_list("status", flat=True)) == {SendStatus.SENT}
    assert not sends.filter(delivered_at__isnull=True).exists()
    assert sorted(sends.values_list("attempts", flat=True))[-1] == 2  # the retried POST's messages
    request = receiver.requests[0]
    assert (request["kind"], request["journey_id"], request["merchant"]["id"]) == ("journey", journey.pk, merchant.pk)
    message = request["messages"][0]
    send = sends.get(pk=message["delivery_id"])
    assert message["journey_version"] == 1 and message["step"] == 0
    assert message["variant"] == "ABC"[send.variant - 1] and message["title"] == send.title
    assert message["message_ref"].startswith(f"journey:{send.pk}:")
    assert message["consumer"] in {p.pseudonym for p in people}
    # The operator tracks it by the reference it was given; the inbox does not serve it a second time.
    with at(MORNING + timedelta(minutes=5)):
        tracked = operator_client.post(
            "/api/v1/tracking/", {"events": [{"message_ref": message["message_ref"], "kind": "opened"}]}, format="json"
        )
        assert tracked.status_code == 200, tracked.content
        assert operator_client.get(f"/api/v1/inbox/{people[0].pseudonym}").json()["messages"] == []
    tick(MORNING + timedelta(minutes=3))
    assert len(receiver.delivery_ids) == 10  # a later tick sends nothing again


def test_failures_are_recorded_on_the_message_the_journey_and_the_report(
    merchant, merchant_client, dm_approved, receiver, settings
):
    settings.CAMPAIGN_WEBHOOK_ATTEMPTS = 3
    receiver.always_status = 503
    journey = _webhook_journey(merchant)
    _carts(merchant, 3)
    tick(MORNING + timedelta(minutes=2))
    sends = JourneySend.objects.filter(journey=journey)
    assert set(sends.values_list("status", flat=True)) == {SendStatus.FAILED}
    for send in sends:
        assert send.attempts == 3
        assert "HTTP 503" in send.last_error and "gave up after 3 attempts" in send.last_error
    journey.refresh_from_db()
    # Prose without the exact number of failed messages (merchants see released figures only: the report's).
    assert "did not accept some journey messages" in journey.last_error
    assert "HTTP 503" in journey.last_error and "3 journey messages" not in journey.last_error
    report = merchant_client.get(f"/api/v1/journeys/{journey.pk}/report").json()
    assert report["steps"][0]["failed"] == released_public(f"journey:{journey.pk}:step:0:failed", 3)
    assert report["steps"][0]["sent"] == released_public(f"journey:{journey.pk}:step:0:sent", 0)


def test_a_dispatch_killed_mid_post_is_sent_again_once_its_lease_runs_out(merchant, dm_approved, receiver, settings):
    journey = _webhook_journey(merchant)
    _carts(merchant, 2)
    with at(MORNING + timedelta(minutes=2)):  # the step runs; its dispatch never happens (the task is lost)
        triggers_ingest(journey_id=journey.pk)
        enrolments_step(pairs=due_claim(limit=10))
    sends = JourneySend.objects.filter(journey=journey)
    assert set(sends.values_list("status", flat=True)) == {SendStatus.PENDING}
    # A dispatch claimed them and died before it could record anything: the lease holds them for a while.
    sends.update(lease_until=MORNING + timedelta(minutes=7))
    assert journey_webhook_dispatch(journey_id=journey.pk, now=MORNING + timedelta(minutes=3))["sent"] == 0
    assert receiver.delivery_ids == []
    tick(MORNING + timedelta(minutes=8))  # the tick's sweep finds them once the lease ran out
    assert sorted(receiver.delivery_ids) == sorted(sends.values_list("pk", flat=True))
    assert set(sends.values_list("status", flat=True)) == {SendStatus.SENT}


def test_two_claimers_never_post_a_message_twice_when_a_dispatch_outlasts_its_lease(
    merchant, dm_approved, receiver, settings, monkeypatch
):
    # Non-default settings: a short lease and one message per POST, so the claimed batch takes longer to post than
    # the lease it was claimed with, and a second dispatch (the tick's sweep) claims what is not posted yet.
    settings.JOURNEY_STEP_LEASE_S = 60
    settings.CAMPAIGN_WEBHOOK_BATCH_SIZE = 1
    journey = _webhook_journey(merchant)
    _carts(merchant, 3)
    start = MORNING + timedelta(minutes=2)
    with at(start):  # the step runs; its dispatch is left to the claimers below
        triggers_ingest(journey_id=journey.pk)
        enrolments_step(pairs=due_claim(limit=10))
    second: list[dict] = []
    real_post = delivery.webhook_post
    posts = []

    def slow_post(payload, **kwargs):
        posts.append(payload)
        result = real_post(payload, **kwargs)
        if len(posts) == 1:  # while the first dispatch is still posting, its claim's lease runs out
            with at(start + timedelta(seconds=61)):
                second.append(journey_webhook_dispatch(journey_id=journey.pk))
        return result

    monkeypatch.setattr(delivery, "webhook_post", slow_post)
    with at(start):
        first = journey_webhook_dispatch(journey_id=journey.pk)

    sends = JourneySend.objects.filter(journey=journey)
    assert sorted(receiver.delivery_ids) == sorted(sends.values_list("pk", flat=True))  # each posted once
    assert set(sends.values_list("status", flat=True)) == {SendStatus.SENT}
    assert first["sent"] + second[0]["sent"] == 3
    # Nobody else may take a message while a dispatch holds it.
    with at(start + timedelta(seconds=62)):
        assert journey_webhook_dispatch(journey_id=journey.pk)["sent"] == 0
    assert len(receiver.delivery_ids) == 3


def test_the_webhook_channel_needs_the_platforms_webhook(merchant_client, settings):
    settings.OPERATOR_WEBHOOK_URL = ""
    body = {"name": "W", "trigger_kind": "event", "trigger_event": "carted()", "channel": "webhook", "steps": [SEND]}
    response = merchant_client.post("/api/v1/journeys/", body, format="json")
    assert response.status_code == 400
    assert "OPERATOR_WEBHOOK_URL" in response.content.decode()
    assert not Journey.objects.exists()
