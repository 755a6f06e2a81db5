"""The journey builder in a real browser: an abandoned-cart journey built from blank (conditions through the segment
rule builder and through their text), a refusal shown at the step's field, saved, reloaded and found identical, at
a laptop's, a tablet's and a phone's width; moving a step is refused when a jump would go backwards; a read-only
role sees no controls."""

import pytest
from playwright.sync_api import expect

from journeys.models import Journey
from journeys.templates import journey_from_template
from merchants.models import Role
from tests.factories import member_create

pytestmark = pytest.mark.e2e

SIZES = {"laptop": (1366, 900), "tablet": (820, 1180), "phone": (390, 844)}

EXPECTED_STEPS = [
    {"type": "wait_for", "event": "purchased()", "timeout": "2h", "on_event": "exit"},
    {
        "type": "send",
        "title": "Still thinking about {carted_product}?",
        "body": "It is waiting in your cart at {store_name}.",
        "products": 3,
    },
    {"type": "wait", "duration": "22h"},
    {
        "type": "send",
        "title": "{offer} on your cart",
        "body": "Complete your order with {offer}.",
        "coupon_code": "CART10",
        "discount_percent": "10",
        "products": 0,
    },
]

OVERFLOW_JS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def add_step(page, *, after: str, kind: str) -> None:
    """Add a step of `kind` with the add row `after` names ("at the start" or "after step N")."""
    page.get_by_label(f"Type of the step to add {after}").select_option(kind)
    page.get_by_role("button", name=f"Add a step {after}").click()


def no_overflow(page) -> None:
    assert page.evaluate(OVERFLOW_JS) <= 0, "the page is wider than the window"


