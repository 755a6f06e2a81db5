from tags.reach import REACH_PRECISION
from tests.release_helpers import released_public


def test_explorer_lists_families_values_definitions_and_reach(portal_client, population):
    page = portal_client.get("/tags/").content.decode()
    assert "country:SG" in page and "country is SG." in page
    sg = page.split("country:SG")[1].split("</tr>")[0]
    assert released_public("tag:country:SG:reach", 400, REACH_PRECISION)["display"] in sg
    # chess (50 consumers) is listed, its reach hidden
    chess = page.split("interest:chess")[1].split("</tr>")[0]
    assert "fewer than" in chess and "50" not in chess.replace("500", "")


def test_search_narrows_and_says_when_nothing_matches(portal_client, population):
    page = portal_client.get("/tags/?q=outdoor").content.decode()
    assert "interest:outdoor" in page and "country:SG" not in page
    page = portal_client.get("/tags/?q=zzzz").content.decode()
    assert "No tag matches" in page


def test_use_in_a_segment_prefills_the_builder(portal_client, population):
    page = portal_client.get("/tags/").content.decode()
    assert "/segments/new/?expression=country%3ASG" in page
    builder = portal_client.get("/segments/new/?expression=country%3ASG").content.decode()
    assert ">country:SG</textarea>" in builder


def test_no_tags_yet_is_a_clear_empty_state(portal_client):
    assert "No tags yet" in portal_client.get("/tags/").content.decode()
