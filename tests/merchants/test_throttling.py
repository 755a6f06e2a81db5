"""Throttling is on for every API key, per key."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from merchants.throttling import AnonymousRateThrottle, ApiKeyRateThrottle

pytestmark = pytest.mark.urls("tests.merchants.urls")


def test_throttling_is_configured_per_api_key():
    config = settings.REST_FRAMEWORK
    assert "merchants.throttling.ApiKeyRateThrottle" in config["DEFAULT_THROTTLE_CLASSES"]
    assert config["DEFAULT_THROTTLE_RATES"]["api_key"]


def test_a_key_over_its_rate_gets_a_429_and_other_keys_do_not(merchant_client, other_merchant_client, monkeypatch):
    cache.clear()
    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "3/min"})
    statuses = [merchant_client.get("/api/v1/test-products").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = merchant_client.get("/api/v1/test-products")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "throttled"
    assert other_merchant_client.get("/api/v1/test-products").status_code == 200
    cache.clear()


def anonymous_statuses(client, count: int) -> list[int]:
    return [client.get("/api/v1/test-products").status_code for _ in range(count)]


@pytest.mark.parametrize("header", [None, "Bearer dmp_m_not-a-real-key", "Bearer two parts", "Basic abc"])
def test_requests_without_a_valid_key_are_throttled_by_address(db, header, monkeypatch):
    monkeypatch.setattr(AnonymousRateThrottle, "THROTTLE_RATES", {"anon": "3/min"})
    client = APIClient(REMOTE_ADDR="198.51.100.7")
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    assert anonymous_statuses(client, 4) == [401, 401, 401, 429]
    response = client.get("/api/v1/test-products")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "throttled"


def test_the_address_limit_spares_other_addresses_and_valid_keys(merchant_client, monkeypatch):
    monkeypatch.setattr(AnonymousRateThrottle, "THROTTLE_RATES", {"anon": "2/min"})
    guesser = APIClient(REMOTE_ADDR="198.51.100.7")
    guesser.credentials(HTTP_AUTHORIZATION="Bearer dmp_m_guess")
    assert anonymous_statuses(guesser, 3) == [401, 401, 429]
    assert anonymous_statuses(APIClient(REMOTE_ADDR="198.51.100.8"), 1) == [401]
    # A valid key from the throttled address counts against its own key's rate only.
    assert merchant_client.get("/api/v1/test-products", REMOTE_ADDR="198.51.100.7").status_code == 200


def test_the_address_rate_is_a_documented_setting():
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["anon"]
    assert "API_ANON_THROTTLE_RATE" in (settings.BASE_DIR / "README.md").read_text()