@pytest.mark.parametrize("size", list(SIZES))
def test_build_an_abandoned_cart_journey_from_blank_save_reload_identical(browsing, merchant_user, size):
    page = browsing.page
    width, height = SIZES[size]
    page.set_viewport_size({"width": width, "height": height})
    browsing.sign_in("marketer", "marketer-pass-123")
    browsing.goto("/journeys/")
    page.get_by_role("link", name="New journey").click()
    expect(page.get_by_role("heading", name="New journey", level=1)).to_be_visible()

    page.get_by_label("Name", exact=True).fill("Cart rescue")
    # The trigger through the rule builder: the text follows.
    trigger = page.locator(".jb-settings .jb-condition").nth(0)
    trigger.get_by_role("button", name="Choose the event").click()
    trigger.get_by_label("Did").select_option("carted")
    trigger.get_by_label("Add a condition").select_option("category")
    trigger.get_by_role("combobox", name="Category").fill("outdoor")
    expect(page.get_by_label("The event that starts it", exact=True)).to_have_value('carted(category="outdoor")')
    # The exit condition through its text: the rule builder follows.
    page.get_by_label("Ends at once when (optional)", exact=True).fill("purchased()")
    exit_field = page.locator(".jb-settings .jb-condition").nth(1)
    expect(exit_field.get_by_label("Did")).to_have_value("purchased")
    page.get_by_label("Re-entry").select_option("after_days")
    page.get_by_label("Days after the last entry").fill("7")

    add_step(page, after="at the start", kind="wait_for")
    first = page.locator("#jb-step-0")
    first.get_by_label("Wait at most", exact=True).fill("2")
    first.get_by_label("Wait at most: unit").select_option("h")
    first.get_by_label("If the event happens, go to").select_option("exit")

    add_step(page, after="after step 1", kind="send")
    second = page.locator("#jb-step-1")
    second.get_by_label("Title", exact=True).fill("Still thinking about {carted_product}?")
    second.get_by_label("Message", exact=True).fill("It is waiting in your cart at ")
    second.get_by_role("button", name="{store_name}").click()
    second.get_by_label("Message", exact=True).press("End")
    second.get_by_label("Message", exact=True).type(".")

    add_step(page, after="after step 2", kind="wait")
    third = page.locator("#jb-step-2")
    third.get_by_label("How long", exact=True).fill("")  # left empty: the server's refusal lands at this field

    add_step(page, after="after step 3", kind="send")
    fourth = page.locator("#jb-step-3")
    fourth.get_by_label("Title", exact=True).fill("{offer} on your cart")
    fourth.get_by_label("Message", exact=True).fill("Complete your order with {offer}.")
    fourth.get_by_label("Coupon code").fill("CART10")
    fourth.get_by_label("Discount (%)").fill("10")
    fourth.get_by_label("Recommended products").fill("0")
    expect(page.get_by_text("Unsaved changes")).to_be_visible()
    expect(first.locator(".jb-links")).to_contain_text("If the event happens → exit the journey")

    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Create journey").click()
    expect(page.locator("[data-jb-error]")).to_contain_text("step 3 (duration)")
    expect(third.locator('[data-error-for="steps[2].duration"]')).to_contain_text("a duration is a number and a unit")
    expect(third.get_by_label("How long", exact=True)).to_have_attribute("aria-invalid", "true")
    assert Journey.objects.count() == 0  # nothing half-written
    browsing.shot(f"refused_{size}")
    no_overflow(page)

    third.get_by_label("How long", exact=True).fill("22")
    third.get_by_label("How long: unit").select_option("h")
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Create journey").click()
    expect(page.locator(".messages")).to_contain_text("created as a draft")

    journey = Journey.objects.get()
    assert journey.name == "Cart rescue"
    assert journey.trigger_kind == "event"
    assert journey.trigger_event == 'carted(category="outdoor")'
    assert journey.exit_condition == "purchased()"
    assert (journey.reentry, journey.reentry_days) == ("after_days", 7)
    assert journey.current_version.steps == EXPECTED_STEPS

    page.reload()
    page.wait_for_load_state("networkidle")
    expect(page.get_by_label("Name", exact=True)).to_have_value("Cart rescue")
    expect(page.get_by_label("The event that starts it", exact=True)).to_have_value('carted(category="outdoor")')
    trigger = page.locator(".jb-settings .jb-condition").nth(0)
    expect(trigger.get_by_role("combobox", name="Category")).to_have_value("outdoor")
    expect(page.locator(".jb-step")).to_have_count(4)
    expect(page.locator("#jb-step-2").get_by_label("How long", exact=True)).to_have_value("22")
    expect(page.locator("#jb-step-3").get_by_label("Coupon code")).to_have_value("CART10")
    expect(page.get_by_text("Unsaved changes")).to_be_hidden()
    for name in SIZES if size == "laptop" else [size]:
        page.set_viewport_size({"width": SIZES[name][0], "height": SIZES[name][1]})
        no_overflow(page)
        browsing.shot(f"saved_{name}")
    # Saving what was loaded changes nothing: the same document comes back.
    page.get_by_role("button", name="Save journey").click()
    expect(page.locator(".messages")).to_contain_text("“Cart rescue” saved.")
    journey.refresh_from_db()
    assert journey.current_version.number == 1
    assert journey.current_version.steps == EXPECTED_STEPS


