"""The journey builder's pages and its save: create blank, edit a draft, edit a live journey (a new version), the
server's refusal named at the step's field with nothing written, another merchant's journey, and read-only roles."""

import json

import pytest

from journeys.models import Journey, JourneyStatus, JourneyVersion
from journeys.services import journey_activate
from journeys.templates import journey_from_template
from tests.factories import SegmentFactory

ABANDONED_CART = {
    "name": "Cart reminder",
    "trigger_kind": "event",
    "trigger_event": 'carted(category="outdoor")',
    "exit_condition": "purchased()",
    "holdout_share": "0.100",
    "reentry": "after_days",
    "reentry_days": 7,
    "quiet_start": None,
    "quiet_end": None,
    "frequency_cap": None,
    "frequency_window_days": 7,
    "attribution_window_days": 7,
    "steps": [
        {"type": "wait_for", "event": "purchased()", "timeout": "2h", "on_event": "exit"},
        {"type": "branch", "condition": 'viewed(within="7d", min_count=2)', "then": 3, "else": 2},
        {"type": "send", "title": "Still thinking about {carted_product}?", "body": "At {store_name}.", "products": 3},
        {"type": "wait", "duration": "22h"},
        {
            "type": "send",
            "title": "{offer} on your cart",
            "body": "Complete your order with {offer}.",
            "coupon_code": "CART10",
            "discount_percent": "10",
            "products": 0,
        },
    ],
}


