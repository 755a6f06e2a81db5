"""The scope switch in a real browser: the dashboard and the tag explorer count the whole marketplace or only the
merchant's customers, say which on every count, remember the choice, and a segment saved "among my customers"
shows that on its page."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

DEMO_PASSWORD = "demo-pass-2026"
SIZES = {"laptop": (1366, 900), "tablet": (820, 1180), "phone": (390, 844)}


@pytest.fixture
def marketplace(browsing):
    call_command("demo_setup", consumers=1000, products=80, events=15_000, seed=3, replay=2, stdout=StringIO())
    return browsing


def test_switching_between_the_marketplace_and_my_customers(marketplace):
    browsing = marketplace
    page = browsing.page
    browsing.sign_in("demo", DEMO_PASSWORD)

    # The dashboard starts with the whole marketplace, and says so.
    expect(page.get_by_test_id("scope-label")).to_have_text("in the whole marketplace")
    whole = page.get_by_test_id("population").inner_text()
    page.get_by_label("Count consumers").select_option("my_customers")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_test_id("scope-label")).to_have_text("among your customers")
    mine = page.get_by_test_id("population").inner_text()
    # Released numbers (docs/privacy.md): the customers are a part of the marketplace, never more.
    if mine[0].isdigit() and whole[0].isdigit():
        assert int(mine.replace(",", "")) <= int(whole.replace(",", ""))
    browsing.shot("dashboard_my_customers")

    # The choice is remembered: the tag explorer counts the customers too, until switched back.
    page.get_by_role("link", name="Tag explorer").first.click()
    expect(page.get_by_test_id("scope-label")).to_have_text("among your customers")
    expect(page.get_by_label("Count consumers")).to_have_value("my_customers")
    browsing.shot("tags_my_customers")

    # A new segment starts in the remembered scope; saved, its page says whom its size counts.
    page.get_by_role("link", name="Segments", exact=True).click()
    page.get_by_role("link", name="New segment").click()
    expect(page.locator("select[name=scope]")).to_have_value("my_customers")
    page.get_by_label("Who is in it").fill("country:SG")
    # The live estimate counts in the form's scope, and says so.
    expect(page.locator("[data-estimate-status]")).to_contain_text("among your customers")
    page.get_by_label("Count consumers").select_option("marketplace")
    expect(page.locator("[data-estimate-status]")).to_contain_text("in the whole marketplace")
    page.get_by_label("Count consumers").select_option("my_customers")
    page.get_by_label("Name").fill("Singapore customers")
    browsing.shot("builder_scope")
    # Nothing in flight first: on SQLite the live server shares one connection between its threads.
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Singapore customers")
    expect(page.get_by_test_id("scope-label").first).to_have_text("among your customers")
    browsing.shot("segment_my_customers")

    page.get_by_role("link", name="Tag explorer").first.click()
    page.get_by_label("Count consumers").select_option("marketplace")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_test_id("scope-label")).to_have_text("in the whole marketplace")
    expect(page).to_have_url(re.compile(r"scope=marketplace"))

    # Screenshots of what changed at the three sizes looked at.
    for name, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        browsing.goto("/?scope=my_customers")
        browsing.shot(f"dashboard_{name}")
        browsing.goto("/segments/new/")
        browsing.shot(f"builder_{name}")