def test_moves_keep_jumps_forward_and_a_live_journey_gets_a_new_version(browsing, merchant_user, approve_activity):
    from journeys.services import journey_activate

    journey = journey_from_template(merchant=merchant_user.memberships.get().merchant, key="abandoned_cart", actor="t")
    journey_activate(journey=journey, actor="test")
    page = browsing.page
    browsing.sign_in("marketer", "marketer-pass-123")
    browsing.goto(f"/journeys/{journey.pk}/")
    page.get_by_role("link", name="Edit in the builder").click()
    expect(page.get_by_text("Saving changed steps makes version 2")).to_be_visible()
    page.wait_for_load_state("networkidle")
    expect(page.get_by_label("Starts when")).to_be_disabled()  # an active journey's trigger is locked
    expect(page.get_by_label("The event that starts it", exact=True)).to_be_disabled()

    # Step 1 jumps to step 2: moving step 1 below it would make that jump go backwards, so the move is refused.
    page.locator("#jb-step-0").get_by_label("If the event happens, go to").select_option("1")
    page.get_by_role("button", name="Move step 1 down").click()
    expect(page.locator(".jb-save")).to_contain_text("cannot move down")
    expect(page.locator(".jb-step").nth(0)).to_contain_text("Wait for an event")
    page.locator("#jb-step-0").get_by_label("If the event happens, go to").select_option("exit")
    page.get_by_role("button", name="Move step 3 down").click()
    expect(page.locator(".jb-step").nth(3)).to_contain_text("Wait")
    page.get_by_role("button", name="Remove step 4").click()
    expect(page.locator(".jb-step")).to_have_count(3)
    browsing.shot("live_edited")
    # Leaving with unsaved changes asks first; staying keeps them.
    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.dismiss()))
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_text("Unsaved changes")).to_be_visible()
    assert dialogs == ["beforeunload"]
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Save journey").click()
    expect(page.locator(".messages")).to_contain_text("its steps are version 2")
    journey.refresh_from_db()
    assert journey.status == "active"
    assert [step["type"] for step in journey.current_version.steps] == ["wait_for", "send", "send"]
    assert journey.versions.count() == 2


