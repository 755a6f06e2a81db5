"""Merchant scoping: every queryset scoped to the caller's merchant, failing closed; foreign = missing = 404."""

from __future__ import annotations

import pytest
from django.http import Http404
from rest_framework.test import APIRequestFactory

from consumers.models import Product
from merchants.api_base import ScopeMissing, get_scoped_or_404, request_merchant
from merchants.auth import ApiPrincipal
from merchants.models import ApiKeyKind

from .urls import ForgetfulViewSet, ProductViewSet

pytestmark = pytest.mark.urls("tests.merchants.urls")


@pytest.fixture
def products(merchant, other_merchant):
    mine = [Product.objects.create(merchant=merchant, sku=f"MINE-{i}") for i in range(3)]
    theirs = [Product.objects.create(merchant=other_merchant, sku=f"THEIRS-{i}") for i in range(2)]
    return mine, theirs


def test_a_merchant_lists_only_its_own_objects(merchant_client, other_merchant_client, products):
    listed = merchant_client.get("/api/v1/test-products").json()["results"]
    assert [p["sku"] for p in listed] == ["MINE-0", "MINE-1", "MINE-2"]
    listed = other_merchant_client.get("/api/v1/test-products").json()["results"]
    assert [p["sku"] for p in listed] == ["THEIRS-0", "THEIRS-1"]


def test_another_merchants_object_is_the_same_404_as_a_missing_one(merchant_client, products):
    mine, theirs = products
    assert merchant_client.get(f"/api/v1/test-products/{mine[0].pk}").status_code == 200
    foreign = merchant_client.get(f"/api/v1/test-products/{theirs[0].pk}")
    missing = merchant_client.get("/api/v1/test-products/999999999")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json() == {"error": {"code": "not_found", "message": "Not found."}}


def test_get_scoped_or_404_treats_bad_lookups_as_missing(merchant, products):
    scoped = Product.objects.filter(merchant=merchant)
    mine, theirs = products
    assert get_scoped_or_404(scoped, pk=mine[1].pk) == mine[1]
    for lookup in ({"pk": theirs[0].pk}, {"pk": "not-a-number"}, {"pk": None}):
        with pytest.raises(Http404):
            get_scoped_or_404(scoped, **lookup)


def test_a_view_that_forgets_its_scope_fails_closed(merchant, products):
    request = APIRequestFactory().get("/")
    request.user = ApiPrincipal(api_key_id=1, kind=ApiKeyKind.MERCHANT, merchant=merchant)
    view = ForgetfulViewSet(request=request, format_kwarg=None, action="list")
    with pytest.raises(ScopeMissing, match="must define scoped_queryset"):
        view.get_queryset()


def test_the_forgetful_view_never_answers_with_data(merchant_client, products):
    response = merchant_client.get("/api/v1/test-forgetful")
    assert response.status_code == 500
    assert "MINE" not in response.content.decode()
    assert response.json()["error"]["code"] == "internal_error"


def test_no_merchant_in_context_is_an_error_not_everything(db, merchant):
    request = APIRequestFactory().get("/")
    request.user = ApiPrincipal(api_key_id=1, kind=ApiKeyKind.OPERATOR, merchant=None)
    with pytest.raises(ScopeMissing):
        request_merchant(request)
    view = ProductViewSet(request=request, format_kwarg=None, action="list")
    with pytest.raises(ScopeMissing):
        view.get_queryset()
