"""The bitmap evaluator (what merchants get) against the SQL evaluator (the oracle), and resolution errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.models import Event, EventType, Product
from segments.evaluation import (
    behaviour_bitmap,
    definition_resolve,
    evaluate_bitmap,
    evaluate_sql,
)
from segments.language import ActionTerm, And, Not, Or, SegmentSyntaxError, SegmentTerm, TagTerm, parse
from segments.models import Segment
from segments.services import segment_create, segment_refresh

from .conftest import caches_clear, event_add

TAG_CHOICES = [
    ("country", "SG"),
    ("country", "MY"),
    ("interest", "sports"),
    ("interest", "outdoor"),
    ("interest", "home & living"),
    ("discount_sensitivity", "high"),
]
ACTION_CHOICES = st.builds(
    ActionTerm,
    st.sampled_from(["viewed", "carted", "purchased"]),
    category=st.none() | st.sampled_from(["beauty", "outdoor", "beauty/makeup"]),
    brand=st.none() | st.sampled_from(["Glow", "peak"]),
    merchant=st.none() | st.just("acme"),
    within=st.none() | st.sampled_from(["12h", "3d", "2w"]),
    min_count=st.integers(1, 3),
)
EVENT_TYPES = [EventType.VIEW, EventType.CART, EventType.PURCHASE]


class _Rollback(Exception):
    pass


def _tree(leaves):
    return st.recursive(
        leaves,
        lambda children: (
            st.builds(Not, children)
            | st.builds(And, st.lists(children, min_size=2, max_size=3).map(tuple))
            | st.builds(Or, st.lists(children, min_size=2, max_size=3).map(tuple))
        ),
        max_leaves=7,
    )


@pytest.mark.django_db(transaction=False)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_bitmap_and_sql_evaluators_agree(world, merchant, products, tagging_approved, data):
    """Random tag assignments, random events, a nested segment, random expressions: the same members."""
    n = data.draw(st.integers(5, 30), label="consumers")
    assignments = data.draw(st.lists(st.sets(st.sampled_from(TAG_CHOICES), max_size=4), min_size=n, max_size=n))
    events = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, n - 1),
                st.sampled_from(sorted(products)),
                st.sampled_from(EVENT_TYPES),
                st.floats(0.01, 30),
            ),
            max_size=40,
        )
    )
    try:
        with transaction.atomic():
            caches_clear()
            # Every category and brand pair the actions draw is in the merchant's own catalogue, so all are
            # targetable (segments/targeting.py; its refusals have their own test).
            for sku, path, brand in (("X1", "outdoor/camping", "Glow"), ("X2", "beauty/makeup", "Peak")):
                Product.objects.create(
                    merchant=merchant, sku=sku, category=path.split("/")[0], category_path=path, brand=brand
                )
            world.consumers = []
            world.add_consumers(n)
            for index, tags in enumerate(assignments):
                for family, value in tags:
                    world.tag([index], family, value)
            for index, product, event_type, days_ago in events:
                event_add(world.consumers[index], products[product], event_type, days_ago=days_ago)
            world.rebuild()

            tag_leaves = st.sampled_from(TAG_CHOICES).map(lambda fv: TagTerm(*fv))
            inner = data.draw(_tree(tag_leaves | ACTION_CHOICES), label="nested segment")
            nested = segment_create(
                merchant=merchant,
                name="nested",
                actor="test",
                definition=__import__("segments.language", fromlist=["to_json"]).to_json(inner),
            )
            segment_refresh(segment_id=nested.pk, actor="test")
            leaves = tag_leaves | ACTION_CHOICES | st.just(SegmentTerm(nested.pk))
            now = timezone.now()
            for _ in range(3):
                tree = data.draw(_tree(leaves), label="expression")
                resolved = definition_resolve(tree, merchant=merchant)
                assert evaluate_bitmap(resolved, now=now) == evaluate_sql(resolved, now=now), resolved.text
            raise _Rollback
    except _Rollback:
        pass
    finally:
        caches_clear()


def test_not_is_taken_against_live_consumers(big_world, merchant):
    resolved = definition_resolve(parse("NOT country:SG"), merchant=merchant)
    assert evaluate_bitmap(resolved) == big_world.ids(range(200, 400))
    assert evaluate_sql(resolved) == big_world.ids(range(200, 400))


def test_unknown_family_and_value_are_positioned_errors(world, merchant):
    with pytest.raises(SegmentSyntaxError) as caught:
        definition_resolve(parse("country:SG AND colour:red"), merchant=merchant, text="country:SG AND colour:red")
    assert caught.value.column == 16 and "Unknown tag family 'colour'" in str(caught.value)
    assert "country" in caught.value.expected
    with pytest.raises(SegmentSyntaxError) as caught:
        definition_resolve(parse("country:SG OR country:XX"), merchant=merchant, text="country:SG OR country:XX")
    assert caught.value.column == 15 and "Unknown value 'XX'" in str(caught.value)
    assert "SG" in caught.value.expected


def test_values_resolve_case_insensitively_to_the_catalogue_spelling(world, merchant):
    resolved = definition_resolve(parse("country:sg AND interest:'HOME & LIVING'"), merchant=merchant)
    assert resolved.text == 'country:SG AND interest:"home & living"'


def test_foreign_and_missing_segments_give_the_same_error(world, merchant, other_merchant):
    theirs = segment_create(merchant=other_merchant, name="theirs", actor="test", expression="country:SG")
    messages = []
    for segment_id in (theirs.pk, theirs.pk + 1000):
        text = f"country:SG AND segment:{segment_id}"
        with pytest.raises(SegmentSyntaxError) as caught:
            definition_resolve(parse(text), merchant=merchant, text=text)
        assert caught.value.column == 16
        messages.append((caught.value.reason.replace(str(segment_id), "N"), caught.value.expected))
    assert messages[0] == messages[1]


def test_cycles_are_rejected_with_the_path(world, merchant):
    a = segment_create(merchant=merchant, name="a", actor="test", expression="country:SG")
    b = segment_create(merchant=merchant, name="b", actor="test", expression=f"segment:{a.pk} AND interest:sports")
    c = segment_create(merchant=merchant, name="c", actor="test", expression=f"segment:{b.pk}")
    text = f"country:MY OR segment:{c.pk}"
    with pytest.raises(SegmentSyntaxError) as caught:
        definition_resolve(parse(text), merchant=merchant, text=text, segment_id=a.pk)
    assert caught.value.column == 15
    assert f"segment:{a.pk} → segment:{c.pk} → segment:{b.pk} → segment:{a.pk}" in str(caught.value)
    with pytest.raises(SegmentSyntaxError, match="leads back"):
        definition_resolve(parse(f"segment:{a.pk}"), merchant=merchant, segment_id=a.pk)


def test_actions_may_only_be_narrowed_to_the_merchants_own_store(world, merchant, other_merchant):
    text = "purchased(merchant=globex)"
    with pytest.raises(SegmentSyntaxError) as caught:
        definition_resolve(parse(text), merchant=merchant, text=text)
    assert caught.value.column == 20 and "Unknown merchant" in str(caught.value)
    assert definition_resolve(parse("purchased(merchant=ACME)"), merchant=merchant).text == (
        'purchased(merchant="acme")'
    )


def test_behaviour_predicates(world, merchant, products, settings):
    settings.SEGMENT_SHARED_VALUE_MIN_MERCHANTS = 1  # any category sold anywhere may be named (the predicates)
    world.add_consumers(4)
    c0, c1, c2, c3 = world.consumers
    event_add(c0, products["lipstick"], EventType.PURCHASE, days_ago=2, n=2)
    event_add(c1, products["serum"], EventType.PURCHASE, days_ago=2)  # another merchant's product
    event_add(c2, products["lipstick"], EventType.PURCHASE, days_ago=40)
    event_add(c3, products["tent"], EventType.VIEW, days_ago=1)
    world.rebuild()

    def members(text):
        resolved = definition_resolve(parse(text), merchant=merchant)
        bitmap = evaluate_bitmap(resolved)
        assert bitmap == evaluate_sql(resolved)
        return {world.consumers.index(c) for c in world.consumers if c.pk in bitmap}

    assert members('purchased(category="beauty")') == {0, 1, 2}
    assert members('purchased(category="beauty", within="30d")') == {0, 1}
    assert members('purchased(category="beauty", merchant="acme")') == {0, 2}
    assert members('purchased(category="beauty", min_count=2)') == {0}
    assert members('purchased(category="beauty/skincare")') == {1}
    assert members('purchased(brand="glow", within="1w")') == {0}
    assert members("viewed()") == {3}
    assert members("NOT purchased()") == {3}


def test_behaviour_cache_follows_new_and_purged_events(world, merchant, products):
    world.add_consumers(3)
    world.rebuild()
    term = ActionTerm("purchased")
    now = timezone.now()
    event_add(world.consumers[0], products["tent"], EventType.PURCHASE, days_ago=300)
    assert behaviour_bitmap(term, merchant_id=merchant.pk, now=now) == world.ids([0])
    event_add(world.consumers[1], products["tent"], EventType.PURCHASE)
    assert behaviour_bitmap(term, merchant_id=merchant.pk, now=now) == world.ids([0, 1])
    Event.objects.filter(occurred_at__lt=now - timedelta(days=200)).delete()  # a retention purge
    assert behaviour_bitmap(term, merchant_id=merchant.pk, now=now) == world.ids([1])


def test_nested_segment_uses_its_latest_snapshot(big_world, merchant, tagging_approved):
    inner = segment_create(merchant=merchant, name="sg", actor="test", expression="country:SG")
    segment_refresh(segment_id=inner.pk, actor="test")
    resolved = definition_resolve(parse(f"segment:{inner.pk} AND interest:sports"), merchant=merchant)
    assert evaluate_bitmap(resolved) == big_world.ids(range(150))
    # The inner segment's definition changes but it has not been refreshed: its snapshot still counts.
    Segment.objects.filter(pk=inner.pk).update(
        definition="country:MY", definition_json={"tag": {"family": "country", "value": "MY"}}
    )
    assert evaluate_bitmap(resolved) == big_world.ids(range(150))
    segment_refresh(segment_id=inner.pk, actor="test")
    assert evaluate_bitmap(resolved) == big_world.ids([])


def test_behaviour_version_is_read_once_per_evaluation(world, merchant, products, monkeypatch):
    """The Event bounds and erasure generation are read once per top-level evaluation, nested segments included,
    and again (not reused) by the next evaluation, so new events still show."""
    from segments import evaluation

    world.add_consumers(3)
    world.rebuild()
    event_add(world.consumers[0], products["tent"], EventType.PURCHASE)
    inner = Segment.objects.create(
        merchant=merchant, name="viewers", definition="viewed()", definition_json={"action": {"action": "viewed"}}
    )
    resolved = definition_resolve(parse(f"purchased() OR carted() OR segment:{inner.pk}"), merchant=merchant)
    reads = []
    real = evaluation.behaviour_version
    monkeypatch.setattr(evaluation, "behaviour_version", lambda: reads.append(1) or real())
    assert evaluate_bitmap(resolved) == world.ids([0])
    assert evaluate_bitmap(resolved) == world.ids([0])  # served from the process cache
    assert len(reads) == 2
    event_add(world.consumers[1], products["tent"], EventType.CART)
    assert evaluate_bitmap(resolved) == world.ids([0, 1])
