"""Inputs that used to answer 500: each is now a 4xx that says what is wrong and where."""

from __future__ import annotations

import json

import pytest

from campaigns.models import Channel

BIG = 2**63
DEEP = 100_000


def deep_json(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


def campaign_body(segment_id: int, **overrides) -> dict:
    body = {
        "name": "Spring",
        "include_segment_ids": [segment_id],
        "title_template": "Hi",
        "body_template": "Hello",
        "channel": Channel.INBOX,
    }
    body.update(overrides)
    return body


def error_of(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return response.json()["error"]


# ------------------------------------------------------------------ bodies over DATA_UPLOAD_MAX_MEMORY_SIZE


@pytest.mark.parametrize(
    "path",
    ["/api/v1/segments/", "/api/v1/audiences/estimate", "/api/v1/campaigns/"],
)
def test_a_json_body_over_the_upload_limit_is_a_413_for_merchants(merchant_client, path, settings):
    body = json.dumps({"name": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    response = merchant_client.post(path, body, content_type="application/json")
    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "too_large"
    assert f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,}" in error["message"]


@pytest.mark.parametrize(
    "path", ["/api/v1/privacy/requests", "/api/v1/privacy/counter-statements", "/api/v1/tracking/"]
)
def test_a_json_body_over_the_upload_limit_is_a_413_for_the_operator(operator_client, path, settings):
    body = json.dumps({"statement": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
    response = operator_client.post(path, body, content_type="application/json")
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"


# ------------------------------------------------------------------ deeply nested JSON


@pytest.mark.parametrize("path", ["/api/v1/campaigns/", "/api/v1/segments/", "/api/v1/audiences/estimate"])
def test_deeply_nested_json_is_a_400_for_merchants(merchant_client, path):
    response = merchant_client.post(path, deep_json(), content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in error_of(response)["message"]


@pytest.mark.parametrize(
    "path", ["/api/v1/privacy/requests", "/api/v1/privacy/counter-statements", "/api/v1/tracking/"]
)
def test_deeply_nested_json_is_a_400_for_the_operator(operator_client, path):
    response = operator_client.post(path, deep_json(), content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in error_of(response)["message"]


def test_deeply_nested_json_inside_a_field_is_a_400(merchant_client):
    body = '{"name": "x", "definition": ' + deep_json() + "}"
    response = merchant_client.post("/api/v1/segments/", body, content_type="application/json")
    assert response.status_code == 400


# ------------------------------------------------------------------ pagination


@pytest.mark.parametrize("path", ["/api/v1/segments/", "/api/v1/campaigns/"])
@pytest.mark.parametrize("param", ["limit", "offset"])
@pytest.mark.parametrize("value", [BIG, BIG * 10, -1])
def test_an_out_of_range_limit_or_offset_is_a_400_naming_it(merchant_client, path, param, value):
    response = merchant_client.get(path, {param: value})
    assert response.status_code == 400
    error = error_of(response)
    assert param in error["details"]


@pytest.mark.parametrize("param", ["limit", "offset"])
def test_the_blacklist_refuses_an_out_of_range_page_too(operator_client, param):
    response = operator_client.get("/api/v1/privacy/blacklist", {param: BIG})
    assert response.status_code == 400
    assert param in error_of(response)["details"]


def test_an_ordinary_page_still_works(merchant_client):
    response = merchant_client.get("/api/v1/segments/", {"limit": 5, "offset": 0})
    assert response.status_code == 200
    assert response.json()["results"] == []


# ------------------------------------------------------------------ crontab


@pytest.mark.parametrize("crontab", ["* *", "0 9 * *", "", "0 9 * * * * *", "99 9 * * *", "a b c d e"])
def test_a_custom_crontab_that_is_not_five_valid_fields_is_a_400_naming_crontab(
    merchant_client, all_purposes_approved, crontab
):
    body = {"name": "Cron", "expression": "country:SG", "refresh_policy": "custom", "crontab": crontab}
    response = merchant_client.post("/api/v1/segments/", body, format="json")
    assert response.status_code == 400, response.content
    assert "crontab" in error_of(response)["details"]


# ------------------------------------------------------------------ ids of 2^63 and more


@pytest.mark.parametrize("field", ["include_segment_ids", "exclude_segment_ids"])
@pytest.mark.parametrize("value", [BIG, BIG * 1000])
def test_a_huge_segment_id_in_a_campaign_is_a_400_naming_the_field(merchant_client, field, value):
    body = campaign_body(1)
    body[field] = [value]
    response = merchant_client.post("/api/v1/campaigns/", body, format="json")
    assert response.status_code == 400
    assert field in error_of(response)["details"]


@pytest.mark.parametrize("value", [BIG, BIG * 1000])
def test_a_huge_delivery_id_in_tracking_is_a_400_naming_the_field(operator_client, value):
    body = {"events": [{"delivery_id": value, "kind": "opened"}]}
    response = operator_client.post("/api/v1/tracking/", body, format="json")
    assert response.status_code == 400
    assert "delivery_id" in json.dumps(error_of(response)["details"])


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/segments/{BIG}",
        f"/api/v1/segments/{BIG}/insights",
        f"/api/v1/segments/1/overlap/{BIG}",
        f"/api/v1/campaigns/{BIG}",
        f"/api/v1/campaigns/{BIG}/report",
        f"/api/v1/campaigns/{BIG}/audience",
    ],
)
def test_a_huge_id_in_a_merchant_path_is_a_404(merchant_client, path):
    assert merchant_client.get(path).status_code == 404


@pytest.mark.parametrize("path", [f"/api/v1/privacy/requests/{BIG}", f"/api/v1/privacy/counter-statements/{BIG}"])
def test_a_huge_id_in_an_operator_path_is_a_404(operator_client, path):
    assert operator_client.get(path).status_code == 404


def test_a_huge_flag_id_in_a_counter_statement_is_a_400_naming_flag(operator_client):
    body = {"consumer_id": "someone@example.com", "statement": "Not me.", "flag": BIG}
    response = operator_client.post("/api/v1/privacy/counter-statements", body, format="json")
    assert response.status_code == 400
    assert "flag" in error_of(response)["details"]


# ------------------------------------------------------------------ unknown addresses under the API


@pytest.mark.parametrize("path", ["/api/v1/nothing-here", "/api/v1/segments/abc", "/api/v1/privacy/requests/x%40y.z"])
def test_an_unknown_api_address_is_a_json_404_that_does_not_repeat_it(merchant_client, path):
    response = merchant_client.get(path)
    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "Not found."}


# ------------------------------------------------------------------ the schema tells the truth


def test_the_schema_documents_the_segment_list_as_a_page_with_bounded_parameters(client):
    schema = client.get("/api/v1/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/segments/"]["get"]
    body = operation["responses"]["200"]["content"]["application/json"]["schema"]
    ref = body["$ref"].rsplit("/", 1)[-1]
    page = schema["components"]["schemas"][ref]
    assert page["type"] == "object"
    assert set(page["properties"]) == {"count", "next", "previous", "results"}
    limits = {p["name"]: p["schema"] for p in operation["parameters"]}
    assert limits["limit"]["maximum"] == 1000 and limits["offset"]["minimum"] == 0
