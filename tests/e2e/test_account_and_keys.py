"""Signing in, switching merchant, API keys and the data-use page, in a real browser."""

import re

import pytest
from playwright.sync_api import expect

from merchants.models import ApiKey, Role
from merchants.services import membership_grant

pytestmark = pytest.mark.e2e


def test_sign_in_rejects_a_wrong_password_then_lands_on_the_dashboard(browsing, merchant_user):
    page = browsing.page
    browsing.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("Username").fill("marketer")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    browsing.shot("sign_in_error")

    page.get_by_label("Password").fill("marketer-pass-123")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Outdoor")
    browsing.shot("dashboard")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_switching_merchant_changes_what_every_page_shows(browsing, merchant_user, other_merchant):
    membership_grant(user=merchant_user, merchant=other_merchant, role=Role.ANALYST)
    browsing.sign_in("marketer", "marketer-pass-123")
    page = browsing.page
    browsing.goto("/api-keys/")
    page.get_by_label("Merchant").select_option(label="Globex Beauty")
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_role("status")).to_contain_text("You are now working on Globex Beauty")
    # Still on the keys page, now for Globex, where this user is an analyst and may not create keys.
    expect(page.get_by_role("heading", level=1)).to_have_text("API keys")
    expect(page.get_by_text("can see the keys but not create or revoke them")).to_be_visible()
    expect(page.get_by_role("button", name="Create key")).to_have_count(0)
    browsing.shot("switched_to_analyst_merchant")


def test_api_key_is_shown_once_listed_by_prefix_and_revocable(browsing, merchant_user):
    browsing.sign_in("marketer", "marketer-pass-123")
    page = browsing.page
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_text("No keys yet")).to_be_visible()

    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#id_name_error")).to_contain_text("Give the key a name")
    browsing.shot("create_key_error")

    page.get_by_label("Key name").fill("Email tool sync")
    page.get_by_role("button", name="Create key").click()
    raw_key = page.get_by_test_id("new-key").inner_text().strip()
    assert raw_key.startswith("dmp_m_")
    key = ApiKey.objects.get(name="Email tool sync")
    assert raw_key.startswith(key.prefix)
    expect(page.get_by_role("cell", name=f"{key.prefix}…")).to_be_visible()
    browsing.shot("key_created")

    # Shown once: reloading the list never shows the key again.
    browsing.goto("/api-keys/")
    expect(page.get_by_text(raw_key)).to_have_count(0)

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke Email tool sync").click()
    expect(page.get_by_role("status")).to_contain_text("is revoked")
    expect(page.get_by_text(re.compile("^Revoked"))).to_be_visible()
    key.refresh_from_db()
    assert key.revoked_at is not None
    browsing.shot("key_revoked")


def test_data_use_page_lists_the_approved_activities_and_their_bases(browsing, merchant_user, approve_activity):
    approve_activity("tagging")
    approve_activity("direct_marketing")
    browsing.sign_in("marketer", "marketer-pass-123")
    page = browsing.page
    page.get_by_role("link", name="How your data is used").click()
    expect(page.get_by_role("heading", name="tagging activity")).to_be_visible()
    expect(page.get_by_text("Business Improvement Exception")).to_be_visible()
    expect(page.get_by_text("Consent (express opt-in)")).to_be_visible()
    not_in_force = page.get_by_role("region", name="Not in force")
    expect(not_in_force).to_contain_text("Risk control")
    browsing.shot("data_use")


def test_layout_works_on_a_tablet(browser, browsing, merchant_user):
    browsing.page.set_viewport_size({"width": 820, "height": 1180})
    browsing.sign_in("marketer", "marketer-pass-123")
    page = browsing.page
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="API keys")).to_be_visible()
    # Nothing scrolls sideways on a tablet.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    browsing.shot("dashboard_tablet")


def test_keyboard_users_can_skip_to_the_content_and_create_a_key(browsing, merchant_user):
    browsing.sign_in("marketer", "marketer-pass-123")
    page = browsing.page
    browsing.goto("/api-keys/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    page.get_by_label("Key name").focus()
    page.keyboard.type("Keyboard key")
    page.keyboard.press("Enter")  # submits the form
    expect(page.get_by_test_id("new-key")).to_be_visible()
