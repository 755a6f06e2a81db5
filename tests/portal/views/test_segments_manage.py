"""Managing segments in the portal: the list's search, filters, sort and pages (kept in the query string), what
uses a segment, copies, a schedule that would be ignored, and what a tiny segment's page does not offer."""

import re

import pytest
from django.utils import timezone

from segments.models import RefreshPolicy, Segment, SegmentStatus
from segments.services import segment_create, segment_refresh
from tests.release_helpers import released_public

from .test_segments import make_segment


def names_in(page: str) -> list[str]:
    """The segment names in the list's table, in order."""
    if "<tbody>" not in page:
        return []
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    return re.findall(r'<td class="name-cell"><a href="/segments/\d+/">([^<]*)</a>', body)


@pytest.fixture
def several(population, merchant):
    """SG (400), MY (200), Outdoor (250) refreshed; Chess (50, tiny) refreshed; a pending daily one."""
    made = {
        "SG shoppers": make_segment(merchant, name="SG shoppers", expression="country:SG"),
        "MY shoppers": make_segment(merchant, name="MY shoppers", expression="country:MY"),
        "Outdoor fans": make_segment(merchant, name="Outdoor fans", expression="interest:outdoor"),
        "Chess": make_segment(merchant, name="Chess", expression="interest:chess"),
    }
    made["Daily outdoor SG"] = segment_create(
        merchant=merchant,
        name="Daily outdoor SG",
        description="the morning push",
        expression="interest:outdoor AND country:SG",
        refresh_policy=RefreshPolicy.DAILY,
        actor="test",
    )
    return made


def test_search_filters_and_sort_keep_each_other_in_links(portal_client, several):
    page = portal_client.get("/segments/?q=shoppers").content.decode()
    assert names_in(page) == ["MY shoppers", "SG shoppers"]
    assert "2 of 5 segments match" in page
    # A search matches descriptions too, whatever the case.
    assert names_in(portal_client.get("/segments/?q=MORNING").content.decode()) == ["Daily outdoor SG"]
    assert names_in(portal_client.get("/segments/?policy=daily").content.decode()) == ["Daily outdoor SG"]
    assert names_in(portal_client.get("/segments/?status=pending").content.decode()) == ["Daily outdoor SG"]
    assert names_in(portal_client.get("/segments/?kind=lookalike").content.decode()) == []
    assert "No segment matches" in portal_client.get("/segments/?kind=lookalike").content.decode()

    page = portal_client.get("/segments/?q=shoppers&sort=-name").content.decode()
    assert names_in(page) == ["SG shoppers", "MY shoppers"]
    # The column headers sort and keep the search; sorting again by the same column reverses it.
    assert 'href="?q=shoppers&amp;sort=-size"' in page and 'href="?q=shoppers"' in page
    assert 'aria-sort="descending"' in page
    assert 'value="shoppers"' in page  # the search box keeps what was typed


def test_sorting_by_size_uses_the_released_sizes(portal_client, several, merchant):
    page = portal_client.get("/segments/?sort=-size").content.decode()
    released = {
        name: released_public(f"segment:{segment.pk}:size", segment.snapshots.get().size)
        for name, segment in several.items()
        if segment.snapshots.exists()
    }
    shown = sorted((r for r in released.items() if not r[1]["hidden"]), key=lambda r: -r[1]["size"])
    order = names_in(page)
    assert order[: len(shown)] == [name for name, _ in shown]
    # Hidden ("fewer than ...") before never computed, at the end.
    assert order[-2:] == ["Chess", "Daily outdoor SG"]
    assert names_in(portal_client.get("/segments/?sort=size").content.decode())[:2] == ["Daily outdoor SG", "Chess"]


def test_sorting_by_last_refresh_puts_never_refreshed_last(portal_client, several):
    Segment.objects.filter(pk=several["MY shoppers"].pk).update(last_refreshed_at=timezone.now())
    order = names_in(portal_client.get("/segments/?sort=-refreshed").content.decode())
    assert order[0] == "MY shoppers" and order[-1] == "Daily outdoor SG"


def test_pages_of_25_keep_the_filters(portal_client, population, merchant):
    for i in range(30):
        segment_create(merchant=merchant, name=f"Segment {i:02d}", expression="country:SG", actor="test")
    first = portal_client.get("/segments/?q=segment").content.decode()
    assert len(names_in(first)) == 25 and "Page 1 of 2" in first
    assert 'href="?q=segment&amp;page=2"' in first
    second = portal_client.get("/segments/?q=segment&page=2").content.decode()
    assert names_in(second) == [f"Segment {i}" for i in range(25, 30)]
    # Garbage in the query string shows the list, never an error.
    for query in ("page=999", "page=x", "sort=password", "kind=<b>", "status=%00", "q=" + "x" * 5000):
        assert portal_client.get(f"/segments/?{query}").status_code == 200


