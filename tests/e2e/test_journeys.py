"""The journey page in a real browser: create from a template, read the flow of steps, activate, pause."""

import pytest
from playwright.sync_api import expect

from journeys.models import Journey

pytestmark = pytest.mark.e2e

SIZES = {"laptop": (1366, 900), "tablet": (820, 1180), "phone": (390, 844)}


def test_create_from_a_template_read_the_flow_activate_and_pause(browsing, merchant_user, approve_activity):
    page = browsing.page
    browsing.sign_in("marketer", "marketer-pass-123")
    page.get_by_role("link", name="Journeys").click()
    expect(page.get_by_role("heading", name="Journeys", level=1)).to_be_visible()
    page.locator("form", has_text="Abandoned cart").get_by_role("button", name="Use this template").click()
    expect(page.get_by_role("heading", name="Abandoned cart")).to_be_visible()
    steps = page.locator(".journey-step")
    expect(steps).to_have_count(4)
    expect(steps.nth(0)).to_contain_text("purchased()")
    expect(steps.nth(1)).to_contain_text("Still thinking about {carted_product}?")
    page.get_by_role("button", name="Activate").click()
    expect(page.get_by_text("is active")).to_be_visible()
    journey = Journey.objects.get()
    assert journey.status == "active"
    for name, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        browsing.shot(f"journey_{name}")
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    journey.refresh_from_db()
    assert journey.status == "paused"
    browsing.goto("/journeys/")
    page.set_viewport_size({"width": 1366, "height": 900})
    expect(page.get_by_role("link", name="Abandoned cart")).to_be_visible()
    browsing.shot("journey_list")


def test_another_merchants_journey_page_is_not_found(browsing, merchant_user, other_merchant):
    from journeys.templates import journey_from_template

    foreign = journey_from_template(merchant=other_merchant, key="post_purchase", actor="test")
    browsing.sign_in("marketer", "marketer-pass-123")
    response = browsing.goto(f"/journeys/{foreign.pk}/")
    assert response.status == 404


def test_a_refused_variant_edit_keeps_what_was_typed_at_every_width(browsing, merchant_user, approve_activity):
    browsing.sign_in("marketer", "marketer-pass-123")
    page = browsing.page
    page.get_by_role("link", name="Journeys").click()
    page.locator("form", has_text="Abandoned cart").get_by_role("button", name="Use this template").click()
    editor = page.locator(".journey-variants-editor").first
    editor.locator("summary").click()
    editor.get_by_label("Title").nth(1).fill("Ein zweiter Versuch ✨")
    editor.get_by_label("Body").nth(1).fill("Noch da?")
    editor.get_by_label("Weight %").nth(0).fill("50")
    editor.get_by_label("Weight %").nth(1).fill("fifty")
    editor.get_by_role("button", name="Save the messages").click()

    editor = page.locator(".journey-variants-editor").first
    expect(editor.get_by_test_id("journey-variants-error")).to_contain_text("Not saved:")
    expect(editor.get_by_label("Title").nth(1)).to_have_value("Ein zweiter Versuch ✨")
    expect(editor.get_by_label("Weight %").nth(1)).to_have_value("fifty")
    assert Journey.objects.get().current_version.number == 1
    for name, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        editor.get_by_test_id("journey-variants-error").scroll_into_view_if_needed()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
        browsing.shot(f"journey_variants_refused_{name}")
