"""The automatic winner of a journey send step (auto_winner): the campaigns' rule on released figures, recorded
once with its reason, after which every consumer gets the winning variant."""

from __future__ import annotations

from datetime import timedelta

from journeys.definition import send_variant
from journeys.models import JourneyEnrolment, JourneySend, JourneyStepWinner, JourneyTrackingEvent
from journeys.winner import journey_winners_pick

from .conftest import MORNING
from .test_variants import _journey

STEP = {
    "type": "send",
    "title": "t",
    "body": "b",
    "products": 0,
    "auto_winner": True,
    "variants": [{"title": "A plain"}, {"title": "B better"}],
}


def _sends(journey, *, per_variant: int, converted: dict[int, int]) -> None:
    version = journey.current_version
    enrolments = JourneyEnrolment.objects.bulk_create(
        JourneyEnrolment(journey=journey, version=version, consumer_id=c, entered_at=MORNING, state="completed")
        for c in range(1, 2 * per_variant + 1)
    )
    sends = JourneySend.objects.bulk_create(
        JourneySend(
            enrolment=e,
            journey=journey,
            merchant_id=journey.merchant_id,
            consumer_id=e.consumer_id,
            step=0,
            variant=1 if i < per_variant else 2,
            title="x",
            created_at=MORNING,
        )
        for i, e in enumerate(enrolments)
    )
    JourneyTrackingEvent.objects.bulk_create(
        JourneyTrackingEvent(send=s, kind="converted", occurred_at=MORNING + timedelta(hours=1), idempotency_key="c")
        for position, n in converted.items()
        for s in [s for s in sends if s.variant == position][:n]
    )


def test_a_clear_winner_is_recorded_and_then_sent_to_everyone(merchant, dm_approved, settings):
    settings.CAMPAIGN_VARIANT_MIN_SAMPLE = 1000
    journey = _journey(merchant, [STEP])
    assert journey_winners_pick(journey_id=journey.pk, now=MORNING) == []  # nothing sent yet: nothing released
    _sends(journey, per_variant=1500, converted={1: 300, 2: 700})
    assert journey_winners_pick(journey_id=journey.pk, now=MORNING + timedelta(days=2)) == [0]
    winner = JourneyStepWinner.objects.get(journey=journey)
    assert (winner.step, winner.variant) == (0, 2)
    assert "Variant B converted best" in winner.reason
    assert journey_winners_pick(journey_id=journey.pk, now=MORNING + timedelta(days=3)) == []  # settled once
    step = journey.current_version.steps[0]
    assert {send_variant(step, journey_id=journey.pk, step_index=0, consumer_id=c, winner=2) for c in range(99)} == {2}


def test_no_winner_while_the_variants_convert_alike(merchant, dm_approved, settings):
    settings.CAMPAIGN_VARIANT_MIN_SAMPLE = 1000
    journey = _journey(merchant, [STEP])
    # Large enough that the release noise (a standard deviation of 20 per count) cannot fake a lead either.
    _sends(journey, per_variant=5000, converted={1: 1350, 2: 1360})
    assert journey_winners_pick(journey_id=journey.pk, now=MORNING + timedelta(days=2)) == []
    assert not JourneyStepWinner.objects.exists()
