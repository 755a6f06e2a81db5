"""No portal page is wider than the window, whatever a merchant types.

One browser and one world: the demo marketplace at a small size, with everything a merchant names made as long as
the forms allow (200-character names without spaces, long Unicode, long descriptions and expressions, a long
merchant name). Every portal page is visited at a laptop's, a tablet's and a phone's width; on each, the page must
not scroll sideways (document.documentElement.scrollWidth <= window.innerWidth) and no element of the main content
may reach past the window's edges, except inside a box that scrolls sideways by itself (a table's wrapper), which
must fit. Screenshots of every page and width go to var/screenshots/no_overflow/.

The world takes a while to build, so the pages and widths are checked in one test that reports every page that
overflows at once, rather than one test per page rebuilding it.
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

DEMO_PASSWORD = "demo-pass-2026"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots" / "no_overflow"
VIEWPORTS = {"laptop": (1366, 900), "tablet": (820, 1180), "phone": (390, 844)}

# 200 characters without a space (the longest name a segment or campaign may have), and long Unicode ones.
LONG_ASCII = ("Segment_" + "abcdefghij" * 20)[:200]
LONG_UNICODE = ("顧客セグメント·Ωμέγα·Ünïcødé·" * 12)[:200]
LONG_CAMPAIGN = ("Campaign-" + "SUMMERSALE" * 20)[:200]
LONG_MERCHANT = ("Trailhead" + "Outdoorsupplies" * 12)[:150]
LONG_KEY = ("sync-key-" + "0123456789" * 10)[:100]

OVERFLOW_JS = """
() => {
  const width = window.innerWidth;
  const scrollers = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const s = getComputedStyle(a);
      if (['auto', 'scroll', 'hidden', 'clip'].includes(s.overflowX)) return a;
    }
    return null;
  };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + (typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  const offenders = [];
  for (const el of document.querySelectorAll('.shell *, .auth *')) {
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    if (el.closest('.visually-hidden, .skip-link')) continue;
    if (r.right <= width + 0.5 && r.left >= -0.5) continue;
    if (scrollers(el)) continue;  // inside a box that scrolls or clips sideways; that box is checked itself
    offenders.push(name(el) + ' [' + Math.round(r.left) + '..' + Math.round(r.right) + '] '
      + (el.textContent || '').trim().slice(0, 40));
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, offenders: offenders.slice(0, 8)};
}
"""

# Where the caret of an expression error is, against its box: it must be inside the visible part of the box.
CARET_JS = """
(box) => {
  const text = box.firstChild;
  const lines = box.textContent.split('\\n');
  const offset = lines[0].length + 1 + lines[1].indexOf('^');
  const range = document.createRange();
  range.setStart(text, offset);
  range.setEnd(text, offset + 1);
  const caret = range.getBoundingClientRect();
  const frame = box.getBoundingClientRect();
  return {caretLeft: caret.left, caretRight: caret.right, boxLeft: frame.left, boxRight: frame.right,
          scrollLeft: box.scrollLeft};
}
"""


def long_expression(tags) -> str:
    """Valid, and far wider than any screen: every tag in the catalogue, ORed."""
    return " OR ".join(
        f"{tag.family}:{tag.value}" if " " not in tag.value else f'{tag.family}:"{tag.value}"' for tag in tags
    )


@pytest.fixture
def world(browsing):
    """The demo marketplace, with names and texts as long as the portal allows: {"pages": {name: path},
    "expression": a valid expression far wider than any screen}."""
    from campaigns.models import Campaign
    from campaigns.services import campaign_create
    from merchants.models import ApiKeyKind, Merchant
    from merchants.services import api_key_issue
    from segments.models import Segment, SegmentKind
    from segments.services import segment_create, segment_refresh
    from tags.models import Tag

    call_command("demo_setup", consumers=1000, products=80, events=15_000, seed=3, replay=2, stdout=StringIO())
    merchant = Merchant.objects.get(slug="trailhead-outdoor")
    tags = list(Tag.objects.order_by("family", "value"))
    expression = long_expression(tags)

    long_ascii = segment_create(
        merchant=merchant,
        name=LONG_ASCII,
        description="Nospaces" * 60,
        expression=expression,
        actor="test",
    )
    long_unicode = segment_create(
        merchant=merchant, name=LONG_UNICODE, description=LONG_UNICODE * 3, expression="country:SG", actor="test"
    )
    tiny = segment_create(
        merchant=merchant,
        name="Tiny" + "x" * 196,
        expression=f"segment:{long_ascii.pk} AND segment:{long_unicode.pk} AND NOT country:SG",
        actor="test",
    )
    for segment in (long_ascii, long_unicode, tiny):
        segment_refresh(segment_id=segment.pk, actor="test")
    # The demo's segments (with history and insights) and its lookalike, renamed as long as allowed.
    demo_segment = (
        Segment.objects.filter(merchant=merchant, kind=SegmentKind.RULE, snapshots__isnull=False)
        .exclude(pk__in=[long_ascii.pk, long_unicode.pk, tiny.pk])
        .order_by("pk")
        .first()
    )
    Segment.objects.filter(pk=demo_segment.pk).update(name=("Demo" + "segmentname" * 20)[:200])
    Segment.objects.filter(merchant=merchant, kind=SegmentKind.LOOKALIKE).update(name=("Like" + "É" * 196))
    launched = Campaign.objects.filter(merchant=merchant).exclude(status="draft").order_by("pk").first()
    Campaign.objects.filter(pk=launched.pk).update(name=LONG_CAMPAIGN)
    draft = campaign_create(
        merchant=merchant,
        actor="test",
        name=("Draft-" + LONG_UNICODE)[:200],
        include_segment_ids=[long_ascii.pk, long_unicode.pk],
        exclude_segment_ids=[tiny.pk],
        title_template=("Title" + "x" * 195)[:200],
        body_template="Hello{store_name}" + "y" * 600,
        personalised_products=0,
    )
    from journeys.templates import journey_from_template

    journey = journey_from_template(merchant=merchant, key="abandoned_cart", actor="test", name=LONG_CAMPAIGN)
    long_trigger = "carted(category=" + '"' + "outdoor/" + "tents" * 40 + '")'
    journey.trigger_event = long_trigger  # as the API might have written it: the builder must wrap it
    journey.save(update_fields=["trigger_event"])
    api_key_issue(kind=ApiKeyKind.MERCHANT, name=LONG_KEY, merchant=merchant)
    Merchant.objects.filter(pk=merchant.pk).update(name=LONG_MERCHANT)

    pages = {
        "dashboard": "/",
        "tags": "/tags/",
        "tags_search": "/tags/?q=" + "z" * 120,
        "segments": "/segments/",
        "segments_filtered": "/segments/?q=segment&sort=-size",
        "segment_long_ascii": f"/segments/{long_ascii.pk}/",
        "segment_long_unicode": f"/segments/{long_unicode.pk}/?other={long_ascii.pk}",
        "segment_tiny": f"/segments/{tiny.pk}/",
        "segment_demo": f"/segments/{demo_segment.pk}/?other={long_ascii.pk}",
        "segment_new": "/segments/new/",
        "segment_edit": f"/segments/{long_ascii.pk}/edit/",
        "campaigns": "/campaigns/",
        "campaign_new": "/campaigns/new/",
        "campaign_edit": f"/campaigns/{draft.pk}/edit/",
        "campaign_review": f"/campaigns/{draft.pk}/",
        "campaign_launched": f"/campaigns/{launched.pk}/",
        "campaign_report": f"/campaigns/{launched.pk}/report/",
        "journeys": "/journeys/",
        "journey_detail": f"/journeys/{journey.pk}/",
        "journey_new": "/journeys/build/",
        "journey_edit": f"/journeys/{journey.pk}/edit/",
        "api_keys": "/api-keys/",
        "data_use": "/how-your-data-is-used/",
    }
    return {"pages": pages, "expression": expression}


def _check(page, label: str, problems: list[str]) -> None:
    found = page.evaluate(OVERFLOW_JS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{label}.png"), full_page=True)
    if found["scrollWidth"] > found["width"] or found["offenders"]:
        problems.append(f"{label}: page {found['scrollWidth']} px wide in {found['width']}; {found['offenders']}")


def test_no_portal_page_is_wider_than_the_window(world, browsing):
    page = browsing.page
    problems: list[str] = []

    # Signed out: the sign-in page.
    for viewport, (width, height) in VIEWPORTS.items():
        page.set_viewport_size({"width": width, "height": height})
        browsing.goto("/login/")
        _check(page, f"login__{viewport}", problems)

    browsing.sign_in("demo", DEMO_PASSWORD)
    expect(page.get_by_role("heading", level=1)).to_have_text(LONG_MERCHANT)
    for viewport, (width, height) in VIEWPORTS.items():
        page.set_viewport_size({"width": width, "height": height})
        for name, path in world["pages"].items():
            response = browsing.goto(path)
            assert response is not None and response.status == 200, f"{path}: {response and response.status}"
            _check(page, f"{name}__{viewport}", problems)

        # A mistake at the end of a long expression: the caret under it is scrolled into view.
        browsing.goto(world["pages"]["segment_new"])
        editor = page.get_by_label("Who is in it")
        editor.fill(world["expression"] + " AND AND")
        box = page.locator("#expr-error")
        expect(box).to_be_visible()
        expect(box).to_contain_text("^")
        page.wait_for_function("(b) => b.scrollLeft > 0 || b.scrollWidth <= b.clientWidth", arg=box.element_handle())
        caret = box.evaluate(CARET_JS)
        assert caret["boxLeft"] <= caret["caretLeft"] and caret["caretRight"] <= caret["boxRight"], (viewport, caret)
        _check(page, f"segment_new_error__{viewport}", problems)

    assert not problems, "pages wider than the window:\n" + "\n".join(problems)

    # After the page reloads with a result, the result is on screen, not far below the fold.
    page.set_viewport_size({"width": 1366, "height": 900})
    browsing.goto(world["pages"]["segment_long_ascii"])
    page.get_by_label("Compare with").select_option(index=1)
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_test_id("overlap")).to_be_in_viewport()
    page.screenshot(path=str(SCREENSHOTS / "overlap_result__laptop.png"))
