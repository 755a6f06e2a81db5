"""Throttling is on for every API key, per key."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.cache import cache

from merchants.throttling import ApiKeyRateThrottle

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
