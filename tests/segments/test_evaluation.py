"""The bitmap evaluator (what merchants get) against the SQL evaluator (the oracle), and resolution errors."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

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
from segments.language import (
    MONEY_ARGS,
    ActionTerm,
    And,
    Not,
    Or,
    SegmentSyntaxError,
    SegmentTerm,
    TagTerm,
    from_json,
    parse,
    to_json,
)
from segments.models import Segment, SegmentScope
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


def _valid_action(args: dict):
    try:
        return from_json({key: value for key, value in args.items() if value is not None})
    except SegmentSyntaxError:
        return None  # arguments that do not combine (max below min, within with last_before, ...)


_AMOUNTS = st.sampled_from(["0", "5", "12.5", "20", "40.01", "75"])
ACTION_CHOICES = (
    st.fixed_dictionaries(
        {
            "action": st.sampled_from(["viewed", "carted", "purchased"]),
            "category": st.none() | st.sampled_from(["beauty", "outdoor", "beauty/makeup"]),
            "brand": st.none() | st.sampled_from(["Glow", "peak"]),
            "product": st.none() | st.sampled_from(["L1", "T1"]),
            "merchant": st.none() | st.just("acme"),
            "within": st.none() | st.sampled_from(["12h", "3d", "2w"]),
            "min_count": st.none() | st.integers(1, 3),
            "max_count": st.none() | st.integers(0, 3),
            "min_spend": st.none() | _AMOUNTS,
            "max_spend": st.none() | _AMOUNTS,
            "min_avg_order": st.none() | _AMOUNTS,
            "max_avg_order": st.none() | _AMOUNTS,
            "first_within": st.none() | st.sampled_from(["2d", "1w"]),
            "last_before": st.none() | st.sampled_from(["12h", "5d"]),
        }
    )
    .map(lambda args: args if args["action"] == "purchased" else {**args, **dict.fromkeys(MONEY_ARGS)})
    .map(_valid_action)
    .filter(lambda term: term is not None)
)
EVENT_TYPES = [EventType.VIEW, EventType.CART, EventType.PURCHASE]
SCOPES = st.sampled_from(SegmentScope.values)
EVENTS = st.tuples(
    st.integers(0, 29),
    st.sampled_from(["lipstick", "serum", "tent"]),
    st.sampled_from(EVENT_TYPES),
    st.floats(0.01, 30),
    st.none() | st.sampled_from(["0.99", "5.00", "12.50", "19.99", "40.01"]),
    st.integers(1, 3),
)


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
    events = data.draw(st.lists(EVENTS, max_size=40), label="events")
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
            for index, product, event_type, days_ago, price, quantity in events:
                event_add(
                    world.consumers[index % n],
                    products[product],
                    event_type,
                    days_ago=days_ago,
                    price=price,
                    quantity=quantity,
                )
            world.rebuild()

            tag_leaves = st.sampled_from(TAG_CHOICES).map(lambda fv: TagTerm(*fv))
            inner = data.draw(_tree(tag_leaves | ACTION_CHOICES), label="nested segment")
            nested = segment_create(
                merchant=merchant,
                name="nested",
                actor="test",
                definition=to_json(inner),
            )
            # The nested segment's own scope: its snapshot (bitmap) and its rule re-evaluated (SQL) honour it.
            Segment.objects.filter(pk=nested.pk).update(scope=data.draw(SCOPES, label="nested scope"))
            segment_refresh(segment_id=nested.pk, actor="test")
            leaves = tag_leaves | ACTION_CHOICES | st.just(SegmentTerm(nested.pk))
            now = timezone.now()
            for _ in range(3):
                tree = data.draw(_tree(leaves), label="expression")
                scope = data.draw(SCOPES, label="scope")
                resolved = definition_resolve(tree, merchant=merchant)
                bitmap = evaluate_bitmap(resolved, now=now, scope=scope)
                assert bitmap == evaluate_sql(resolved, now=now, scope=scope), (scope, resolved.text)
            raise _Rollback
    except _Rollback:
        pass
    finally:
        caches_clear()


def _python_members(term: ActionTerm, *, merchant, consumers, now) -> set[int]:
    """The action term written again in Python over the event rows: who it selects."""
    from segments.evaluation import ACTION_EVENT_TYPES, aligned_start

    rows = Event.objects.filter(event_type=ACTION_EVENT_TYPES[term.action]).values(
        "consumer_id",
        "merchant_id",
        "occurred_at",
        "price",
        "quantity",
        "product__sku",
        "product__merchant_id",
        "product__category_path",
        "product__brand",
    )
    within = aligned_start(term.within, now)

    def matches(row) -> bool:
        path = row["product__category_path"] or ""
        return (
            (term.merchant is None or row["merchant_id"] == merchant.pk)
            and (
                term.product is None
                or (row["product__merchant_id"] == merchant.pk and row["product__sku"] == term.product)
            )
            and (term.brand is None or (row["product__brand"] or "").lower() == term.brand.lower())
            and (
                term.category is None
                or path.split("/")[0].lower() == term.category.lower()
                or path.lower() == term.category.lower()
                or path.lower().startswith(term.category.lower() + "/")
            )
            and (within is None or row["occurred_at"] >= within)
        )

    per: dict[int, list] = {}
    for row in rows:
        if matches(row):
            per.setdefault(row["consumer_id"], []).append(row)
    first_start, last_start = aligned_start(term.first_within, now), aligned_start(term.last_before, now)
    chosen = set()
    for consumer in consumers:
        mine = per.get(consumer.pk, [])
        count = len(mine)
        spend = sum((Decimal(r["price"] or 0) * r["quantity"] for r in mine), Decimal(0))
        checks = [count >= term.min_count, term.max_count is None or count <= term.max_count]
        checks += [term.min_spend is None or spend >= term.min_spend, term.max_spend is None or spend <= term.max_spend]
        if term.min_avg_order is not None or term.max_avg_order is not None:
            average = spend / count if count else None
            checks.append(average is not None and (term.min_avg_order is None or average >= term.min_avg_order))
            checks.append(average is not None and (term.max_avg_order is None or average <= term.max_avg_order))
        if first_start is not None:
            checks.append(bool(mine) and min(r["occurred_at"] for r in mine) >= first_start)
        if last_start is not None:
            checks.append(bool(mine) and max(r["occurred_at"] for r in mine) < last_start)
        if all(checks):
            chosen.add(consumer.pk)
    return chosen


@pytest.mark.django_db(transaction=False)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_action_conditions_match_the_rule_written_in_python(world, merchant, products, data):
    """Counts, spend, average order value, first and last occurrence, did-not: both evaluators against the
    definition (docs/segments.md) computed again in Python from the event rows."""
    n = data.draw(st.integers(3, 12), label="consumers")
    events = data.draw(st.lists(EVENTS, max_size=30), label="events")
    try:
        with transaction.atomic():
            caches_clear()
            for sku, path, brand in (("X1", "outdoor/camping", "Glow"), ("X2", "beauty/makeup", "Peak")):
                Product.objects.create(
                    merchant=merchant, sku=sku, category=path.split("/")[0], category_path=path, brand=brand
                )
            world.consumers = []
            world.add_consumers(n)
            for index, product, event_type, days_ago, price, quantity in events:
                event_add(
                    world.consumers[index % n],
                    products[product],
                    event_type,
                    days_ago=days_ago,
                    price=price,
                    quantity=quantity,
                )
            world.rebuild()
            now = timezone.now()
            for _ in range(4):
                term = data.draw(ACTION_CHOICES, label="action")
                resolved = definition_resolve(term, merchant=merchant)
                expected = _python_members(term, merchant=merchant, consumers=world.consumers, now=now)
                assert set(evaluate_bitmap(resolved, now=now)) == expected, resolved.text
                assert set(evaluate_sql(resolved, now=now)) == expected, resolved.text
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


def test_customers_and_value_reach_bitmaps_follow_new_events_and_survive_a_cold_process(
    world, merchant, other_merchant, products, django_assert_num_queries
):
    """Every event-derived bitmap is cached the same way: a new event changes the answer at once, and a process
    whose own cache is cold reads a known version from the shared cache without asking the database."""
    from segments import evaluation
    from segments.evaluation import behaviour_version, customers_bitmap, value_reach_bitmap

    world.add_consumers(3)
    world.rebuild()
    event_add(world.consumers[0], products["tent"], EventType.VIEW)
    event_add(world.consumers[1], products["serum"], EventType.PURCHASE)
    assert customers_bitmap(merchant_id=merchant.pk) == world.ids([0])
    assert value_reach_bitmap(merchant_id=merchant.pk, argument="category", value="beauty") == world.ids([1])
    event_add(world.consumers[2], products["lipstick"], EventType.CART)
    version = behaviour_version()
    assert customers_bitmap(merchant_id=merchant.pk, version=version) == world.ids([0, 2])
    assert value_reach_bitmap(
        merchant_id=merchant.pk, argument="category", value="beauty", version=version
    ) == world.ids([1, 2])
    assert value_reach_bitmap(merchant_id=merchant.pk, argument="product", value="L1", version=version) == world.ids(
        [2]
    )
    evaluation._behaviour_cache.clear()  # another process: only the shared cache knows these bitmaps
    with django_assert_num_queries(0):
        assert customers_bitmap(merchant_id=merchant.pk, version=version) == world.ids([0, 2])
        assert value_reach_bitmap(
            merchant_id=merchant.pk, argument="category", value="beauty", version=version
        ) == world.ids([1, 2])


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
