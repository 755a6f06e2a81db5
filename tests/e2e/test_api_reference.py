"""The API reference pages render from what the platform serves: no font, script or logo from the internet."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("address", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_the_reference_renders_without_other_hosts(browsing, address):
    # The browsing fixture fails the test if the browser contacted any host but the platform's.
    browsing.goto(address)
    page = browsing.page
    expect(page.get_by_text("Merchant DMP API").first).to_be_visible()
    expect(page.get_by_text("audiences/estimate").first).to_be_attached()
    page.wait_for_load_state("networkidle")
