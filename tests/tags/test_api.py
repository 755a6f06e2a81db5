"""GET /api/v1/tags/: the catalogue with definitions and released reach."""

from __future__ import annotations

import json

import pytest

from tags.reach import REACH_PRECISION
from tags.services import tags_compute
from tests.release_helpers import released_public

from .conftest import AS_OF

URL = "/api/v1/tags/"


@pytest.fixture
def tagged(world, approve_activity):
    approve_activity("tagging")
    world.consumers(150, country="SG", age_range="25-34")
    world.consumers(37, country="GB", age_range="18-24")
    tags_compute(families=["country", "age_range"], actor="test", as_of=AS_OF)


def tag_entry(body, code):
    return next(t for f in body["families"] for t in f["tags"] if t["tag"] == code)


def test_lists_families_tags_definitions_and_reach(merchant_client, tagged):
    response = merchant_client.get(URL)
    assert response.status_code == 200
    body = response.json()
    families = [f["family"] for f in body["families"]]
    assert families[:2] == ["age_range", "country"] and "persona" in families
    sg = tag_entry(body, "country:SG")
    assert sg["label"] == "Singapore"
    assert "Singapore (SG)" in sg["definition"]
    assert sg["reach"] == released_public("tag:country:SG:reach", 150, REACH_PRECISION)
    persona = next(f for f in body["families"] if f["family"] == "persona")
    assert persona["tags"] == [] and persona["description"]


def test_small_reach_is_hidden_and_never_revealed(merchant_client, tagged):
    response = merchant_client.get(URL)
    gb = tag_entry(response.json(), "country:GB")
    assert gb["reach"] == released_public("tag:country:GB:reach", 37, REACH_PRECISION)
    assert gb["reach"]["hidden"] is True and gb["reach"]["size"] is None
    assert "37" not in json.dumps(gb)
    empty = tag_entry(response.json(), "age_range:65-plus")
    assert empty["reach"]["hidden"] is True


def test_filter_by_family(merchant_client, tagged):
    body = merchant_client.get(URL, {"family": "country"}).json()
    assert [f["family"] for f in body["families"]] == ["country"]
    assert {t["tag"] for t in body["families"][0]["tags"]} == {"country:GB", "country:SG"}


def test_unknown_family_is_a_400_naming_the_field(merchant_client, tagged):
    response = merchant_client.get(URL, {"family": "hobbies"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "family" in error["details"]


def test_every_merchant_sees_the_same_catalogue(merchant_client, other_merchant_client, tagged):
    assert merchant_client.get(URL).json() == other_merchant_client.get(URL).json()


def test_needs_a_merchant_key(client, operator_client, db):
    assert client.get(URL).status_code in (401, 403)
    assert operator_client.get(URL).status_code == 403


def test_the_schema_documents_the_endpoint(client, db):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/v1/tags/" in schema["paths"]


def test_the_schema_lists_every_family_the_filter_accepts(client, merchant_client):
    """The OpenAPI enum of ?family= is the list the endpoint accepts: rule families and registered predicted ones."""
    from tags.rules import known_families

    schema = json.loads(client.get("/api/v1/schema/?format=json").content)
    (family,) = [p for p in schema["paths"][URL]["get"]["parameters"] if p["name"] == "family"]
    assert family["schema"]["enum"] == list(known_families())
    assert "purchase_propensity" in family["schema"]["enum"]  # a predicted family
    for accepted in known_families():
        assert merchant_client.get(URL, {"family": accepted}).status_code == 200
