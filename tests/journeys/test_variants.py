"""A/B/n message variants in a journey's send step: deterministic, weighted assignment recorded on each message,
validation that names the step and variant, the OpenAPI description of the steps, and released per-variant counts."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journeys.definition import send_variant, steps_validate
from journeys.engine import enrolments_step
from journeys.models import JourneyEnrolment, JourneySend, JourneyStepRun
from journeys.services import journey_activate, journey_create
from merchants.errors import Invalid
from tests.release_helpers import released_public

from .conftest import CART, MORNING, at, event, shoppers, tick

VARIANTS = [
    {"title": "A: hello from {store_name}", "body": "Plain.", "weight": 50},
    {"title": "B: 10% off at {store_name}", "body": "{offer}", "discount_percent": 10, "weight": 30},
    {"title": "C: last call", "body": "Code {coupon_code}", "coupon_code": "LAST", "weight": 20},
]
SEND = {"type": "send", "title": "Base", "body": "Base body", "products": 0, "variants": VARIANTS}


@st.composite
def weights(draw) -> list[int]:
    """2 to 5 whole percentages, each at least 1, summing to 100."""
    n = draw(st.integers(min_value=2, max_value=5))
    cuts = sorted(draw(st.lists(st.integers(1, 99), min_size=n - 1, max_size=n - 1, unique=True)))
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
    return parts


@settings(max_examples=40, deadline=None)
@given(weights=weights(), journey_id=st.integers(1, 10**9), step=st.integers(0, 49))
def test_assignment_is_deterministic_and_every_variant_is_reachable(weights, journey_id, step):
    definition = {"variants": [{"title": "t", "body": "b", "weight": w} for w in weights]}
    consumers = range(1, 4001)  # the smallest weight is 1%: all 4000 miss it with probability 0.99^4000 ≈ 3e-18
    picks = [send_variant(definition, journey_id=journey_id, step_index=step, consumer_id=c) for c in consumers]
    again = [send_variant(definition, journey_id=journey_id, step_index=step, consumer_id=c) for c in consumers]
    assert picks == again
    assert set(picks) == set(range(1, len(weights) + 1))


def test_assignment_follows_the_weights_and_differs_between_steps():
    definition = {"variants": VARIANTS}
    picks = [send_variant(definition, journey_id=7, step_index=2, consumer_id=c) for c in range(30_000)]
    shares = Counter(picks)
    for position, weight in ((1, 50), (2, 30), (3, 20)):
        assert abs(shares[position] / len(picks) - weight / 100) < 0.015
    other_step = [send_variant(definition, journey_id=7, step_index=3, consumer_id=c) for c in range(30_000)]
    assert other_step != picks  # each step is its own test


def test_a_winner_sends_everyone_the_same_variant():
    definition = {"variants": VARIANTS}
    assert {send_variant(definition, journey_id=1, step_index=0, consumer_id=c, winner=2) for c in range(500)} == {2}


@pytest.mark.parametrize(
    ("variants", "field", "words"),
    [
        ([{"title": "only one"}], "steps[1].variants", "2 to 5"),
        ([{"title": f"v{i}"} for i in range(6)], "steps[1].variants", "2 to 5"),
        ([{"title": "a", "weight": 50}, {"title": "b"}], "steps[1].variants", "every variant a weight"),
        ([{"title": "a", "weight": 60}, {"title": "b", "weight": 60}], "steps[1].variants", "sum to 120"),
        ([{"title": "a", "weight": 100}, {"title": "b", "weight": 0}], "steps[1].variants[0].weight", "1 to 99"),
        ([{"title": "a"}, {"title": "b", "body": " "}], "steps[1].variants[1].body", "needs a body"),
        ([{"title": "a"}, {"title": "{nope}"}], "steps[1].variants[1].title", "nope"),
        ([{"title": "a"}, {"title": "b", "discount_percent": 120}], "steps[1].variants[1].discount_percent", "100"),
        ([{"title": "a"}, {"title": "b", "colour": "red"}], "steps[1].variants[1].colour", "not a field"),
    ],
)
def test_validation_names_the_step_and_the_variant(merchant, variants, field, words):
    steps = [{"type": "wait", "duration": "1h"}, {"type": "send", "title": "t", "body": "b", "variants": variants}]
    with pytest.raises(Invalid) as caught:
        steps_validate(steps, merchant=merchant)
    assert caught.value.details["field"] == field
    assert caught.value.message.startswith(field) and words in caught.value.message


def test_weights_left_out_are_equal_shares(merchant):
    step = {"type": "send", "title": "t", "body": "b", "variants": [{"title": "x"}, {"title": "y"}, {"title": "z"}]}
    [normalised] = steps_validate([step], merchant=merchant)
    assert [v["weight"] for v in normalised["variants"]] == [34, 33, 33]


def _journey(merchant, steps):
    with at(MORNING):
        journey = journey_create(
            merchant=merchant,
            actor="test",
            name="Variants",
            trigger_kind="event",
            trigger_event="carted()",
            holdout_share=0,
            steps=steps,
        )
        journey_activate(journey=journey, actor="test")
    return journey


def test_each_message_records_its_variant_and_a_rerun_step_picks_the_same(merchant, dm_approved):
    journey = _journey(merchant, [SEND])
    people = shoppers(40)
    for person in people:
        event(merchant, person, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    sends = list(JourneySend.objects.filter(journey=journey).order_by("consumer_id"))
    assert len(sends) == 40
    first = {s.consumer_id: (s.variant, s.title, s.coupon_code) for s in sends}
    for s in sends:
        assert s.title == VARIANTS[s.variant - 1]["title"].replace("{store_name}", merchant.name)
        assert s.coupon_code == ("LAST" if s.variant == 3 else "")
    assert {s.variant for s in sends} == {1, 2, 3}
    # As if the batch had been rolled back by a crash: the step runs again from scratch.
    JourneySend.objects.filter(journey=journey).delete()
    JourneyStepRun.objects.filter(journey=journey).delete()
    JourneyEnrolment.objects.filter(journey=journey).update(state="active", step=0, next_run_at=MORNING)
    pairs = list(JourneyEnrolment.objects.filter(journey=journey).values_list("pk", "step"))
    with at(MORNING + timedelta(minutes=3)):
        enrolments_step(pairs=pairs)
    again = {s.consumer_id: (s.variant, s.title, s.coupon_code) for s in JourneySend.objects.filter(journey=journey)}
    assert again == first


def test_the_report_releases_per_variant_counts(merchant, merchant_client, dm_approved):
    journey = _journey(merchant, [SEND])
    for person in shoppers(30):
        event(merchant, person, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    report = merchant_client.get(f"/api/v1/journeys/{journey.pk}/report").json()
    [step] = report["steps"]
    sent = Counter(JourneySend.objects.filter(journey=journey).values_list("variant", flat=True))
    assert [v["letter"] for v in step["variants"]] == ["A", "B", "C"]
    assert [v["weight"] for v in step["variants"]] == [50, 30, 20]
    for row in step["variants"]:
        prefix = f"journey:{journey.pk}:version:1:step:0:variant:{row['position']}"
        assert row["sent"] == released_public(f"{prefix}:sent", sent[row["position"]])
        assert row["opened"] == released_public(f"{prefix}:opened", 0)
        assert row["converted"] == released_public(f"{prefix}:converted", 0)
    assert step["sent"] == released_public(f"journey:{journey.pk}:step:0:sent", 30)
    assert step["opened"] == released_public(f"journey:{journey.pk}:step:0:opened", 0)


# OpenAPI 3.0's schema objects follow JSON Schema draft 4 (exclusiveMinimum is a boolean beside minimum), the
# dialect schemathesis reads them in.
OPENAPI_30 = jsonschema.Draft4Validator


def _steps_schema(client) -> dict:
    schema = client.get("/api/v1/schema/?format=json").json()
    return schema["components"]["schemas"]["JourneyInputRequest"]["properties"]["steps"]


def test_the_openapi_schema_describes_steps_with_variants(merchant, merchant_client, dm_approved):
    schema = _steps_schema(merchant_client)
    steps = [{"type": "wait", "duration": "2h"}, SEND, {"type": "exit"}]
    jsonschema.validate(steps, schema, cls=OPENAPI_30)
    for wrong in (
        [{**SEND, "variants": VARIANTS * 2}],  # six variants
        [{**SEND, "variants": [{**VARIANTS[0], "weight": 0}, VARIANTS[1]]}],
        [{**SEND, "variants": [{**VARIANTS[0], "colour": "red"}, VARIANTS[1]]}],
        [{"type": "send", "products": 0}],  # neither a message nor variants
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema, cls=OPENAPI_30)
    body = {"name": "API", "trigger_kind": "event", "trigger_event": "carted()", "steps": steps}
    created = merchant_client.post("/api/v1/journeys/", body, format="json")
    assert created.status_code == 201, created.content
    assert [v["weight"] for v in created.json()["steps"][1]["variants"]] == [50, 30, 20]
    jsonschema.validate(created.json()["steps"], schema, cls=OPENAPI_30)
    assert "A/B test of 3 variants" in created.json()["flow"][1]["summary"]


def test_a_bad_variant_is_a_400_naming_it(merchant_client):
    bad = {**SEND, "variants": [VARIANTS[0], {**VARIANTS[1], "weight": 50, "body": "{unknown_placeholder}"}]}
    body = {"name": "API", "trigger_kind": "event", "trigger_event": "carted()", "steps": [bad]}
    response = merchant_client.post("/api/v1/journeys/", body, format="json")
    assert response.status_code == 400
    assert "steps[0].variants[1].body" in response.content.decode()


def test_a_discount_alone_makes_a_message_an_offer_for_the_step_and_for_each_variant():
    """What the send step and the webhook dispatch both ask consent for: the dispatch used to look at the coupon
    only, so a discount-only message was posted after consent to offers was withdrawn."""
    from journeys.definition import message_has_offer

    step = {"type": "send", "title": "t", "body": "b", "discount_percent": 10, "variants": [{}, {"title": "B"}]}
    assert message_has_offer(step, 1) and message_has_offer(step, 2)
    plain = {"type": "send", "title": "t", "body": "b", "variants": [{"discount_percent": 5}, {"title": "B"}]}
    assert message_has_offer(plain, 1) and not message_has_offer(plain, 2)
    assert message_has_offer({"type": "send", "title": "t", "body": "b", "coupon_code": "X"}, None)
    assert not message_has_offer({"type": "send", "title": "t", "body": "b"}, None)
