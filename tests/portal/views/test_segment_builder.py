"""The visual builder's server side: the parse endpoint (text to the JSON form and the canonical text, or the
syntax error's position) and the vocabulary the builder's rows are drawn from."""

import json

import pytest

from portal.segment_builder import action_arguments, builder_vocabulary
from segments import language
from segments.services import segment_create


def parse(client, **body):
    return client.post("/segments/parse/", json.dumps(body), content_type="application/json")


def test_parse_gives_the_json_form_and_the_canonical_text(portal_client):
    response = parse(portal_client, expression="country:sg and (interest:sports or not interest:outdoor)")
    assert response.status_code == 200
    body = response.json()
    assert body["expression"] == "country:sg AND (interest:sports OR NOT interest:outdoor)"
    sports = {"tag": {"family": "interest", "value": "sports"}}
    not_outdoor = {"not": {"tag": {"family": "interest", "value": "outdoor"}}}
    assert body["definition"] == {"and": [{"tag": {"family": "country", "value": "sg"}}, {"or": [sports, not_outdoor]}]}


def test_parse_renders_a_json_definition(portal_client):
    action = {"action": "purchased", "within": "30d", "min_count": 2, "category": "beauty"}
    definition = {"and": [action, {"segment": 7}]}
    body = parse(portal_client, definition=definition).json()
    assert body["expression"] == 'purchased(category="beauty", within="30d", min_count=2) AND segment:7'


def test_a_syntax_error_names_its_position_and_is_a_400(portal_client):
    response = parse(portal_client, expression="country:SG AND AND interest:x")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_expression"
    assert (error["line"], error["column"], error["offset"]) == (1, 16, 15)
    assert "AND" in error["message"]


def test_a_bad_json_definition_names_its_path(portal_client):
    error = parse(portal_client, definition={"and": [{"tag": {"family": "country"}}]}).json()["error"]
    assert error["path"] == "$.and[0].tag"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"expression": 12}', b"{}", b'{"expression": "a:b", "definition": {"segment": 1}}'],
)
def test_bad_requests_are_400s_that_say_why(portal_client, body):
    response = portal_client.post("/segments/parse/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_parse_needs_a_signed_in_merchant_user(client, db):
    response = client.post("/segments/parse/", "{}", content_type="application/json")
    assert response.status_code == 401 and response.json()["error"]["code"] == "signed_out"


def test_the_vocabulary_follows_the_language(merchant):
    arguments = action_arguments()
    assert [a["name"] for a in arguments] == list(language.ACTION_ARGS)
    by_name = {a["name"]: a for a in arguments}
    assert by_name["min_count"]["kind"] == "number" and by_name["min_count"]["default"] == 1
    assert by_name["min_count"]["quoted"] is False and by_name["within"]["quoted"] is True
    assert by_name["within"]["kind"] == "text" and by_name["category"]["suggest"] == "category"
    vocabulary = builder_vocabulary(merchant=merchant)
    assert [a["name"] for a in vocabulary["actions"]] == list(language.ACTIONS)
    assert vocabulary["merchant"] == merchant.slug


def test_the_builder_offers_own_segments_but_not_the_one_being_edited(merchant, other_merchant, population):
    mine = segment_create(merchant=merchant, name="Mine", expression="country:SG", actor="test")
    other = segment_create(merchant=merchant, name="Other", expression="country:MY", actor="test")
    segment_create(merchant=other_merchant, name="Theirs", expression="country:MY", actor="test")
    offered = builder_vocabulary(merchant=merchant, exclude_segment_id=mine.pk)["segments"]
    assert offered == [{"id": other.pk, "name": "Other"}]


def test_the_edit_page_carries_the_saved_definition_and_the_vocabulary(portal_client, merchant, population):
    segment = segment_create(merchant=merchant, name="Outdoor", expression="country:SG AND interest:outdoor", actor="t")
    html = portal_client.get(f"/segments/{segment.pk}/edit/").content.decode()
    assert "country:SG AND interest:outdoor</textarea>" in html
    assert 'id="segment-vocabulary"' in html and "data-parse-url=" in html