def post_json(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def draft_journey(merchant):
    return journey_from_template(merchant=merchant, key="abandoned_cart", actor="test")


def test_the_blank_builder_opens_and_creating_saves_a_draft_with_its_steps(portal_client, merchant):
    page = portal_client.get("/journeys/build/")
    assert page.status_code == 200
    assert "journey-builder.js" in page.content.decode() and "rule-builder.js" in page.content.decode()
    assert Journey.objects.count() == 0  # opening the builder stores nothing

    response = post_json(portal_client, "/journeys/build/save/", ABANDONED_CART)

    assert response.status_code == 201, response.content
    journey = Journey.objects.get(merchant=merchant)
    assert response.json()["edit_url"] == f"/journeys/{journey.pk}/edit/"
    assert journey.status == JourneyStatus.DRAFT
    assert journey.name == "Cart reminder"
    assert journey.trigger_event == 'carted(category="outdoor")'
    assert journey.reentry_days == 7
    assert journey.current_version.number == 1
    assert journey.current_version.steps == ABANDONED_CART["steps"]


def test_editing_a_draft_keeps_keys_the_builder_has_no_controls_for(portal_client, draft_journey):
    steps = [dict(step) for step in draft_journey.current_version.steps]
    steps[1]["variants"] = [{"title": "A", "body": "B", "weight": 30}, {"title": "C", "body": "D", "weight": 70}]
    steps[1]["auto_winner"] = True  # keys the builder's controls do not cover
    steps[2] = {"type": "wait", "until": "09:00"}
    body = {**ABANDONED_CART, "name": "Cart nudge", "trigger_event": "carted()", "steps": steps}

    response = post_json(portal_client, f"/journeys/{draft_journey.pk}/save/", body)

    assert response.status_code == 200, response.content
    draft_journey.refresh_from_db()
    assert draft_journey.name == "Cart nudge"
    assert draft_journey.current_version.number == 2
    assert draft_journey.current_version.steps[1]["variants"] == steps[1]["variants"]
    assert draft_journey.current_version.steps[1]["auto_winner"] is True
    assert draft_journey.current_version.steps[2] == {"type": "wait", "until": "09:00"}
    page = portal_client.get(f"/journeys/{draft_journey.pk}/edit/").content.decode()
    assert '"variants"' in page  # the builder starts from the stored steps, unknown keys included


def test_editing_a_live_journey_adds_a_version_and_in_flight_consumers_keep_theirs(
    portal_client, draft_journey, approve_activity
):
    journey_activate(journey=draft_journey, actor="test")
    first = draft_journey.current_version
    steps = [dict(step) for step in first.steps]
    steps[1]["title"] = "Your cart misses you"
    body = {**ABANDONED_CART, "trigger_event": "carted()", "steps": steps}

    response = post_json(portal_client, f"/journeys/{draft_journey.pk}/save/", body)

    assert response.status_code == 200, response.content
    assert response.json()["version"] == 2
    draft_journey.refresh_from_db()
    assert draft_journey.status == JourneyStatus.ACTIVE
    assert draft_journey.current_version.steps[1]["title"] == "Your cart misses you"
    first.refresh_from_db()
    assert first.steps[1]["title"] == "Still thinking about {carted_product}?"  # versions are immutable
    page = portal_client.get(f"/journeys/{draft_journey.pk}/edit/").content.decode()
    assert "new version" in page or "version 3" in page  # the page says what saving a live journey does


def test_changing_the_trigger_of_an_active_journey_is_refused_with_nothing_written(
    portal_client, draft_journey, approve_activity
):
    journey_activate(journey=draft_journey, actor="test")
    body = {**ABANDONED_CART, "trigger_event": "viewed()", "name": "Renamed"}

    response = post_json(portal_client, f"/journeys/{draft_journey.pk}/save/", body)

    assert response.status_code == 409
    assert "pause it first" in response.json()["error"]["message"]
    draft_journey.refresh_from_db()
    assert draft_journey.name == "Abandoned cart"
    assert draft_journey.versions.count() == 1


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (lambda s: s[3].update(duration="3 weeks"), "steps[3].duration", "a duration is a number and a unit"),
        (lambda s: s[1].update(condition="viewed(within="), "steps[1].condition", ""),
        (lambda s: s[0].update(event="country:SG"), "steps[0].event", "expected one action"),
        (lambda s: s[1].update(then=0), "steps[1].then", "a later step's index"),
        (lambda s: s[4].update(body="{unknown}"), "steps[4].body", "Unknown placeholder"),
    ],
)
def test_a_refused_step_names_its_field_and_nothing_is_written(portal_client, draft_journey, change, field, says):
    steps = json.loads(json.dumps(ABANDONED_CART["steps"]))
    change(steps)
    body = {**ABANDONED_CART, "name": "Should not be written", "steps": steps}

    response = post_json(portal_client, f"/journeys/{draft_journey.pk}/save/", body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == field
    assert says in error["message"]
    draft_journey.refresh_from_db()
    assert draft_journey.name == "Abandoned cart"  # the fields were not saved without the steps
    assert JourneyVersion.objects.filter(journey=draft_journey).count() == 1


def test_a_refused_journey_field_names_the_field(portal_client):
    response = post_json(portal_client, "/journeys/build/save/", {**ABANDONED_CART, "holdout_share": "0.9"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "holdout_share"
    response = post_json(portal_client, "/journeys/build/save/", {**ABANDONED_CART, "trigger_event": "carted("})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "trigger_event"
    assert Journey.objects.count() == 0


def test_a_segment_trigger_must_be_one_of_the_merchants_own_segments(portal_client, merchant, other_merchant):
    foreign = SegmentFactory(merchant=other_merchant, name="Theirs", expression='purchased(within="30d")')
    own = SegmentFactory(merchant=merchant, name="Mine", expression='purchased(within="30d")')
    body = {**ABANDONED_CART, "trigger_kind": "segment_entered", "trigger_event": "", "trigger_segment_id": foreign.pk}

    refused = post_json(portal_client, "/journeys/build/save/", body)
    created = post_json(portal_client, "/journeys/build/save/", {**body, "trigger_segment_id": own.pk})

    assert refused.status_code == 404
    assert refused.json()["error"]["field"] == "trigger_segment_id"
    assert created.status_code == 201
    assert Journey.objects.get().trigger_segment == own
    assert "Mine" in portal_client.get("/journeys/build/").content.decode()
    assert "Theirs" not in portal_client.get("/journeys/build/").content.decode()


def test_another_merchants_journey_is_not_found_in_the_builder_and_its_save(portal_client, other_merchant):
    foreign = journey_from_template(merchant=other_merchant, key="post_purchase", actor="test")

    assert portal_client.get(f"/journeys/{foreign.pk}/edit/").status_code == 404
    assert post_json(portal_client, f"/journeys/{foreign.pk}/save/", ABANDONED_CART).status_code == 404
    foreign.refresh_from_db()
    assert foreign.name == "Post-purchase cross-sell"


def test_a_role_without_the_campaign_capability_reads_the_builder_but_cannot_save(analyst_client, draft_journey):
    page = analyst_client.get(f"/journeys/{draft_journey.pk}/edit/")
    assert page.status_code == 200
    assert page.context["builder"]["readonly"] is True
    assert "can read this journey but not change it" in page.content.decode()

    assert analyst_client.get("/journeys/build/").status_code == 403
    assert post_json(analyst_client, f"/journeys/{draft_journey.pk}/save/", ABANDONED_CART).status_code == 403
    assert post_json(analyst_client, "/journeys/build/save/", ABANDONED_CART).status_code == 403
    draft_journey.refresh_from_db()
    assert draft_journey.versions.count() == 1
    assert Journey.objects.count() == 1


def test_a_body_that_is_not_a_journey_object_is_a_400(portal_client, draft_journey):
    url = f"/journeys/{draft_journey.pk}/save/"
    assert portal_client.post(url, data="not json", content_type="application/json").status_code == 400
    assert post_json(portal_client, url, ["a", "list"]).status_code == 400
    response = post_json(portal_client, url, {**ABANDONED_CART, "steps": "no"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "steps"


def test_a_save_over_a_journey_saved_since_the_builder_opened_is_refused_with_nothing_written(
    portal_client, draft_journey
):
    opened = portal_client.get(f"/journeys/{draft_journey.pk}/edit/").context["builder"]["journey"]["updated_at"]
    assert opened
    url = f"/journeys/{draft_journey.pk}/save/"
    first = post_json(portal_client, url, {**ABANDONED_CART, "name": "First", "updated_at": opened})
    assert first.status_code == 200, first.content

    # A second window opened at the same time saves its own version of the journey.
    second = post_json(
        portal_client,
        url,
        {**ABANDONED_CART, "name": "Second", "steps": ABANDONED_CART["steps"][:3], "updated_at": opened},
    )

    assert second.status_code == 409
    assert second.json()["error"]["code"] == "edit_conflict"
    assert "Reload it" in second.json()["error"]["message"]
    draft_journey.refresh_from_db()
    assert draft_journey.name == "First"
    assert draft_journey.current_version.steps == ABANDONED_CART["steps"]


def test_steps_nested_deeper_than_the_serializer_can_read_are_a_400_not_a_500(portal_client):
    """json.loads takes a few hundred levels more than the serializer's JSONField can dump back: the builder's save
    answers such a body with a JSON 400, as the API's exception handler does, and stores nothing."""
    # Where exactly the serializer gives up depends on the stack already in use: every depth around it.
    for depth in range(700, 1000, 3):
        body = '{"name": "deep", "trigger_kind": "event", "trigger_event": "carted()", "steps": ' + "[" * depth
        body += "]" * depth + "}"
        response = portal_client.post("/journeys/build/save/", data=body, content_type="application/json")
        assert response.status_code == 400, (depth, response.status_code)
        assert response.json()["error"]["code"] in ("bad_request", "invalid")
    assert not Journey.objects.exists()
