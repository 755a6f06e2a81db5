"""The API as its readers meet it: both spellings of an address work, and the reference reads as documentation."""

from __future__ import annotations

import json
import re

import pytest

from segments.models import Segment
from tags.models import Tag

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _country_tag(db):
    Tag.objects.create(
        family="country", value="SG", label="Singapore", definition="Lives in Singapore.", rule_version="1"
    )


def _segment(merchant) -> Segment:
    return Segment.objects.create(merchant=merchant, name="Outdoor", definition="country:SG")


@pytest.mark.parametrize("suffix", ["", "/"])
def test_a_segment_answers_with_and_without_the_trailing_slash(merchant_client, merchant, suffix):
    segment = _segment(merchant)
    response = merchant_client.get(f"/api/v1/segments/{segment.pk}{suffix}")
    assert response.status_code == 200, response.content
    assert response.json()["id"] == segment.pk


def test_another_merchants_segment_is_a_404_in_both_spellings(other_merchant_client, merchant):
    segment = _segment(merchant)
    for address in (f"/api/v1/segments/{segment.pk}", f"/api/v1/segments/{segment.pk}/"):
        response = other_merchant_client.get(address)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_a_post_without_the_slash_is_served_not_redirected(merchant_client, merchant):
    # The list's documented address is segments/; a redirect would drop this body.
    response = merchant_client.post(
        "/api/v1/segments", {"name": "Singapore", "expression": "country:SG"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert Segment.objects.filter(merchant=merchant, name="Singapore").exists()


@pytest.mark.parametrize("suffix", ["", "/"])
def test_the_merchants_settings_answer_with_and_without_the_trailing_slash(merchant_client, merchant, suffix):
    # A singular resource, like privacy/budget: documented without the slash; a PATCH is served, not redirected.
    address = f"/api/v1/merchant/settings{suffix}"
    response = merchant_client.patch(address, {"quiet_start": "21:00", "quiet_end": "08:00"}, format="json")
    assert response.status_code == 200, response.content
    assert merchant_client.get(address).json()["quiet_start"] == "21:00:00"


def test_an_unknown_address_is_still_a_json_404(merchant_client):
    for address in ("/api/v1/nothing-here", "/api/v1/nothing-here/"):
        response = merchant_client.get(address)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def _schema(client) -> dict:
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


# Text meant for the project's engineers, not for the API's readers.
INTERNAL = re.compile(r"self\.|scoped_queryset|queryset|\(a programming error\)|TODO|XXX")


def test_every_operation_is_described_in_prose_for_its_readers(client):
    problems = []
    for path, operations in _schema(client)["paths"].items():
        for method, operation in operations.items():
            text = f"{operation.get('summary', '')} {operation.get('description', '')}".strip()
            if not operation.get("description"):
                problems.append(f"{method.upper()} {path}: no description")
            elif INTERNAL.search(text):
                problems.append(f"{method.upper()} {path}: internal text: {text[:80]}")
    assert not problems, problems


def test_request_examples_show_real_definitions(client):
    schema = _schema(client)
    estimate = schema["paths"]["/api/v1/audiences/estimate"]["post"]["requestBody"]["content"]["application/json"]
    examples = [e["value"] for e in estimate["examples"].values()]
    assert any("country:SG" in e.get("expression", "") for e in examples)
    assert any("and" in e.get("definition", {}) for e in examples)
    create = schema["paths"]["/api/v1/segments/"]["post"]["requestBody"]["content"]["application/json"]
    assert any("expression" in e["value"] for e in create["examples"].values())


def test_every_request_example_is_accepted_by_the_language(merchant_client):
    """The examples are not decoration: each definition in them parses."""
    from segments.language import from_json, parse

    schema = json.loads(merchant_client.get("/api/v1/schema/?format=json").content)
    for operations in schema["paths"].values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            for example in content.get("examples", {}).values():
                value = example["value"]
                if "expression" in value:
                    parse(value["expression"])
                if "definition" in value:
                    from_json(value["definition"])


def test_the_reference_page_links_nothing_outside_the_platform(client):
    page = client.get("/api/v1/docs/").content.decode()
    assert not re.findall(r'(?:href|src)="https?://', page)


def test_the_old_redoc_address_leads_to_the_reference(client):
    response = client.get("/api/v1/redoc/")
    assert (response.status_code, response["Location"]) == (301, "/api/v1/docs/")
