"""Officers read model cards and fairness in the admin; merchants see a plain-words summary in the tag explorer;
`predict.fairness.spread` flags large skews."""

from __future__ import annotations

import random

import pytest
from pyroaring import BitMap

from predict.fairness import spread
from predict.models import ModelCard
from predict.services import predictions_compute
from tags.models import ConsumerTag
from tags.services import tags_compute

from .conftest import AS_OF, marketplace

CARDS = "/admin/predict/modelcard/"


@pytest.fixture
def published(db, approve_activity):
    approve_activity("tagging")
    world = marketplace(consumers=600)
    tags_compute(families=["age_range", "country"], actor="test", as_of=AS_OF)
    predictions_compute(actor="test", as_of=AS_OF, families=["purchase_propensity", "store_propensity"])
    return world


def test_officers_read_the_model_card_in_the_admin(client, officer, published):
    client.force_login(officer)
    listing = client.get(CARDS)
    assert listing.status_code == 200
    assert "purchase_propensity" in listing.content.decode()
    card = ModelCard.objects.get(family="purchase_propensity")
    page = client.get(f"{CARDS}{card.pk}/change/").content.decode()
    for heading in ("ROC-AUC", "PR-AUC", "Brier score", "Recency/frequency baseline", "Reliability", "Predicted range"):
        assert heading.lower() in page.lower(), heading
    assert "days_since_cart" in page  # feature importance, by name
    assert "Population share" in page and "age_range" in page  # fairness per band
    assert card.reason in page
    assert client.get(f"{CARDS}add/").status_code == 403


def test_merchants_read_the_card_in_plain_words_in_the_tag_explorer(client, merchant_user, published):
    client.force_login(merchant_user)
    page = client.get("/tags/").content.decode()
    assert "purchase_propensity:very_high" in page
    assert "Predicted by a model trained on" in page and "recency-and-frequency rule" in page
    # Nothing about any individual: no score appears anywhere in the page.
    assert "score" not in page.lower().replace("no individual score is kept or shown", "")


def test_the_catalogue_api_lists_the_predicted_families(merchant_client, published):
    response = merchant_client.get("/api/v1/tags/?family=purchase_propensity")
    assert response.status_code == 200
    (family,) = response.json()["families"]
    assert family["family"] == "purchase_propensity"
    assert {t["value"] for t in family["tags"]} == {"very_high", "high", "medium", "low"}


def test_spread_flags_a_skewed_audience_and_not_a_random_one(db, approve_activity):
    approve_activity("tagging")
    world = marketplace(consumers=600, signal=False)
    tags_compute(families=["age_range", "country"], actor="test", as_of=AS_OF)
    rows = ConsumerTag.objects.filter(tag__family="age_range", tag__value="18-24")
    young = BitMap(rows.values_list("consumer_id", flat=True))
    report = spread(young)
    assert report.members == len(young) == 200
    ages = {g.group: g for g in report.dimensions["age_range"]}
    assert ages["18-24"].ratio == pytest.approx(3.0) and ages["18-24"].flagged
    assert ages["25-34"].members == 0 and ages["25-34"].flagged
    assert "age_range:18-24" in report.flags

    rng = random.Random(3)
    sample = BitMap(rng.sample([c.pk for c in world["consumers"]], 300))
    assert spread(sample).flags == []


def test_a_store_propensity_is_listed_only_to_its_own_store(merchant_client, client, merchant_user, published):
    from tags.models import Tag
    from tags.rules import tag_visible_to

    assert Tag.objects.filter(family="store_propensity", value__startswith="store-0.").exists()
    # Acme (the signed-in merchant) is not one of the marketplace's two stores: it sees none of their values.
    response = merchant_client.get("/api/v1/tags/?family=store_propensity")
    assert response.status_code == 200
    assert [t for f in response.json()["families"] for t in f["tags"]] == []
    client.force_login(merchant_user)
    assert "store-0." not in client.get("/tags/").content.decode()
    builder = client.get("/tags/catalogue.json").json()["tags"]
    assert any(t["family"] == "purchase_propensity" for t in builder)
    assert not any(t["family"] == "store_propensity" for t in builder)
    assert tag_visible_to(family="store_propensity", value="store-0.high", merchant_slug="store-0")
    assert not tag_visible_to(family="store_propensity", value="store-0.high", merchant_slug="store")
    assert tag_visible_to(family="country", value="SG", merchant_slug="store")
