"""The temporal leakage guard: features never see events after their cut-off, labels never before it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from predict.factors import factors_fit
from predict.families import PREDICTIONS
from predict.features import History, NotEnoughHistory, TemporalLeak, consumer_features, pair_features


def _history() -> History:
    # Three consumers; times in days relative to the data's end (t <= 0).
    ev_t = np.array([-50, -40, -10, -5, -1], dtype=np.float32)
    pu_t = np.array([-40, -5], dtype=np.float32)
    return History(
        consumers=3,
        ev_consumer=np.array([0, 0, 1, 1, 2], dtype=np.int32),
        ev_type=np.array([1, 5, 3, 5, 1], dtype=np.int8),
        ev_t=ev_t,
        ev_category=np.zeros(5, dtype=np.int32),
        ev_merchant=np.zeros(5, dtype=np.int32),
        ev_product=np.array([0, 1, 1, 2, 0], dtype=np.int32),
        pu_consumer=np.array([0, 1], dtype=np.int32),
        pu_t=pu_t,
        pu_amount=np.array([10.0, 20.0]),
        pu_discounted=np.zeros(2, dtype=bool),
        pu_order=np.array([1, 2], dtype=np.int64),
        pu_category=np.zeros(2, dtype=np.int32),
        pu_merchant=np.zeros(2, dtype=np.int32),
        age_code=np.full(3, -1, dtype=np.int8),
        product_category=np.zeros(3, dtype=np.int32),
        product_merchant=np.zeros(3, dtype=np.int32),
        categories=["beauty"],
        merchant_ids=[1],
        start=-400.0,
    )


def test_a_feature_computed_after_the_cut_off_fails():
    history = _history()
    with pytest.raises(TemporalLeak, match="after it"):
        consumer_features(history, cutoff=-20)
    with pytest.raises(TemporalLeak):
        pair_features(history, cutoff=-20, by="category", groups=[0])
    # Even a history cut later than asked is refused: the cut-off must be the one the features are built at.
    with pytest.raises(TemporalLeak):
        consumer_features(history.until(-3), cutoff=-20)


def test_features_at_a_cut_off_see_only_the_past():
    history = _history()
    early = consumer_features(history.until(-20), cutoff=-20)
    assert early.consumer.tolist() == [0]  # consumers 1 and 2 only act after the cut-off
    column = early.names.index("orders_window")
    assert early.matrix[:, column].tolist() == [1.0]
    # Adding future events to the data changes nothing at that cut-off.
    later = replace(
        history,
        ev_consumer=np.r_[history.ev_consumer, 0].astype(np.int32),
        ev_type=np.r_[history.ev_type, 5].astype(np.int8),
        ev_t=np.r_[history.ev_t, -2].astype(np.float32),
        ev_category=np.r_[history.ev_category, 0].astype(np.int32),
        ev_merchant=np.r_[history.ev_merchant, 0].astype(np.int32),
        ev_product=np.r_[history.ev_product, 0].astype(np.int32),
    )
    again = consumer_features(later.until(-20), cutoff=-20)
    assert np.array_equal(again.matrix, early.matrix)


def test_labels_need_the_whole_horizon_after_the_cut_off():
    history = _history()
    assert history.purchases_after(-20, 15).tolist() == [False, True]
    with pytest.raises(NotEnoughHistory):
        history.purchases_after(-20, 30)
    with pytest.raises(NotEnoughHistory):
        history.until(-20).purchases_after(-30, 15)


def test_a_consumer_is_a_store_candidate_of_their_most_visited_stores_only():
    # Consumer 0 saw seven stores: store 6 three times, store 5 twice (once later than store 4's two events), the
    # rest once; consumer 1 saw one store. With room for three candidates each, consumer 0 is scored for 6, 5, 4.
    visits = [(0, s, -100.0 + s) for s in range(7)] + [(0, 6, -3.0), (0, 6, -2.0), (0, 5, -4.0), (0, 4, -9.0)]
    visits += [(1, 2, -1.0)]
    consumer, store, t = (np.array(column) for column in zip(*visits, strict=True))
    history = replace(
        _history(),
        consumers=2,
        ev_consumer=consumer.astype(np.int32),
        ev_type=np.ones(consumer.size, dtype=np.int8),
        ev_t=t.astype(np.float32),
        ev_category=np.zeros(consumer.size, dtype=np.int32),
        ev_merchant=store.astype(np.int32),
        pu_consumer=np.empty(0, np.int32),
        pu_t=np.empty(0, np.float32),
        pu_amount=np.empty(0),
        pu_discounted=np.empty(0, bool),
        pu_order=np.empty(0, np.int64),
        pu_category=np.empty(0, np.int32),
        pu_merchant=np.empty(0, np.int32),
        age_code=np.full(2, -1, dtype=np.int8),
        merchant_ids=list(range(7)),
    )
    every = pair_features(history, cutoff=0.0, by="merchant", groups=list(range(7)))
    capped = pair_features(history, cutoff=0.0, by="merchant", groups=list(range(7)), per_consumer=3)
    assert every.consumer.tolist().count(0) == 7
    assert sorted(zip(capped.consumer.tolist(), capped.group.tolist(), strict=True)) == [(0, 4), (0, 5), (0, 6), (1, 2)]
    # A kept pair's features are the ones it has without the cap.
    events = capped.names.index("pair_events_30d")
    share = capped.names.index("pair_share")
    row = {(c, g): i for i, (c, g) in enumerate(zip(every.consumer.tolist(), every.group.tolist(), strict=True))}
    for i, (c, g) in enumerate(zip(capped.consumer.tolist(), capped.group.tolist(), strict=True)):
        assert capped.matrix[i, events] == every.matrix[row[c, g], events]
        assert capped.matrix[i, share] == every.matrix[row[c, g], share]


def test_recommender_factors_fitted_with_an_interaction_after_the_cut_off_fail():
    history = _history()
    with pytest.raises(TemporalLeak, match="after it"):
        factors_fit(history, cutoff=-20, k=2)
    # The fit at a cut-off sees only the interactions before it: adding later ones changes no factor.
    early = factors_fit(history.until(-20), cutoff=-20, k=2)
    later = replace(
        history,
        ev_consumer=np.r_[history.ev_consumer, 0, 2].astype(np.int32),
        ev_type=np.r_[history.ev_type, 1, 1].astype(np.int8),
        ev_t=np.r_[history.ev_t, -2, -3].astype(np.float32),
        ev_category=np.r_[history.ev_category, 0, 0].astype(np.int32),
        ev_merchant=np.r_[history.ev_merchant, 0, 0].astype(np.int32),
        ev_product=np.r_[history.ev_product, 2, 1].astype(np.int32),
    )
    again = factors_fit(later.until(-20), cutoff=-20, k=2)
    assert np.array_equal(again.item, early.item)
    assert np.array_equal(again.consumer, early.consumer)
    assert not early.consumer[1:].any()  # consumers 1 and 2 have no interaction before the cut-off


def test_every_family_gets_the_factors_at_its_cut_off_and_pairs_their_affinity(settings):
    settings.PREDICT_FACTORS = 2
    history = _history()
    consumer = PREDICTIONS["purchase_propensity"].features(history, -20, [])
    assert consumer.names[-2:] == ["factor_1", "factor_2"]
    pairs = PREDICTIONS["category_propensity"].features(history, -20, [0])
    assert pairs.names[-1] == "pair_factor_affinity"
    assert {"factor_1", "factor_2"} <= set(pairs.names)
    settings.PREDICT_FACTORS = 0
    assert not any(
        name.startswith("factor_") for name in PREDICTIONS["purchase_propensity"].features(history, -20, []).names
    )