def test_the_list_and_the_page_say_what_uses_a_segment(portal_client, several, merchant):
    from campaigns.services import campaign_create

    sg = several["SG shoppers"]
    segment_create(merchant=merchant, name="SG or MY", expression=f"segment:{sg.pk} OR country:MY", actor="test")
    campaign = campaign_create(
        merchant=merchant,
        actor="test",
        name="Weekend sale",
        include_segment_ids=[sg.pk],
        title_template="Hello",
        body_template="From {store_name}",
        personalised_products=0,
    )
    listing = portal_client.get("/segments/?q=SG+shoppers").content.decode()
    assert "1 campaign, 1 segment" in listing and "campaign “Weekend sale”" in listing
    page = portal_client.get(f"/segments/{sg.pk}/").content.decode()
    used = page.split('<h2 id="used-by">')[1].split("</section>")[0]
    assert f'href="/campaigns/{campaign.pk}/">Weekend sale' in used and ">SG or MY</a>" in used
    # No delete button while it is used; a delete posted anyway is a 409 naming them, and nothing is deleted.
    assert "Delete segment</button>" not in page
    response = portal_client.post(f"/segments/{sg.pk}/delete/")
    assert response.status_code == 409
    refused = response.content.decode()
    assert "the segment &#x27;SG or MY&#x27;" in refused and "the campaign &#x27;Weekend sale&#x27;" in refused
    assert Segment.objects.filter(pk=sg.pk).exists()
    unused = portal_client.get(f"/segments/{several['MY shoppers'].pk}/").content.decode()
    assert "Nothing uses this segment" in unused and "Delete segment</button>" in unused


def test_a_copy_is_made_from_the_page(portal_client, several, merchant, django_capture_on_commit_callbacks):
    original = several["Daily outdoor SG"]
    with django_capture_on_commit_callbacks(execute=True):
        response = portal_client.post(f"/segments/{original.pk}/clone/")
    copy = Segment.objects.get(name="Copy of Daily outdoor SG")
    assert response.status_code == 302 and response["Location"] == f"/segments/{copy.pk}/"
    assert (copy.definition, copy.refresh_policy, copy.description) == (
        original.definition,
        RefreshPolicy.DAILY,
        "the morning push",
    )
    assert copy.status == SegmentStatus.READY  # refreshed
    portal_client.post(f"/segments/{original.pk}/clone/")
    assert Segment.objects.filter(name="Copy of Daily outdoor SG (2)").exists()
    page = portal_client.get(f"/segments/{original.pk}/").content.decode()
    assert "Make a copy" in page


def test_analysts_copy_but_foreign_segments_are_404(analyst_client, portal_client, several, other_merchant):
    theirs = make_segment(other_merchant, name="Theirs", expression="country:MY")
    assert portal_client.post(f"/segments/{theirs.pk}/clone/").status_code == 404
    assert portal_client.get(f"/segments/{several['Chess'].pk}/clone/").status_code == 405
    assert analyst_client.post(f"/segments/{several['Chess'].pk}/clone/").status_code == 302


def test_a_schedule_typed_with_another_policy_is_refused_not_dropped(portal_client, population, merchant):
    response = portal_client.post(
        "/segments/new/",
        {"name": "x", "expression": "country:SG", "refresh_policy": "manual", "crontab": "0 6 * * 1"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="id_crontab_error"' in page and "On a schedule (cron, UTC)" in page
    assert 'value="0 6 * * 1"' in page  # what was typed is still there
    assert not Segment.objects.exists()
    segment = make_segment(merchant)
    response = portal_client.post(
        f"/segments/{segment.pk}/edit/",
        {"name": segment.name, "expression": segment.definition, "refresh_policy": "daily", "crontab": "5 * * * *"},
    )
    assert response.status_code == 400 and 'id="id_crontab_error"' in response.content.decode()
    segment.refresh_from_db()
    assert segment.refresh_policy == RefreshPolicy.MANUAL


def test_the_api_refuses_a_crontab_with_another_policy(merchant_client, population):
    response = merchant_client.post(
        "/api/v1/segments/",
        {"name": "x", "expression": "country:SG", "refresh_policy": "daily", "crontab": "0 6 * * 1"},
        format="json",
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_schedule"
    assert not Segment.objects.exists()


def test_a_tiny_segment_offers_no_lookalike_and_no_campaign(portal_client, several, merchant):
    chess = several["Chess"]  # 50 members, under MIN_AUDIENCE
    page = portal_client.get(f"/segments/{chess.pk}/").content.decode()
    assert 'data-testid="too-small"' in page and 'data-testid="lookalike-unavailable"' in page
    assert "Use in a campaign" not in page and "Create lookalike" not in page
    big = portal_client.get(f"/segments/{several['SG shoppers'].pk}/").content.decode()
    assert "Use in a campaign" in big and "Create lookalike" in big and 'data-testid="too-small"' not in big
    pending = portal_client.get(f"/segments/{several['Daily outdoor SG'].pk}/").content.decode()
    assert "once this segment has been computed" in pending and "Create lookalike" not in pending


def test_results_bring_the_reader_to_them(portal_client, several):
    """The overlap and lookalike forms send the browser to their section, not to the top of a long page."""
    page = portal_client.get(f"/segments/{several['SG shoppers'].pk}/").content.decode()
    assert 'action="#overlap-title"' in page
    assert re.search(r'action="/segments/\d+/lookalike/#lookalike-title"', page)


def test_refreshing_a_copy_does_not_touch_the_original(portal_client, several, merchant):
    original = several["SG shoppers"]
    portal_client.post(f"/segments/{original.pk}/clone/")
    copy = Segment.objects.get(name="Copy of SG shoppers")
    segment_refresh(segment_id=copy.pk, actor="test")
    assert original.snapshots.count() == 1 and copy.snapshots.count() == 1
