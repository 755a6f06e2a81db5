"""likely_to_buy(...): product audiences from the serving recommendation model's scores."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.models import Product
from recommend import artefacts
from recommend.models import RecommenderModel
from recommend.services import recommender_train, training_config
from segments.evaluation import definition_resolve, evaluate_bitmap, evaluate_sql
from segments.language import (
    And,
    LikelyTerm,
    Not,
    Or,
    SegmentSyntaxError,
    from_json,
    parse,
    to_json,
    to_text,
)
from tests.factories import bitmaps_refresh
from tests.recommend.conftest import GROUP_CATEGORIES, build_marketplace

from .conftest import caches_clear


@pytest.fixture
def market(merchant, other_merchant, all_purposes_approved, settings, tmp_path):
    """Planted taste groups (one category each), an EASE model trained on them and serving."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    artefacts.cache_clear()
    caches_clear()
    market = build_marketplace(merchant, other_merchant, consumers=160)
    bitmaps_refresh()
    run = recommender_train(config=training_config(algorithm="ease", params=dict(l2=20.0)), actor="test", force=True)
    RecommenderModel.objects.filter(pk=run.model.pk).update(is_active=True)
    yield market
    artefacts.cache_clear()
    caches_clear()


def members(expression: str, merchant) -> set[int]:
    resolved = definition_resolve(parse(expression), merchant=merchant, text=expression)
    bitmap = evaluate_bitmap(resolved)
    assert bitmap == evaluate_sql(resolved), expression
    return set(bitmap)


def test_text_and_json_forms_round_trip():
    for text in (
        'likely_to_buy(product="SKU 1", top=1000)',
        'likely_to_buy(category="outdoor", band=top10) AND NOT likely_to_buy(product=A7)',
        "likely_to_buy(category=beauty)",
    ):
        node = parse(text)
        assert parse(to_text(node)) == node
        assert from_json(to_json(node)) == node
    assert to_json(parse("likely_to_buy(product=A, top=5)")) == {"likely_to_buy": {"product": "A", "top": 5}}
    assert parse("likely_to_buy(category=x)").percent == 10  # no top or band: the top 10 %


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("likely_to_buy(top=3)", 1, "exactly one of product and category"),
        ("likely_to_buy(product=a, category=b)", 1, "exactly one of product and category"),
        ("likely_to_buy(product=a, band=top3)", 31, "band must be one of"),
        ("likely_to_buy(product=a, top=0)", 30, "top must be a whole number"),
        ("likely_to_buy(product=a, top=5, band=top1)", 38, "top or band, not both"),
        ("country:SG AND likely_to_buy(colour=red)", 30, "Unknown argument"),
        ('likely_to_buy("product"=a)', 15, "Expected an argument name"),  # as an action's arguments say
        ("likely_to_buy(product=a product=b)", 25, "Expected ',' or ')' in the arguments of likely_to_buy()"),
    ],
)
def test_malformed_terms_name_the_position(text, column, message):
    with pytest.raises(SegmentSyntaxError) as caught:
        parse(text)
    assert caught.value.column == column and message in caught.value.reason


def test_json_errors_name_the_path():
    with pytest.raises(SegmentSyntaxError) as caught:
        from_json({"and": [{"likely_to_buy": {"product": "A", "top": "many"}}]})
    assert caught.value.position == "$.and[0].likely_to_buy.top"


def test_the_category_audience_is_the_consumers_of_that_category(market, merchant):
    outdoor = {pk for pk, group in market.group_of.items() if GROUP_CATEGORIES[group] == "outdoor"}
    found = members('likely_to_buy(category="outdoor", band=top25)', merchant)
    assert 0 < len(found) <= -(-len(market.consumers) * 25 // 100)
    assert len(found & outdoor) >= 0.8 * len(found)
    top = members(f'likely_to_buy(product="{market.products[merchant.pk][0].sku}", top=7)', merchant)
    assert len(top) == 7


def test_a_product_or_category_outside_the_merchants_catalogue_is_refused_at_its_position(
    market, merchant, other_merchant
):
    foreign = market.products[other_merchant.pk][0].sku
    text = f'purchased(category=outdoor) OR likely_to_buy(product="{foreign}", top=10)'
    with pytest.raises(SegmentSyntaxError) as caught:
        definition_resolve(parse(text), merchant=merchant, text=text)
    assert caught.value.position == text.index(f'"{foreign}"') + 1 and foreign in caught.value.reason
    with pytest.raises(SegmentSyntaxError) as caught:
        definition_resolve(from_json({"likely_to_buy": {"category": "garden"}}), merchant=merchant)
    assert caught.value.position == "$.likely_to_buy.category"


def test_the_api_answers_a_foreign_product_with_a_400_naming_the_position(market, merchant_client, other_merchant):
    foreign = market.products[other_merchant.pk][0].sku
    expression = f'likely_to_buy(product="{foreign}", top=10)'
    response = merchant_client.post("/api/v1/audiences/estimate", {"expression": expression}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["position"] == expression.index('"') + 1


def test_without_a_serving_model_nobody_is_likely(market, merchant):
    RecommenderModel.objects.update(is_active=False)
    assert members('likely_to_buy(category="outdoor", band=top50)', merchant) == set()


@pytest.mark.django_db(transaction=False)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_bitmap_and_sql_evaluators_agree_on_likely_to_buy(market, merchant, data):
    skus = [p.sku for p in Product.objects.filter(merchant=merchant).order_by("id")]
    target = st.one_of(
        st.sampled_from(skus).map(lambda sku: {"product": sku}),
        st.sampled_from(GROUP_CATEGORIES).map(lambda c: {"category": c}),
    )
    size = st.one_of(
        st.integers(1, 200).map(lambda n: {"top": n}),
        st.sampled_from(["top1", "top5", "top10", "top25", "top50"]).map(lambda b: {"band": b}),
        st.just({}),
    )
    leaf = st.builds(lambda t, s: LikelyTerm(**t, **s), target, size)
    tree = st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, min_size=2, max_size=3).map(lambda ops: And(tuple(ops))),
            st.lists(inner, min_size=2, max_size=3).map(lambda ops: Or(tuple(ops))),
            inner.map(Not),
        ),
        max_leaves=4,
    )
    node = data.draw(tree, label="expression")
    resolved = definition_resolve(node, merchant=merchant)
    assert evaluate_bitmap(resolved) == evaluate_sql(resolved), resolved.text
