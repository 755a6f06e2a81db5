"""The store's settings page in a real browser: quiet hours saved, refused half-filled, at laptop and phone sizes."""

import re
from datetime import time

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

SIZES = {"laptop": (1366, 900), "phone": (390, 844)}


def test_a_marketer_sets_quiet_hours_from_the_navigation(browsing, merchant_user, merchant):
    browsing.sign_in("marketer", "marketer-pass-123")
    page = browsing.page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page).to_have_url(re.compile(r"/settings/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Settings")
    expect(page.get_by_test_id("time-zone")).to_have_text(merchant.time_zone)

    page.get_by_label("Quiet from").fill("22:00")
    page.get_by_role("button", name="Save quiet hours").click()
    expect(page.locator("#id_quiet_end_error")).to_contain_text("Give both the start and the end")
    browsing.shot("refused")

    page.get_by_label("Quiet until").fill("07:30")
    page.get_by_role("button", name="Save quiet hours").click()
    expect(page.get_by_role("status")).to_contain_text("Quiet hours saved: 22:00 to 07:30")
    expect(page.get_by_label("Quiet from")).to_have_value("22:00")
    merchant.refresh_from_db()
    assert (merchant.quiet_start, merchant.quiet_end) == (time(22), time(7, 30))
    for name, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        browsing.shot(f"settings_{name}")
