"""Rank bands: equal predictions share a band, a higher prediction never gets a lower band, shares hold."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from predict.families import PREDICTIONS, band_of

PROPENSITY = PREDICTIONS["purchase_propensity"]
STORE = PREDICTIONS["store_propensity"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=300))
def test_rank_bands_are_monotone_and_tie_safe(raw):
    scores = np.asarray(raw, dtype=np.float64)
    band = band_of(PROPENSITY, scores, None)
    assert band.min() >= 0 and band.max() <= 3  # everyone scored gets a band
    order = np.argsort(-scores, kind="stable")
    assert np.all(np.diff(band[order]) >= 0)  # higher prediction, same or better band
    for value in np.unique(scores):
        assert np.unique(band[scores == value]).size == 1  # ties share a band
    # Nobody is placed in the top 10 % band while 10 % or more of the population predicts strictly higher.
    higher = np.array([(scores > s).mean() for s in scores])
    assert np.all(higher[band == 0] < 0.10)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), min_size=2, max_size=200),
    st.integers(min_value=1, max_value=4),
)
def test_pair_bands_rank_within_each_store_and_leave_the_bottom_untagged(raw, stores):
    scores = np.asarray(raw)
    groups = (np.arange(scores.size) % stores).astype(np.int32)
    band = band_of(STORE, scores, groups)
    for g in range(stores):
        mine = band[groups == g]
        if mine.size == 0:
            continue
        assert mine.max() <= 2  # three bands; the bottom 40 % holds none (-1)
        n = mine.size
        # Without ties exactly the members with fewer than 60 % of the store's candidates above them are tagged.
        if np.unique(scores[groups == g]).size == n:
            assert (mine >= 0).sum() == np.ceil(0.6 * n - 1e-9)


def test_days_bands_follow_the_predicted_days():
    days = np.array([1, 7, 8, 30, 31, 60, 61, 200], dtype=np.float64)
    assert band_of(PREDICTIONS["next_order"], days, None).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def _bands_group_by_group(prediction, scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    # The definition, one group at a time: the share of the group scoring strictly higher picks the band.
    bounds = np.array([b for _, _, b in prediction.bands()])
    out = np.full(scores.size, -1)
    for code in np.unique(groups):
        rows = np.flatnonzero(groups == code)
        higher = np.array([(scores[rows] > s).mean() for s in scores[rows]])
        band = np.searchsorted(bounds, higher, side="right")
        out[rows] = np.where(band < len(bounds), band, -1)
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=12), st.integers(min_value=0, max_value=5)), max_size=250))
def test_bands_of_many_stores_at_once_match_banding_each_store_alone(rows):
    scores = np.array([s for s, _ in rows], dtype=np.float64) / 4
    groups = np.array([g * 7 for _, g in rows], dtype=np.int32)  # sparse store codes, many ties
    assert band_of(STORE, scores, groups).tolist() == _bands_group_by_group(STORE, scores, groups).tolist()
    assert (
        band_of(PROPENSITY, scores, None).tolist()
        == _bands_group_by_group(PROPENSITY, scores, np.zeros(scores.size, dtype=np.int32)).tolist()
    )
