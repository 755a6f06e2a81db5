from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from consumers.models import Consumer, Event, EventType, Product
from recommend.interactions import (
    DEFAULT_EVENT_WEIGHTS,
    interaction_events_load,
    interactions_build,
    weights_from_names,
)

NOW = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.fixture
def small_events(merchant, other_merchant):
    a, b, c = Consumer.objects.bulk_create([Consumer(pseudonym=f"p{i}") for i in range(3)])
    shoe, hat = Product.objects.bulk_create(
        [Product(merchant=merchant, sku="shoe", category="outdoor"), Product(merchant=merchant, sku="hat")]
    )
    (lipstick,) = Product.objects.bulk_create([Product(merchant=other_merchant, sku="lip", category="beauty")])
    rows = [
        (a, merchant, shoe, EventType.VIEW, 0),
        (a, merchant, shoe, EventType.PURCHASE, 0),
        (a, merchant, hat, EventType.CART, 10),
        (b, merchant, hat, EventType.FAVOURITE, 20),
        (b, other_merchant, lipstick, EventType.CLICK, 0),
        (b, other_merchant, lipstick, EventType.CANCEL, 0),  # cancellations carry no weight
        (c, merchant, None, EventType.VIEW, 0),  # no product: not an interaction
    ]
    Event.objects.bulk_create(
        [
            Event(
                source_key=f"k{i}",
                consumer=consumer,
                merchant=m,
                product=product,
                event_type=int(kind),
                occurred_at=NOW - timedelta(days=age),
            )
            for i, (consumer, m, product, kind, age) in enumerate(rows)
        ]
    )
    return {"a": a, "b": b, "c": c, "shoe": shoe, "hat": hat, "lipstick": lipstick}


def test_event_weights_sum_per_consumer_and_product(small_events):
    built = interactions_build()
    e = small_events
    dense = built.matrix.toarray()
    cell = lambda consumer, product: dense[built.rows_for([consumer.pk])[0], built.columns_for([product.pk])[0]]  # noqa: E731
    assert cell(e["a"], e["shoe"]) == 1 + 5  # view + purchase
    assert cell(e["a"], e["hat"]) == 3
    assert cell(e["b"], e["hat"]) == 2
    assert cell(e["b"], e["lipstick"]) == 1  # the cancellation adds nothing
    assert built.rows_for([e["c"].pk]).tolist() == [-1]  # only a product-less event
    assert built.snapshot()["interactions"] == 4
    assert built.snapshot()["events"] == 5


def test_id_maps_are_sorted_and_stable(small_events):
    first, again = interactions_build(), interactions_build()
    assert np.all(np.diff(first.consumer_ids) > 0) and np.all(np.diff(first.product_ids) > 0)
    assert first.snapshot_hash == again.snapshot_hash
    assert first.columns_for([small_events["hat"].pk, 10**9]).tolist()[1] == -1
    assert first.high_water_mark == Event.objects.filter(product__isnull=False).exclude(event_type=6).latest("id").pk


def test_custom_weights_change_the_matrix_and_its_hash(small_events):
    default = interactions_build()
    custom = interactions_build(weights=weights_from_names({"view": 0, "purchase": 1, "cart": 1}))
    e = small_events
    dense = custom.matrix.toarray()
    row = custom.rows_for([e["a"].pk])[0]
    assert dense[row, custom.columns_for([e["shoe"].pk])[0]] == 1
    assert custom.rows_for([e["b"].pk]).tolist() == [-1]  # b only favourited and clicked
    assert custom.snapshot_hash != default.snapshot_hash


def test_time_decay_halves_weight_every_half_life(small_events):
    decayed = interactions_build(half_life_days=10, now=NOW)
    e = small_events
    dense = decayed.matrix.toarray()
    assert dense[decayed.rows_for([e["a"].pk])[0], decayed.columns_for([e["hat"].pk])[0]] == pytest.approx(1.5)
    assert dense[decayed.rows_for([e["b"].pk])[0], decayed.columns_for([e["hat"].pk])[0]] == pytest.approx(0.5)


def test_one_merchant_only(small_events, other_merchant):
    only = interactions_build(merchant_id=other_merchant.pk)
    assert only.product_ids.tolist() == [small_events["lipstick"].pk]


def test_built_with_one_query(small_events, django_assert_num_queries):
    with django_assert_num_queries(1):
        events = interaction_events_load()
    assert len(events) == 5


def test_bad_weights_are_named():
    with pytest.raises(ValueError, match="unknown event type 'like'"):
        weights_from_names({"like": 1})
    with pytest.raises(ValueError, match="'view' must not be negative"):
        weights_from_names({"view": -1})
    assert DEFAULT_EVENT_WEIGHTS[EventType.PURCHASE] == 5
