"""Bearer key authentication: clear 401s, last-used time, operator/merchant separation."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from merchants.auth import LAST_USED_RESOLUTION
from merchants.models import ApiKey, ApiKeyKind
from merchants.services import api_key_issue, api_key_revoke

pytestmark = pytest.mark.urls("tests.merchants.urls")

PRODUCTS = "/api/v1/test-products"
INGEST = "/api/v1/ingest/events"


def client_with(header: str | None) -> APIClient:
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    return client


def test_a_missing_key_is_a_401_that_asks_for_a_bearer_key(db):
    response = client_with(None).get(PRODUCTS)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["message"] == "Authentication credentials were not provided."


@pytest.mark.parametrize(
    "header,message",
    [
        ("Bearer dmp_m_not-a-real-key", "Invalid API key."),
        ("Bearer ", "Malformed Authorization header: expected 'Bearer <key>'."),
        ("Bearer two parts", "Malformed Authorization header: expected 'Bearer <key>'."),
    ],
)
def test_an_invalid_key_is_a_401_saying_why(db, header, message):
    response = client_with(header).get(PRODUCTS)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == message


def test_a_revoked_key_is_a_401_saying_so(merchant):
    issued = api_key_issue(kind=ApiKeyKind.MERCHANT, name="old", merchant=merchant)
    client = client_with(f"Bearer {issued.raw_key}")
    assert client.get(PRODUCTS).status_code == 200
    api_key_revoke(api_key=issued.api_key)
    response = client.get(PRODUCTS)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "This API key has been revoked."


def test_using_a_key_sets_its_last_used_time(merchant):
    issued = api_key_issue(kind=ApiKeyKind.MERCHANT, name="k", merchant=merchant)
    assert issued.api_key.last_used_at is None
    client_with(f"Bearer {issued.raw_key}").get(PRODUCTS)
    assert ApiKey.objects.get(pk=issued.api_key.pk).last_used_at is not None


def _apikey_updates(queries) -> list[str]:
    table = ApiKey._meta.db_table
    return [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and table in q["sql"]]


def test_a_key_used_within_the_resolution_is_not_written_again(merchant):
    issued = api_key_issue(kind=ApiKeyKind.MERCHANT, name="k", merchant=merchant)
    client = client_with(f"Bearer {issued.raw_key}")
    with CaptureQueriesContext(connection) as first:
        assert client.get(PRODUCTS).status_code == 200
    assert len(_apikey_updates(first.captured_queries)) == 1
    with CaptureQueriesContext(connection) as second:
        assert client.get(PRODUCTS).status_code == 200
    assert _apikey_updates(second.captured_queries) == []


def test_a_key_last_used_long_ago_is_written_again(merchant):
    issued = api_key_issue(kind=ApiKeyKind.MERCHANT, name="k", merchant=merchant)
    long_ago = timezone.now() - LAST_USED_RESOLUTION * 2
    ApiKey.objects.filter(pk=issued.api_key.pk).update(last_used_at=long_ago)
    client_with(f"Bearer {issued.raw_key}").get(PRODUCTS)
    assert ApiKey.objects.get(pk=issued.api_key.pk).last_used_at > long_ago


def test_keys_are_stored_hashed_with_a_visible_prefix(merchant):
    issued = api_key_issue(kind=ApiKeyKind.MERCHANT, name="k", merchant=merchant)
    stored = ApiKey.objects.get(pk=issued.api_key.pk)
    assert issued.raw_key not in (stored.key_digest, stored.prefix)
    assert issued.raw_key.startswith(stored.prefix)


def test_an_operator_only_endpoint_refuses_a_merchant_key(merchant_client):
    response = merchant_client.post(INGEST, [], format="json")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This endpoint needs an operator API key."


def test_a_merchant_endpoint_refuses_an_operator_key(operator_client):
    response = operator_client.get(PRODUCTS)
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This endpoint needs a merchant API key."
