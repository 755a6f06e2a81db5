"""The forecast on the review step, the report's forecast and result, and persuadables made from a report, in a real
browser at a laptop's, a tablet's and a phone's width (no page scrolls sideways)."""

from __future__ import annotations

import pytest

from tests.campaigns.test_forecast import _scheduled_draft, _segment
from tests.campaigns.test_uplift import _completed_campaign_with_a_planted_effect

pytestmark = pytest.mark.e2e

VIEWPORTS = {"laptop": (1366, 900), "tablet": (820, 1180), "phone": (390, 844)}


def _fits(page) -> None:
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url} scrolls sideways: {width}"


def test_forecast_report_and_persuadables_at_every_width(
    browsing, transactional_db, merchant, merchant_user, all_purposes_approved
):
    like, browsers, _ = _completed_campaign_with_a_planted_effect(merchant, name="Spring sale")
    draft = _scheduled_draft(merchant, _segment(merchant, "Browsers", browsers))
    page = browsing.page
    page.set_default_timeout(120_000)  # the card's fragment trains the uplift model on a busy machine
    browsing.sign_in("marketer", "marketer-pass-123")

    browsing.goto(f"/campaigns/{draft.pk}/")  # renders at once; the card fetches the forecast
    page.get_by_test_id("forecast-incremental").wait_for()
    assert "Expected extra purchases" in page.content() and "Working out the forecast" not in page.content()
    page.get_by_label("Learn from").select_option(str(like.pk))
    page.get_by_role("button", name="Forecast").click()
    page.wait_for_load_state()
    page.get_by_test_id("forecast-like").wait_for()
    assert "which you picked" in page.content()
    for name, (w, h) in VIEWPORTS.items():
        page.set_viewport_size({"width": w, "height": h})
        _fits(page)
        browsing.shot(f"review_{name}")

    browsing.goto(f"/campaigns/{like.pk}/report/")
    assert "Forecast and result" in page.content()
    for name, (w, h) in VIEWPORTS.items():
        page.set_viewport_size({"width": w, "height": h})
        _fits(page)
        browsing.shot(f"report_{name}")

    page.get_by_label("Name", exact=True).fill("Movable shoppers")
    page.get_by_label("How many").fill("30")
    page.get_by_test_id("persuadables-form").get_by_role("button", name="Make a segment").click()
    page.wait_for_load_state()
    assert "Movable shoppers" in page.content() and "the top 30% by predicted uplift" in page.content()
    for name, (w, h) in VIEWPORTS.items():
        page.set_viewport_size({"width": w, "height": h})
        _fits(page)
        browsing.shot(f"persuadables_segment_{name}")