def test_a_read_only_role_sees_the_flow_without_controls(browsing, merchant):
    member_create(merchant=merchant, role=Role.ANALYST, username="analyst", password="analyst-pass-123")
    journey = journey_from_template(merchant=merchant, key="abandoned_cart", actor="test")
    page = browsing.page
    browsing.sign_in("analyst", "analyst-pass-123")
    browsing.goto(f"/journeys/{journey.pk}/edit/")
    expect(page.get_by_text("can read this journey but not change it")).to_be_visible()
    expect(page.locator(".jb-step")).to_have_count(4)
    expect(page.get_by_role("button", name="Save journey")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove step 1")).to_have_count(0)
    expect(page.get_by_label("Name", exact=True)).to_be_disabled()
    browsing.shot("read_only")


def test_keys_without_controls_survive_and_variants_are_edited_in_place(browsing, merchant_user):
    from journeys.services import journey_create

    steps = [
        {
            "type": "send",
            "title": "Hello from {store_name}",
            "body": "New picks: {products}.",
            "products": 3,
            "variants": [
                {"title": "A", "body": "Body A", "weight": 50},
                {"title": "B", "body": "Body B", "coupon_code": "B10", "discount_percent": "10", "weight": 50},
            ],
            "auto_winner": True,
        },
        {"type": "branch", "condition": 'viewed(within="7d")', "then": "exit", "next": 2},
        {"type": "send", "title": "Hi", "body": "From {store_name}.", "products": 0},
    ]
    merchant = merchant_user.memberships.get().merchant
    journey = journey_create(
        merchant=merchant, actor="test", name="Kept", trigger_kind="event", trigger_event="purchased()", steps=steps
    )
    page = browsing.page
    browsing.sign_in("marketer", "marketer-pass-123")
    browsing.goto(f"/journeys/{journey.pk}/edit/")
    page.wait_for_load_state("networkidle")
    page.get_by_label("Weight (variant 2)").fill("80")
    page.get_by_label("Title (variant 1)").fill("A, again")
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Save journey").click()
    # Weights must add up to 100: the refusal lands at the variants, nothing is written.
    expect(page.locator("[data-jb-error]")).to_contain_text("variants")
    assert journey.versions.count() == 1
    page.get_by_label("Weight (variant 1)").fill("20")
    # The last send step becomes an A/B test of two variants with equal shares.
    last = page.locator("#jb-step-2")
    last.get_by_text("Message variants").click()
    last.get_by_role("button", name="Make this an A/B test").click()
    last.get_by_label("Title (variant 2)").fill("Hi again")
    browsing.shot("variants")
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Save journey").click()
    expect(page.locator(".messages")).to_contain_text("saved")
    journey.refresh_from_db()
    saved = journey.current_version.steps
    assert saved[0]["auto_winner"] is True  # a key the builder has no control for
    assert saved[0]["variants"] == [
        {"title": "A, again", "body": "Body A", "weight": 20},
        {"title": "B", "body": "Body B", "coupon_code": "B10", "discount_percent": "10", "weight": 80},
    ]
    assert saved[1] == steps[1]
    assert [v["title"] for v in saved[2]["variants"]] == ["Hi", "Hi again"]
    assert [v["weight"] for v in saved[2]["variants"]] == [50, 50]


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_a_save_after_signing_out_in_another_tab_says_to_sign_in_again(browsing, merchant_user, size):
    page = browsing.page
    width, height = SIZES[size]
    page.set_viewport_size({"width": width, "height": height})
    browsing.sign_in("marketer", "marketer-pass-123")
    browsing.goto("/journeys/build/")
    page.get_by_label("Name", exact=True).fill("Cart rescue")
    page.get_by_label("The event that starts it", exact=True).fill("carted()")
    add_step(page, after="at the start", kind="wait")

    other_tab = browsing.context.new_page()
    other_tab.goto(browsing.url("/"))
    other_tab.get_by_role("button", name="Sign out").click()
    other_tab.wait_for_url("**/login/")
    other_tab.close()

    page.get_by_role("button", name="Create journey").click()

    refusal = page.locator("[data-jb-error]")
    expect(refusal).to_be_visible()
    expect(refusal).to_contain_text("Sign in again")
    expect(page.get_by_text("could not be sent")).to_have_count(0)
    assert page.url.endswith("/journeys/build/")  # the work is still on the page, not swapped for the login page
    assert Journey.objects.count() == 0
    no_overflow(page)
    browsing.shot(f"signed_out_{size}", full_page=False)

    # Signed in again in another tab, as the message says, the same page saves: nothing typed is lost.
    other_tab = browsing.context.new_page()
    other_tab.goto(browsing.url("/login/"))
    other_tab.get_by_label("Username").fill("marketer")
    other_tab.get_by_label("Password").fill("marketer-pass-123")
    other_tab.get_by_role("button", name="Sign in").click()
    other_tab.wait_for_load_state()
    other_tab.close()

    page.get_by_role("button", name="Create journey").click()
    page.wait_for_url("**/journeys/*/edit/")
    assert Journey.objects.get().name == "Cart rescue"


def test_quiet_hours_ending_on_a_second_keep_it_through_a_save(browsing, merchant_user):
    """The API keeps HH:MM:SS and quiet windows end on their second: the builder shows and saves the seconds it was
    given, instead of cutting 21:00:30 to 21:00 on every save of the journey."""
    from datetime import time

    from journeys.services import journey_create

    merchant = merchant_user.memberships.get().merchant
    journey = journey_create(
        merchant=merchant,
        actor="test",
        name="Quiet to the second",
        trigger_kind="event",
        trigger_event="purchased()",
        quiet_start=time(21, 0, 30),
        quiet_end=time(8, 0),
        steps=[{"type": "send", "title": "Hi", "body": "From {store_name}.", "products": 0}],
    )
    page = browsing.page
    browsing.sign_in("marketer", "marketer-pass-123")
    browsing.goto(f"/journeys/{journey.pk}/edit/")
    page.wait_for_load_state("networkidle")
    page.get_by_label("Name").fill("Quiet to the second, renamed")
    page.get_by_role("button", name="Save journey").click()
    expect(page.locator(".messages")).to_contain_text("saved")
    journey.refresh_from_db()
    assert (journey.name, journey.quiet_start, journey.quiet_end) == (
        "Quiet to the second, renamed",
        time(21, 0, 30),
        time(8, 0),
    )
