"""A marketer makes a segment real-time in the portal and sees that it is updated in real time."""

from io import StringIO

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

DEMO_PASSWORD = "demo-pass-2026"
SIZES = {"laptop": (1366, 900), "tablet": (820, 1180), "phone": (390, 844)}


def test_a_real_time_segment_is_chosen_in_the_builder_and_says_so(browsing):
    call_command("demo_setup", consumers=1000, products=80, events=15_000, seed=3, replay=2, stdout=StringIO())
    page = browsing.page
    browsing.sign_in("demo", DEMO_PASSWORD)
    browsing.goto("/segments/new/")
    page.get_by_label("Name").fill("Live SG")
    page.get_by_label("Who is in it").fill('country:SG AND purchased(within="30d")')
    page.get_by_label("Keep it up to date").select_option("realtime")
    for name, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        browsing.shot(f"builder_{name}")
    # Nothing in flight first: on SQLite the live server shares one connection between its threads.
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_test_id("realtime-notice")).to_contain_text("Updated in real time")
    for name, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        browsing.shot(f"detail_{name}")
    browsing.goto("/segments/")
    expect(page.get_by_text("Updated in real time").first).to_be_visible()
    for name, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        browsing.shot(f"list_{name}")
