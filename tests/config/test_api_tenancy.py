"""Tenancy across the whole API: every merchant endpoint that takes an id answers another merchant's object with
the same 404 as a missing one, and every operator endpoint refuses a merchant key.

The routes are read from the URL configuration, so a new endpoint is covered automatically, and one whose
path parameter this test does not know how to fill fails here until it is added to FOREIGN_IDS.
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from consumers.models import Product
from merchants.permissions import IsMerchantKey, IsOperatorKey
from segments.services import segment_create
from tags.models import Tag

METHODS = ("get", "post", "put", "patch", "delete")


def api_routes() -> list[tuple[str, type]]:
    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), pattern.callback

    routes = []
    for route, callback in walk(get_resolver().url_patterns):
        view_class = getattr(callback, "cls", None)
        if route.startswith("api/v1/") and view_class is not None:
            routes.append((route, view_class))
    return routes


def permission_of(view_class) -> type | None:
    for permission in getattr(view_class, "permission_classes", []):
        if permission in (IsMerchantKey, IsOperatorKey):
            return permission
    return None


def handled_methods(view_class) -> list[str]:
    return [m for m in METHODS if hasattr(view_class, m)]


@pytest.fixture
def foreign_objects(other_merchant, all_purposes_approved):
    """Objects that belong to the other merchant, by the path parameter that names them."""
    Tag.objects.create(family="country", value="SG", label="Singapore", definition="Lives in SG", rule_version="1")
    segment = segment_create(merchant=other_merchant, name="theirs", actor="test", expression="country:SG")
    second = segment_create(merchant=other_merchant, name="theirs too", actor="test", expression="NOT country:SG")
    product = Product.objects.create(merchant=other_merchant, sku="THEIR-SKU-1", title="Theirs", category="beauty")
    ids = {"segment_id": segment.pk, "other_id": second.pk, "sku": product.sku}
    try:
        from campaigns.models import Campaign

        campaign = Campaign.objects.create(
            merchant=other_merchant, name="theirs", title_template="Hi", body_template="x"
        )
        ids.update({"campaign_id": campaign.pk, "pk": campaign.pk})
    except (ImportError, TypeError, ValueError):
        pass
    return ids


PARAM = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


def fill(route: str, values: dict) -> str:
    def replace(match):
        name = match.group("name")
        if name not in values:
            pytest.fail(f"{route}: add a foreign object for path parameter {name!r} to this test")
        return str(values[name])

    return "/" + PARAM.sub(replace, route)


def test_every_merchant_endpoint_answers_a_foreign_id_with_404(merchant_client, foreign_objects):
    checked = []
    for route, view_class in api_routes():
        if permission_of(view_class) is not IsMerchantKey or not PARAM.search(route):
            continue
        url = fill(route, foreign_objects)
        for method in handled_methods(view_class):
            response = getattr(merchant_client, method)(url, data={}, format="json")
            assert response.status_code == 404, f"{method.upper()} {url} -> {response.status_code}"
            assert response.json()["error"]["code"] == "not_found"
            checked.append(f"{method.upper()} {route}")
    assert len(checked) >= 6, checked


def test_foreign_and_missing_ids_are_indistinguishable(merchant_client, foreign_objects):
    missing = {name: (999_999 if isinstance(value, int) else "NO-SUCH-SKU") for name, value in foreign_objects.items()}
    for route, view_class in api_routes():
        if (
            permission_of(view_class) is not IsMerchantKey
            or not PARAM.search(route)
            or "get" not in handled_methods(view_class)
        ):
            continue
        foreign = merchant_client.get(fill(route, foreign_objects))
        absent = merchant_client.get(fill(route, missing))
        assert (foreign.status_code, foreign.json()) == (absent.status_code, absent.json()), route


def test_every_operator_endpoint_refuses_a_merchant_key(merchant_client):
    refused = 0
    for route, view_class in api_routes():
        if permission_of(view_class) is not IsOperatorKey:
            continue
        url = fill(route, {"pk": 1, "pseudonym": "0" * 64, "consumer": "0" * 64})
        for method in handled_methods(view_class):
            response = getattr(merchant_client, method)(url, data={}, format="json")
            assert response.status_code == 403, f"{method.upper()} {url} -> {response.status_code}"
            refused += 1
    assert refused >= 8


def test_every_merchant_endpoint_refuses_an_operator_key(operator_client, foreign_objects):
    for route, view_class in api_routes():
        if permission_of(view_class) is not IsMerchantKey:
            continue
        url = fill(route, foreign_objects)
        for method in handled_methods(view_class):
            response = getattr(operator_client, method)(url, data={}, format="json")
            assert response.status_code == 403, f"{method.upper()} {url} -> {response.status_code}"


def test_every_endpoint_refuses_a_missing_key(client, foreign_objects):
    for route, view_class in api_routes():
        if permission_of(view_class) is None:
            continue
        url = fill(route, {"pk": 1, **foreign_objects, "pseudonym": "0" * 64})
        response = client.get(url)
        assert response.status_code in (401, 405), f"GET {url} -> {response.status_code}"
