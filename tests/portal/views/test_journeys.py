"""The journey page's send step card: add, edit and remove message variants (each save is a new version), with
errors that name the step and variant, and the released per-variant counts."""

from __future__ import annotations

import re

from journeys.models import Journey
from journeys.services import journey_create

SEND = {"type": "send", "title": "Hello", "body": "From {store_name}", "products": 0}


def _journey(merchant) -> Journey:
    return journey_create(
        merchant=merchant,
        actor="test",
        name="Cart",
        trigger_kind="event",
        trigger_event="carted()",
        steps=[{"type": "wait", "duration": "1h"}, SEND],
    )


def _save(client, journey, data: dict):
    return client.post(f"/journeys/{journey.pk}/steps/1/variants/", data, follow=True)


def test_a_variant_is_added_edited_and_removed_from_the_step_card(portal_client, merchant):
    journey = _journey(merchant)
    page = portal_client.get(f"/journeys/{journey.pk}/").content.decode()
    assert "Edit the message and its variants" in page and "Add variant B" in page
    response = _save(
        portal_client,
        journey,
        {
            "v0-title": "Hello",
            "v0-body": "From {store_name}",
            "v1-title": "Hi there",
            "v1-body": "{offer}",
            "v1-discount": "10",
            "v0-weight": "70",
            "v1-weight": "30",
            "auto_winner": "1",
        },
    )
    assert "now sends an A/B test of 2 variants" in response.content.decode()
    journey.refresh_from_db()
    step = journey.current_version.steps[1]
    assert journey.current_version.number == 2
    assert [(v["title"], v["weight"]) for v in step["variants"]] == [("Hello", 70), ("Hi there", 30)]
    assert step["variants"][1]["discount_percent"] == "10" and step["auto_winner"] is True
    page = portal_client.get(f"/journeys/{journey.pk}/").content.decode()
    assert 'data-testid="journey-variant-table"' in page and "Add variant C" in page
    # Remove B: the step goes back to one plain message.
    response = _save(
        portal_client,
        journey,
        {
            "v0-title": "Hello again",
            "v0-body": "From {store_name}",
            "v1-title": "Hi there",
            "v1-body": "{offer}",
            "v1-discount": "10",
            "v1-remove": "1",
        },
    )
    assert "now sends one message" in response.content.decode()
    journey.refresh_from_db()
    step = journey.current_version.steps[1]
    assert "variants" not in step and step["title"] == "Hello again" and journey.current_version.number == 3


def test_a_bad_variant_is_refused_naming_it(portal_client, merchant):
    journey = _journey(merchant)
    response = _save(
        portal_client,
        journey,
        {"v0-title": "Hello", "v0-body": "B", "v1-title": "Hi", "v1-body": "B", "v0-weight": "80", "v1-weight": "x"},
    )
    assert "Not saved: steps[1].variants[1].weight" in response.content.decode()
    journey.refresh_from_db()
    assert journey.current_version.number == 1


def test_another_merchants_step_or_a_step_that_is_not_a_send_is_not_found(portal_client, merchant, other_merchant):
    foreign = _journey(other_merchant)
    assert portal_client.post(f"/journeys/{foreign.pk}/steps/1/variants/", {"v0-title": "x"}).status_code == 404
    mine = _journey(merchant)
    assert portal_client.post(f"/journeys/{mine.pk}/steps/0/variants/", {"v0-title": "x"}).status_code == 404
    assert portal_client.post(f"/journeys/{mine.pk}/steps/9/variants/", {"v0-title": "x"}).status_code == 404


def test_a_step_card_saved_over_a_journey_changed_since_the_page_was_drawn_is_refused(portal_client, merchant):
    journey = _journey(merchant)
    drawn = portal_client.get(f"/journeys/{journey.pk}/")
    seen = re.search(r'name="updated_at" value="([^"]+)"', drawn.content.decode()).group(1)
    first = _save(portal_client, journey, {"v0-title": "First", "v0-body": "B", "updated_at": seen})
    assert "now sends one message" in first.content.decode()

    second = _save(portal_client, journey, {"v0-title": "Second", "v0-body": "B", "updated_at": seen})

    assert "Not saved: This journey was changed after you opened it" in second.content.decode()
    journey.refresh_from_db()
    assert journey.current_version.number == 2
    assert journey.current_version.steps[1]["title"] == "First"


def test_a_refused_save_shows_the_card_again_with_what_was_typed(portal_client, merchant):
    """Nothing is saved, and nothing typed is lost: the card opens again with every variant as entered (a removal
    still ticked), the reason beside them, and a 400 (a stale page: a 409), as the builder keeps its input."""
    journey = _journey(merchant)
    typed = {
        "v0-title": "Hello 👋",
        "v0-body": "Body A",
        "v0-weight": "80",
        "v1-title": "Second <b>",
        "v1-body": "Body B",
        "v1-coupon_code": "SAVE5",
        "v1-discount": "5",
        "v1-weight": "x",
        "v2-title": "Third",
        "v2-body": "Body C",
        "v2-remove": "1",
    }
    response = portal_client.post(f"/journeys/{journey.pk}/steps/1/variants/", typed)

    assert response.status_code == 400
    page = response.content.decode()
    assert 'data-testid="journey-variants-error"' in page and "Not saved: steps[1].variants[1].weight" in page
    assert '<details class="journey-variants-editor" open>' in page
    for value in ('value="Hello 👋"', ">Body A</textarea>", 'value="80"', 'value="Second &lt;b&gt;"', 'value="SAVE5"'):
        assert value in page, value
    assert 'value="x"' in page and 'value="Third"' in page
    assert re.search(r'name="v2-remove" value="1" checked', page)
    journey.refresh_from_db()
    assert journey.current_version.number == 1

    drawn = portal_client.get(f"/journeys/{journey.pk}/").content.decode()
    seen = re.search(r'name="updated_at" value="([^"]+)"', drawn).group(1)
    _save(portal_client, journey, {"v0-title": "First", "v0-body": "B", "updated_at": seen})
    stale = portal_client.post(
        f"/journeys/{journey.pk}/steps/1/variants/", {"v0-title": "Mine", "v0-body": "B", "updated_at": seen}
    )
    assert stale.status_code == 409 and 'value="Mine"' in stale.content.decode()
    # The refilled card still carries the stamp it was drawn with: saving it again as it is is refused again,
    # instead of overwriting the other edit with rows typed before it.
    kept = re.search(r'name="updated_at" value="([^"]+)"', stale.content.decode()).group(1)
    assert kept == seen
    again = portal_client.post(
        f"/journeys/{journey.pk}/steps/1/variants/", {"v0-title": "Mine", "v0-body": "B", "updated_at": kept}
    )
    assert again.status_code == 409
    journey.refresh_from_db()
    assert journey.current_version.steps[1]["title"] == "First"
