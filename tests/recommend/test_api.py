import pytest

from consumers.models import Consumer, Product
from privacy.models import Purpose
from recommend.services import recommender_train, training_config

URL = "/api/v1/recommendations/{}"


@pytest.fixture
def trained(marketplace, approve_activity):
    approve_activity(Purpose.RECOMMENDATION)
    recommender_train(config=training_config(algorithm="ease", params={"l2": 20.0}), actor="test")
    return marketplace


def skus_of(merchant):
    return set(Product.objects.filter(merchant=merchant).values_list("sku", flat=True))


def test_recommendations_for_a_known_consumer(trained, operator_client):
    consumer = trained.consumers[0]
    response = operator_client.get(URL.format(consumer.pseudonym), {"merchant": trained.merchant.slug, "n": 7})
    assert response.status_code == 200
    body = response.json()
    assert body["consumer_known"] is True and body["personalised"] is True
    assert body["model"]["algorithm"] == "ease"
    assert [r["rank"] for r in body["results"]] == list(range(1, 8))
    assert {r["source"] for r in body["results"]} == {"model"}


def test_never_another_merchants_product_nor_an_already_bought_one(trained, operator_client):
    merchant = trained.merchant
    own = skus_of(merchant)
    bought_skus = {
        consumer_id: set(Product.objects.filter(pk__in=ids).values_list("sku", flat=True))
        for (consumer_id, m), ids in trained.purchases.items()
        if m == merchant.pk
    }
    for consumer in trained.consumers[:40]:
        response = operator_client.get(URL.format(consumer.pseudonym), {"merchant": merchant.slug, "n": 30})
        assert response.status_code == 200
        skus = [r["sku"] for r in response.json()["results"]]
        assert set(skus) <= own
        assert not set(skus) & bought_skus.get(consumer.pk, set())
        assert len(skus) == len(set(skus))


def test_unknown_consumer_gets_popular_products_not_an_error(trained, operator_client):
    response = operator_client.get(URL.format("f" * 64), {"merchant": trained.merchant.slug})
    assert response.status_code == 200
    body = response.json()
    assert body["consumer_known"] is False
    assert len(body["results"]) == 10
    assert {r["source"] for r in body["results"]} == {"popular"}
    assert {r["sku"] for r in body["results"]} <= skus_of(trained.merchant)


def test_without_a_basis_nobody_is_personalised(trained, operator_client):
    from django.contrib.auth import get_user_model

    from privacy.models import ProcessingActivity
    from privacy.services import activity_suspend

    officer = get_user_model().objects.get(username="officer")
    for activity in ProcessingActivity.objects.filter(purpose=Purpose.RECOMMENDATION):
        activity_suspend(activity=activity, officer=officer)
    consumer = trained.consumers[0]
    response = operator_client.get(URL.format(consumer.pseudonym), {"merchant": trained.merchant.slug, "n": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["personalised"] is False and body["consumer_known"] is True
    assert {r["source"] for r in body["results"]} == {"popular"}


def test_cold_consumer_without_events_and_without_any_model(marketplace, operator_client, approve_activity):
    approve_activity(Purpose.RECOMMENDATION)
    quiet = Consumer.objects.create(pseudonym="quiet")
    response = operator_client.get(URL.format(quiet.pseudonym), {"merchant": marketplace.merchant.slug, "n": 3})
    assert response.status_code == 200
    assert response.json()["model"] is None
    assert len(response.json()["results"]) == 3


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ({"merchant": "acme", "n": 0}, 400, "n"),
        ({"merchant": "acme", "n": 101}, 400, "n"),
        ({"merchant": "acme", "n": "ten"}, 400, "n"),
        ({"n": 5}, 400, "merchant"),
        ({"merchant": "no-such-merchant"}, 404, None),
        ({"merchant": "bad slug!"}, 400, "merchant"),
    ],
)
def test_bad_requests_are_4xx_with_the_field_named(marketplace, operator_client, query, status, field):
    response = operator_client.get(URL.format("anyone"), query)
    assert response.status_code == status
    error = response.json()["error"]
    if field:
        assert field in error["details"]


def test_odd_pseudonyms_never_produce_a_500(marketplace, operator_client):
    for pseudonym in ["x" * 500, "%00", "a%00b", "ü", "' OR 1=1 --", "%ff%fe"]:
        response = operator_client.get(URL.format(pseudonym), {"merchant": marketplace.merchant.slug})
        assert response.status_code == 200, pseudonym


def test_unknown_or_malformed_pseudonyms_get_the_popular_products(marketplace, operator_client):
    for pseudonym in ["f" * 64, "F" * 64, "quiet", "x" * 500]:
        response = operator_client.get(URL.format(pseudonym), {"merchant": marketplace.merchant.slug, "n": 3})
        assert response.status_code == 200, pseudonym
        body = response.json()
        assert body["consumer_known"] is False, pseudonym
        assert len(body["results"]) == 3 and {r["source"] for r in body["results"]} == {"popular"}, pseudonym


def test_recommendations_need_an_operator_key(marketplace, merchant_client, client):
    path = URL.format(marketplace.consumers[0].pseudonym)
    assert merchant_client.get(path, {"merchant": marketplace.merchant.slug}).status_code == 403
    assert client.get(path, {"merchant": marketplace.merchant.slug}).status_code in (401, 403)


def test_similar_products_from_own_catalogue(trained, merchant_client):
    sku = trained.products[trained.merchant.pk][0].sku
    response = merchant_client.get(f"/api/v1/products/{sku}/similar", {"n": 5})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 5
    assert {r["sku"] for r in results} <= skus_of(trained.merchant) - {sku}
    # Products of one category are bought together in the synthetic data: most neighbours share it.
    category = trained.products[trained.merchant.pk][0].category
    assert sum(r["category"] == category for r in results) >= 3


def test_similar_products_of_a_foreign_or_missing_sku_is_404(trained, merchant_client):
    foreign = trained.products[trained.other_merchant.pk][0].sku
    assert merchant_client.get(f"/api/v1/products/{foreign}/similar").status_code == 404
    assert merchant_client.get("/api/v1/products/nope/similar").status_code == 404
    assert merchant_client.get("/api/v1/products/a%00b/similar").status_code == 404
    assert merchant_client.get(f"/api/v1/products/{'x' * 300}/similar").status_code == 404
    assert merchant_client.get(f"/api/v1/products/{foreign}/similar", {"n": -1}).status_code == 400


def test_similar_products_without_a_model_fall_back_to_the_category(marketplace, merchant_client, operator_client):
    product = marketplace.products[marketplace.merchant.pk][0]
    response = merchant_client.get(f"/api/v1/products/{product.sku}/similar", {"n": 3})
    assert response.status_code == 200
    assert [r["category"] for r in response.json()["results"]] == [product.category] * 3
    assert operator_client.get(f"/api/v1/products/{product.sku}/similar").status_code == 403


def test_endpoints_are_in_the_openapi_schema(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    assert "/api/v1/recommendations/{pseudonym}" in schema["paths"]
    assert "/api/v1/products/{sku}/similar" in schema["paths"]
    operation = schema["paths"]["/api/v1/recommendations/{pseudonym}"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"pseudonym", "merchant", "n"}
