"""Category and brand conditions (segments/targeting.py): a merchant may name a value its own catalogue has, or one
sold by at least SEGMENT_SHARED_VALUE_MIN_MERCHANTS merchants; never a competitor's own brand. Through the API
(estimate, save, edit, refresh, suggestions) and as a property: resolution follows the rule, and both evaluators
refuse exactly the same inputs."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.models import EventType, Product
from merchants.services import merchant_create
from segments.evaluation import definition_resolve, evaluate_bitmap, evaluate_sql
from segments.language import ActionTerm, parse, to_text
from segments.models import Segment, SegmentStatus
from segments.services import InvalidDefinition, definition_compile, segment_create, segment_refresh
from segments.targeting import ValueNotTargetable, targetable_values

from .conftest import caches_clear, event_add

ESTIMATE = "/api/v1/audiences/estimate"
VALUES = "/api/v1/audiences/values"
REFUSED = 'brand "Aether" is not in your catalogue and is sold by too few merchants to target'


@pytest.fixture
def market(merchant, other_merchant, settings):
    """acme (the caller) sells Trailhead tents; globex alone sells Aether skincare; Nimbus and 'kitchen' are sold
    by three merchants (acme not among them), Solo by two."""
    settings.SEGMENT_SHARED_VALUE_MIN_MERCHANTS = 3
    third = merchant_create(slug="initech", name="Initech")
    fourth = merchant_create(slug="umbrella", name="Umbrella")
    rows = [
        (merchant, "T1", "outdoor/camping", "Trailhead"),
        (other_merchant, "A1", "beauty/skincare", "Aether"),
        (other_merchant, "A2", "beauty/skincare", "AETHER"),
        (other_merchant, "N1", "kitchen/pans", "Nimbus"),
        (third, "N2", "kitchen/pans", "nimbus"),
        (fourth, "N3", "kitchen/knives", "Nimbus"),
        (other_merchant, "S1", "garden", "Solo"),
        (third, "S2", "garden", "Solo"),
    ]
    products = {
        sku: Product.objects.create(merchant=m, sku=sku, category=path.split("/")[0], category_path=path, brand=brand)
        for m, sku, path, brand in rows
    }
    return products


def post_estimate(client, expression):
    return client.post(ESTIMATE, {"expression": expression}, format="json")


# ------------------------------------------------------------------------------------------------ the API


def test_estimate_refuses_a_competitors_brand_without_naming_the_competitor(
    market, big_world, tagging_approved, merchant_client
):
    text = 'viewed(brand="Aether") AND country:SG'
    response = post_estimate(merchant_client, text)
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid_expression"
    assert error["message"] == f"{REFUSED} at column 14"
    assert error["details"]["position"] == 14 and error["details"]["expected"] == []
    assert "globex" not in str(response.json()).lower()
    # a brand nobody sells gets the same answer: the refusal is not an oracle for what others sell
    unknown = post_estimate(merchant_client, 'viewed(brand="Zephyr")').json()["error"]["message"]
    assert unknown == 'brand "Zephyr" is not in your catalogue and is sold by too few merchants to target at column 14'
    # a category only the competitor sells, in the JSON form too
    response = merchant_client.post(
        ESTIMATE, {"definition": {"action": "purchased", "category": "beauty"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"]["position"] == "$.category"


def test_own_and_widely_sold_values_are_allowed(market, big_world, tagging_approved, merchant_client):
    for text in (
        'viewed(brand="trailhead")',  # own, any case
        'purchased(category="outdoor")',
        'purchased(category="outdoor/camping", brand="Trailhead")',
        'viewed(brand="NIMBUS")',  # three merchants
        'viewed(category="kitchen")',
        'viewed(category="kitchen", brand="Nimbus")',
    ):
        assert post_estimate(merchant_client, text).status_code == 200, text


def test_two_shared_values_cannot_be_combined_into_one_sellers_niche(
    market, big_world, tagging_approved, merchant_client
):
    # Nimbus (three merchants) and kitchen/knives (one: umbrella) together: umbrella's Nimbus knives only
    response = post_estimate(merchant_client, 'viewed(category="kitchen/knives", brand="Nimbus")')
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(
        'category "kitchen/knives" is not in your catalogue and is sold by too few merchants to target'
    )
    # garden (two merchants) fails on its own; Solo too
    assert post_estimate(merchant_client, 'viewed(brand="Solo")').status_code == 400


def test_saving_and_editing_refuse_the_same(market, big_world, tagging_approved, merchant_client):
    response = merchant_client.post(
        "/api/v1/segments/", {"name": "rivals", "expression": 'viewed(brand="Aether")'}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == f"{REFUSED} at column 14"
    assert not Segment.objects.exists()

    created = merchant_client.post(
        "/api/v1/segments/", {"name": "campers", "expression": 'viewed(brand="Trailhead")'}, format="json"
    )
    assert created.status_code == 201
    response = merchant_client.patch(
        f"/api/v1/segments/{created.json()['id']}", {"expression": 'carted(brand="Aether")'}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == f"{REFUSED} at column 14"
    assert Segment.objects.get().definition == 'viewed(brand="Trailhead")'


def test_a_saved_segment_whose_value_is_no_longer_targetable_fails_its_refresh(
    market, big_world, tagging_approved, merchant, merchant_client, django_capture_on_commit_callbacks
):
    segment = segment_create(merchant=merchant, name="campers", actor="test", expression='viewed(brand="Trailhead")')
    outer = segment_create(merchant=merchant, name="sg campers", actor="test", expression=f"segment:{segment.pk}")
    segment_refresh(segment_id=segment.pk, actor="test")
    assert Segment.objects.get(pk=segment.pk).status == SegmentStatus.READY
    # acme stops selling Trailhead; nobody else sells it
    market["T1"].delete()
    caches_clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = merchant_client.post(f"/api/v1/segments/{segment.pk}/refresh")
    assert response.status_code == 202
    segment.refresh_from_db()
    assert segment.status == SegmentStatus.FAILED
    assert segment.last_error.startswith(
        'The definition no longer works: brand "Trailhead" is not in your catalogue and is sold by too few '
        "merchants to target"
    )
    # a segment naming it cannot carry its old snapshot into new audiences either
    with django_capture_on_commit_callbacks(execute=True):
        merchant_client.post(f"/api/v1/segments/{outer.pk}/refresh")
    outer.refresh_from_db()
    assert outer.status == SegmentStatus.FAILED
    assert f'segment:{segment.pk} targets brand "Trailhead"' in outer.last_error
    response = post_estimate(merchant_client, f"country:SG AND segment:{segment.pk}")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["position"] == 16


def test_suggestions_offer_own_and_shared_values_only(market, merchant_client, other_merchant_client):
    def values(client, argument, prefix=""):
        response = client.get(VALUES, {"argument": argument, "prefix": prefix})
        assert response.status_code == 200, response.json()
        return response.json()["values"]

    assert values(merchant_client, "brand") == ["Nimbus", "Trailhead"]
    assert values(merchant_client, "brand", "ae") == []
    # kitchen: three merchants; kitchen/pans two, kitchen/knives one; outdoor is acme's own
    assert values(merchant_client, "category") == ["kitchen", "outdoor", "outdoor/camping"]
    # globex sees its own brands, in its spelling, and the shared one
    assert values(other_merchant_client, "brand") == ["Aether", "Nimbus", "Solo"]
    assert merchant_client.get(VALUES, {"argument": "merchant"}).status_code == 400


def test_portal_suggestions_follow_the_same_rule(market, merchant, client, django_user_model):
    from merchants.models import Role
    from merchants.services import membership_grant

    user = django_user_model.objects.create_user(username="marketer", password="marketer-pass-123")
    membership_grant(merchant=merchant, user=user, role=Role.MARKETER)
    client.force_login(user)
    response = client.get("/segments/values.json", {"argument": "brand", "prefix": ""})
    assert response.status_code == 200
    assert response.json()["values"] == ["Nimbus", "Trailhead"]


# ------------------------------------------------------------------------------------------------ the property

MERCHANT_SLUGS = ["acme", "globex", "initech", "umbrella"]
PATHS = ["beauty/skincare", "beauty/makeup", "outdoor/camping", "kitchen"]
BRANDS = ["Aether", "Glow", "Peak"]
CATEGORY_VALUES = ["beauty", "beauty/skincare", "BEAUTY/MAKEUP", "outdoor", "kitchen", "toys"]
BRAND_VALUES = ["Aether", "aether", "Glow", "PEAK", "Zephyr"]


def rule_allows(catalogue, *, caller: int, category: str | None, brand: str | None, needed: int) -> bool:
    """The rule, written again in Python: own catalogue, or at least `needed` distinct merchants."""

    def matches(path: str, product_brand: str) -> bool:
        ok = True
        if category is not None:
            c, p = category.casefold(), path.casefold()
            ok = p.split("/")[0] == c or p == c or p.startswith(c + "/")
        if brand is not None:
            ok = ok and product_brand.casefold() == brand.casefold()
        return ok

    sellers = {m for m, path, b in catalogue if matches(path, b)}
    return category is None and brand is None or caller in sellers or len(sellers) >= needed


@pytest.mark.django_db(transaction=False)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_both_evaluators_refuse_exactly_what_the_rule_refuses(world, merchant, tagging_approved, data):
    needed = data.draw(st.integers(1, 4), label="min merchants")
    catalogue = data.draw(
        st.lists(
            st.tuples(st.integers(0, len(MERCHANT_SLUGS) - 1), st.sampled_from(PATHS), st.sampled_from(BRANDS)),
            min_size=1,
            max_size=10,
        ),
        label="catalogue",
    )
    terms = data.draw(
        st.lists(
            st.builds(
                ActionTerm,
                st.sampled_from(["viewed", "purchased"]),
                category=st.none() | st.sampled_from(CATEGORY_VALUES),
                brand=st.none() | st.sampled_from(BRAND_VALUES),
            ),
            min_size=1,
            max_size=4,
        ),
        label="terms",
    )

    class Rollback(Exception):
        pass

    from django.conf import settings as django_settings

    original = django_settings.SEGMENT_SHARED_VALUE_MIN_MERCHANTS
    try:
        with transaction.atomic():
            caches_clear()
            django_settings.SEGMENT_SHARED_VALUE_MIN_MERCHANTS = needed
            merchants = [merchant] + [merchant_create(slug=slug, name=slug) for slug in MERCHANT_SLUGS[1:]]
            products = [
                Product.objects.create(
                    merchant=merchants[m], sku=f"p{i}", category=path.split("/")[0], category_path=path, brand=brand
                )
                for i, (m, path, brand) in enumerate(catalogue)
            ]
            world.consumers = []
            world.add_consumers(3)
            for i, product in enumerate(products[:3]):
                event_add(world.consumers[i % 3], product, EventType.VIEW)
            world.rebuild()
            now = timezone.now()

            for term in terms:
                text = to_text(term)
                expected = rule_allows(catalogue, caller=0, category=term.category, brand=term.brand, needed=needed)
                outcomes = []
                for evaluate in (evaluate_bitmap, evaluate_sql):
                    try:
                        evaluate(definition_compile(merchant=merchant, expression=text), now=now)
                        outcomes.append(True)
                    except InvalidDefinition as exc:
                        assert isinstance(exc.syntax_error, ValueNotTargetable), text
                        outcomes.append(False)
                assert outcomes == [expected, expected], (text, catalogue, needed)
                # suggestions never offer a value the rule refuses
                if term.brand is not None:
                    for value in targetable_values(merchant_id=merchant.pk, argument="brand"):
                        assert rule_allows(catalogue, caller=0, category=None, brand=value, needed=needed), value

            # a segment saved while allowed, nested after its value stopped being targetable: both refuse
            allowed = [
                t
                for t in terms
                if rule_allows(catalogue, caller=0, category=t.category, brand=t.brand, needed=needed)
                and (t.category or t.brand)
            ]
            if allowed:
                term = allowed[0]
                saved = segment_create(merchant=merchant, name="saved", actor="test", expression=to_text(term))
                segment_refresh(segment_id=saved.pk, actor="test")
                Product.objects.all().delete()
                caches_clear()
                for evaluate in (evaluate_bitmap, evaluate_sql):
                    with pytest.raises(ValueNotTargetable, match=f"^segment:{saved.pk} targets "):
                        evaluate(definition_resolve(parse(f"segment:{saved.pk}"), merchant=merchant), now=now)
            raise Rollback
    except Rollback:
        pass
    finally:
        django_settings.SEGMENT_SHARED_VALUE_MIN_MERCHANTS = original
        caches_clear()
