"""The journeys API: CRUD, activate and pause, the released report, and 404 for another merchant's journeys."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils.dateparse import parse_datetime

from journeys.models import EnrolmentState, Journey, JourneyEnrolment
from tests.release_helpers import released_public

from .conftest import CART, MORNING, PURCHASE, at, event, shoppers, tick

CUSTOM = {
    "name": "Outdoor carts",
    "trigger_kind": "event",
    "trigger_event": 'carted(category="outdoor")',
    "exit_condition": "purchased()",
    "holdout_share": "0.2",
    "steps": [
        {"type": "wait", "duration": "1h"},
        {"type": "branch", "condition": 'NOT purchased(within="30d")', "then": 2, "else": "exit"},
        {"type": "send", "title": "Back to {store_name}", "body": "{carted_product} is waiting.", "products": 0},
    ],
}


def test_create_list_retrieve_and_the_flow_in_the_segment_language(merchant_client, dm_approved):
    created = merchant_client.post("/api/v1/journeys/", CUSTOM, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["status"], body["version"]) == ("draft", 1)
    assert [s["type"] for s in body["flow"]] == ["wait", "branch", "send"]
    assert body["flow"][1]["condition"] == 'NOT purchased(within="30d")'
    listed = merchant_client.get("/api/v1/journeys/").json()
    assert [j["id"] for j in listed["results"]] == [body["id"]]
    from_template = merchant_client.post("/api/v1/journeys/", {"template": "abandoned_cart"}, format="json")
    assert from_template.status_code == 201
    assert from_template.json()["trigger_event"] == "carted()"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"steps": []}, "steps"),
        ({"steps": [{"type": "teleport"}]}, "steps[0].type"),
        ({"steps": [{"type": "wait", "duration": "2 weeks"}]}, "steps[0].duration"),
        ({"steps": [{"type": "branch", "condition": "country:", "then": 1}]}, "steps[0].condition"),
        ({"steps": [{"type": "send", "title": "{prodcut_1_title}", "body": "x"}]}, "steps[0].title"),
        ({"steps": [{"type": "wait", "duration": "1h", "next": 0}]}, "steps[0].next"),
        ({"trigger_event": "country:SG"}, "trigger_event"),
        # A single event is matched by category and brand only: these would have matched every cart or purchase.
        ({"trigger_event": 'carted(product="sku-1")'}, "product= does not apply"),
        ({"exit_condition": "purchased(min_spend=50)"}, "min_spend= does not apply"),
        ({"steps": [{"type": "wait_for", "event": 'purchased(merchant="x")', "timeout": "2h"}]}, "steps[0].event"),
    ],
)
def test_bad_definitions_are_400s_that_name_the_field(merchant_client, change, field):
    response = merchant_client.post("/api/v1/journeys/", {**CUSTOM, **change}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.content.decode()


@pytest.mark.parametrize(
    ("quiet", "field", "says"),
    [
        ({"quiet_start": "21:00", "quiet_end": None}, "quiet_end", "or neither"),
        ({"quiet_start": None, "quiet_end": "08:00"}, "quiet_start", "or neither"),
        ({"quiet_start": "21:00", "quiet_end": "21:00"}, "quiet_end", "same time"),
    ],
)
def test_a_journeys_own_quiet_hours_follow_the_merchants_rule(merchant_client, quiet, field, says):
    response = merchant_client.post("/api/v1/journeys/", {**CUSTOM, **quiet}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["details"]["field"] == field and says in error["message"]
    assert not Journey.objects.exists()


@pytest.mark.parametrize("written", ["21:00+08:00", "21:00Z", "2100"])
def test_a_quiet_time_with_an_offset_or_without_its_colon_is_refused_not_reread(merchant_client, written):
    # The schema promises HH:MM[:SS] without an offset; the ISO parser underneath used to drop an offset silently.
    response = merchant_client.post(
        "/api/v1/journeys/", {**CUSTOM, "quiet_start": written, "quiet_end": "08:00"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "quiet_start" in response.json()["error"]["details"]
    assert not Journey.objects.exists()


def test_activate_pause_and_their_conflicts(merchant_client, dm_approved):
    pk = merchant_client.post("/api/v1/journeys/", CUSTOM, format="json").json()["id"]
    assert merchant_client.post(f"/api/v1/journeys/{pk}/pause").status_code == 409
    assert merchant_client.post(f"/api/v1/journeys/{pk}/activate").json()["status"] == "active"
    assert merchant_client.post(f"/api/v1/journeys/{pk}/activate").status_code == 409
    assert merchant_client.delete(f"/api/v1/journeys/{pk}").status_code == 409
    assert merchant_client.post(f"/api/v1/journeys/{pk}/pause").json()["status"] == "paused"
    assert merchant_client.post(f"/api/v1/journeys/{pk}/activate").json()["status"] == "active"


def test_another_merchants_journey_is_a_404_everywhere(merchant_client, other_merchant_client, dm_approved):
    pk = merchant_client.post("/api/v1/journeys/", CUSTOM, format="json").json()["id"]
    missing = pk + 1000
    for target in (pk, missing):
        assert other_merchant_client.get(f"/api/v1/journeys/{target}").status_code == 404
        assert (
            other_merchant_client.patch(f"/api/v1/journeys/{target}", {"name": "x"}, format="json").status_code == 404
        )
        assert other_merchant_client.delete(f"/api/v1/journeys/{target}").status_code == 404
        for action in ("activate", "pause"):
            assert other_merchant_client.post(f"/api/v1/journeys/{target}/{action}").status_code == 404
        assert other_merchant_client.get(f"/api/v1/journeys/{target}/report").status_code == 404
    assert other_merchant_client.get("/api/v1/journeys/").json()["results"] == []
    assert Journey.objects.get(pk=pk).status == "draft"


def test_a_segment_trigger_must_be_your_own_segment(merchant_client, other_merchant):
    from tests.factories import SegmentFactory

    foreign = SegmentFactory(merchant=other_merchant, expression="purchased()")
    response = merchant_client.post(
        "/api/v1/journeys/",
        {**CUSTOM, "trigger_kind": "segment_entered", "trigger_segment_id": foreign.pk},
        format="json",
    )
    assert response.status_code == 404


def test_a_new_version_leaves_consumers_in_flight_on_theirs(merchant, merchant_client, dm_approved):
    with at(MORNING):
        pk = merchant_client.post("/api/v1/journeys/", {**CUSTOM, "holdout_share": "0"}, format="json").json()["id"]
        merchant_client.post(f"/api/v1/journeys/{pk}/activate")
    first, second = shoppers(2)
    event(merchant, first, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    new_steps = [{"type": "send", "title": "New version", "body": "Hello from {store_name}", "products": 0}]
    with at(MORNING + timedelta(minutes=3)):
        changed = merchant_client.patch(f"/api/v1/journeys/{pk}", {"steps": new_steps}, format="json").json()
    assert changed["version"] == 2
    event(merchant, second, CART, MORNING + timedelta(minutes=4))
    tick(MORNING + timedelta(minutes=5))
    tick(MORNING + 2 * timedelta(hours=1))
    journey = Journey.objects.get(pk=pk)
    titles = dict(journey.sends.values_list("consumer_id", "title"))
    assert titles == {second.pk: "New version", first.pk: "Back to " + merchant.name}
    versions = dict(JourneyEnrolment.objects.filter(journey=journey).values_list("consumer_id", "version__number"))
    assert versions == {first.pk: 1, second.pk: 2}


def test_the_report_releases_every_figure(merchant, merchant_client, dm_approved):
    with at(MORNING):
        pk = merchant_client.post("/api/v1/journeys/", CUSTOM, format="json").json()["id"]
        merchant_client.post(f"/api/v1/journeys/{pk}/activate")
    people = shoppers(6)
    for person in people:
        event(merchant, person, CART, MORNING + timedelta(minutes=1))
    tick(MORNING + timedelta(minutes=2))
    event(merchant, people[0], PURCHASE, MORNING + timedelta(minutes=30))
    tick(MORNING + timedelta(hours=2))
    report = merchant_client.get(f"/api/v1/journeys/{pk}/report").json()
    enrolments = JourneyEnrolment.objects.filter(journey_id=pk)
    held = enrolments.filter(state=EnrolmentState.HELD_OUT).count()
    sent = Journey.objects.get(pk=pk).sends.count()
    assert report["treatment"]["size"] == released_public(f"journey:{pk}:group:treatment:size", 6 - held)
    assert report["holdout"]["size"] == released_public(f"journey:{pk}:group:holdout:size", held)
    assert report["steps"][2]["sent"] == released_public(f"journey:{pk}:step:2:sent", sent)
    assert report["uplift"] is None  # too few to show
    schema = merchant_client.get("/api/v1/schema/?format=json").json()
    assert "/api/v1/journeys/{id}/report" in schema["paths"]


def test_a_change_based_on_a_journey_saved_since_is_a_409_and_writes_nothing(merchant_client):
    created = merchant_client.post("/api/v1/journeys/", CUSTOM, format="json").json()
    pk, seen = created["id"], created["updated_at"]
    mine = [{"type": "send", "title": "Mine", "body": "Hello from {store_name}", "products": 0}]
    theirs = [{"type": "send", "title": "Theirs", "body": "Hello from {store_name}", "products": 0}]
    # Two editors opened the same journey; the first saves its steps.
    first = merchant_client.patch(f"/api/v1/journeys/{pk}", {"steps": mine, "updated_at": seen}, format="json")
    assert first.status_code == 200, first.content
    assert first.json()["version"] == 2 and first.json()["updated_at"] != seen

    # The second, based on what it read before, is refused instead of putting its steps over the first's.
    second = merchant_client.patch(
        f"/api/v1/journeys/{pk}", {"steps": theirs, "name": "Renamed", "updated_at": seen}, format="json"
    )

    assert second.status_code == 409, second.content
    error = second.json()["error"]
    assert error["code"] == "edit_conflict" and "changed after you opened it" in error["message"]
    assert error["details"]["version"] == 2
    assert parse_datetime(error["details"]["updated_at"]) == parse_datetime(first.json()["updated_at"])
    now = merchant_client.get(f"/api/v1/journeys/{pk}").json()
    assert (now["name"], now["version"], now["steps"][0]["title"]) == (CUSTOM["name"], 2, "Mine")
    # Read again, the same change goes through.
    again = merchant_client.patch(
        f"/api/v1/journeys/{pk}", {"steps": theirs, "updated_at": now["updated_at"]}, format="json"
    )
    assert again.status_code == 200 and again.json()["version"] == 3


def test_the_schema_documents_the_edit_stamp_and_its_409(merchant_client):
    schema = merchant_client.get("/api/v1/schema/?format=json").json()
    components = schema["components"]["schemas"]
    assert "409" in schema["paths"]["/api/v1/journeys/{id}"]["patch"]["responses"]
    assert "edit_conflict" in components["PatchedJourneyInputRequest"]["properties"]["updated_at"]["description"]
    assert "updated_at" in components["JourneyOutput"]["properties"]
