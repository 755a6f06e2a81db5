"""An A/B test in a real browser: write two messages in the wizard, launch, and read the report's per-variant rows;
a just-sent campaign's report says "too early to tell" rather than a meaningless "+0.0 pp". Screenshots at the three
sizes the portal is checked at."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from merchants.models import Merchant
from segments.services import segment_create, segment_refresh

from .conftest import LAPTOP, TABLET

pytestmark = pytest.mark.e2e

DEMO_PASSWORD = "demo-pass-2026"
PHONE = {"width": 390, "height": 844}
SIZES = (("laptop", LAPTOP), ("tablet", TABLET), ("phone", PHONE))


@pytest.fixture
def marketplace(browsing):
    call_command("demo_setup", consumers=1000, products=80, events=15_000, seed=3, replay=2, stdout=StringIO())
    merchant = Merchant.objects.get(name="Trailhead Outdoor")
    segment = segment_create(
        merchant=merchant, name="Singapore and Malaysia", expression="country:SG OR country:MY", actor="test"
    )
    segment_refresh(segment_id=segment.pk, actor="test")
    return browsing


def shots(browsing, name: str) -> None:
    for label, size in SIZES:
        browsing.page.set_viewport_size(size)
        browsing.shot(f"{name}_{label}")
    browsing.page.set_viewport_size(LAPTOP)


def test_an_ab_test_from_the_wizard_to_the_per_variant_report(marketplace):
    browsing = marketplace
    page = browsing.page
    browsing.sign_in("demo", DEMO_PASSWORD)
    browsing.goto("/campaigns/new/")
    page.get_by_role("group", name="Send to").get_by_role(
        "checkbox", name=re.compile("^Singapore and Malaysia")
    ).check()
    page.get_by_label("Campaign name").fill("Two ways to say it")
    # The wizard's own message saves as it is, with no offer (it used to need one).
    expect(page.locator("[data-preview-title]")).to_have_text("Picked for you at Trailhead Outdoor")
    page.get_by_label("Preview as").select_option("3")
    expect(page.locator("[data-preview-note]")).to_contain_text("Sample consumer 3")

    page.get_by_text("Add a variant B (and C) to compare messages").click()
    page.get_by_label("Share of variant A (%)").fill("50")
    page.get_by_label("Variant B headline").fill("New gear at {store_name}")
    page.get_by_label("Variant B text").fill("Have a look at {product_1_title}.")
    page.get_by_label("Share of variant B (%)").fill("50")
    # A recurring schedule is picked, not typed: weekly on a weekday at a local time.
    page.get_by_label("Again and again, on a schedule").check()
    repeat = page.get_by_role("combobox", name=re.compile(r"^Repeat"))
    expect(repeat).to_be_visible()
    expect(page.get_by_label(re.compile("^Custom schedule"))).to_be_hidden()
    repeat.select_option("weekly")
    expect(page.get_by_role("combobox", name=re.compile(r"^On\b"))).to_be_visible()
    repeat.select_option("monthly")
    expect(page.get_by_role("combobox", name=re.compile(r"^On\b"))).to_be_hidden()
    expect(page.get_by_label(re.compile("^On day of the month"))).to_be_visible()
    shots(browsing, "wizard_variants_and_picker")
    page.get_by_label("As soon as I launch it").check()
    # Nothing in flight first: on SQLite the live server shares one connection between its threads.
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Save draft and review").click()

    expect(page.get_by_test_id("campaign-status")).to_have_text("Draft")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Launch campaign").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("Completed", timeout=60_000)
    expect(page.get_by_test_id("campaign-state")).to_have_text("Sending finished")

    page.get_by_role("link", name="See the report").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Report: Two ways to say it")
    rows = page.get_by_test_id("variant-row")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("A")
    expect(rows.nth(1)).to_contain_text("New gear at {store_name}")
    expect(rows.nth(1)).to_contain_text("too early to tell")
    # Just sent, nobody has bought yet: no "+0.0 to +0.0 pp, p = 1.000", but "too early to tell".
    expect(page.get_by_test_id("report-uplift")).to_have_text("too early to tell")
    expect(page.get_by_role("link", name="Download CSV")).to_be_visible()
    shots(browsing, "report_early_with_variants")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns").click()
    row = page.get_by_role("row", name=re.compile("Two ways to say it"))
    expect(row).to_contain_text("sent ")
    shots(browsing, "campaign_list_kpis")
