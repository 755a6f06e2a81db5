import hashlib
import math

import numpy as np
import pytest
import scipy.sparse as sp

from recommend.algorithms import algorithm_create
from recommend.evaluation import (
    Ratings,
    evaluate,
    holdout_from_ratings,
    movielens_holdout,
    movielens_load,
    ranking_metrics,
    stratified_split,
    temporal_holdout,
    temporal_split,
    time_split_holdout,
)


def relevant(rows: list[set[int]], items: int = 10) -> sp.csr_matrix:
    r = [u for u, row in enumerate(rows) for _ in row]
    c = [i for row in rows for i in sorted(row)]
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), items))


def test_metrics_match_hand_computed_values():
    # A: hits at ranks 1 and 3 of 3 relevant (one of them, item 7, never recommended).
    # B: a two-item list (-1 pads it), its one relevant item at rank 2.
    # C: nothing relevant -> left out of every mean.
    # D: one hit at rank 1 of 5 relevant: MAP divides by 5, MAP@3 by min(5, 3).
    recommended = np.array([[1, 2, 3], [4, 5, -1], [1, 2, 3], [1, 8, 9]])
    truth = relevant([{1, 3, 7}, {5}, set(), {1, 2, 3, 4, 5}])
    m = ranking_metrics(recommended, truth, k=3)

    ln = math.log
    ndcg_a = (1 / ln(2) + 1 / ln(4)) / (1 / ln(2) + 1 / ln(3) + 1 / ln(4))
    ndcg_b = (1 / ln(3)) / (1 / ln(2))
    ndcg_d = (1 / ln(2)) / (1 / ln(2) + 1 / ln(3) + 1 / ln(4))
    assert m.users == 3
    assert m.precision == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3)
    assert m.recall == pytest.approx((2 / 3 + 1 + 1 / 5) / 3)
    assert m.ndcg == pytest.approx((ndcg_a + ndcg_b + ndcg_d) / 3)
    # Average precision: (1/1 + 2/3) / 3 for A, (1/2) / 1 for B, (1/1) / 5 for D.
    assert m.map == pytest.approx((5 / 9 + 1 / 2 + 1 / 5) / 3)
    assert m.map_at_k == pytest.approx((5 / 9 + 1 / 2 + 1 / 3) / 3)


def test_perfect_ranking_scores_one_and_precision_is_divided_by_k():
    truth = relevant([{0, 1, 2}, {3}])
    m = ranking_metrics(np.array([[0, 1, 2], [3, -1, -1]]), truth, k=3)
    assert m.ndcg == pytest.approx(1.0)
    assert m.recall == pytest.approx(1.0)
    assert m.map == pytest.approx(1.0)
    # One relevant item cannot fill three slots: precision counts k, as Microsoft Recommenders does.
    assert m.precision == pytest.approx((1 + 1 / 3) / 2)


def test_no_users_with_relevant_items_gives_zeros():
    m = ranking_metrics(np.array([[0, 1]]), sp.csr_matrix((1, 4)), k=2)
    assert (m.users, m.precision, m.ndcg, m.map) == (0, 0.0, 0.0, 0.0)


def test_stratified_split_keeps_floor_of_three_quarters_per_user():
    users = np.repeat(np.arange(6), [1, 2, 3, 4, 5, 8])
    train = stratified_split(users)
    per_user = np.bincount(users[train], minlength=6)
    # rank / count <= 0.75: 1 row -> 0, 2 -> 1, 3 -> 2, 4 -> 3, 5 -> 3, 8 -> 6.
    assert per_user.tolist() == [0, 1, 2, 3, 3, 6]


def test_stratified_split_is_fixed_by_its_seed_and_reproduces_numpys_legacy_draws():
    users = np.repeat(np.arange(50), 20)
    first, again, other = (
        stratified_split(users, seed=42),
        stratified_split(users, seed=42),
        stratified_split(users, seed=7),
    )
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    # python_stratified_split: np.random.seed(seed); rand(n); rows ordered by (user, draw); first 75% train.
    np.random.seed(42)
    draws = np.random.rand(users.size)
    for user in (0, 17, 49):
        rows = np.flatnonzero(users == user)
        expected = rows[np.argsort(draws[rows])][:15]
        assert set(np.flatnonzero(first & (users == user))) == set(expected)


def test_temporal_split_holds_out_each_users_latest_rows():
    users = np.array([1, 1, 1, 1, 1, 2, 2, 3])
    times = np.array([5, 1, 4, 2, 3, 9, 8, 1])
    train = temporal_split(users, times, test_fraction=0.4)
    # user 1: 5 rows, 2 latest (times 5 and 4) held out; user 2: 1 of 2 (time 9); user 3 keeps its only row.
    assert train.tolist() == [False, True, False, True, True, False, True, True]


def test_temporal_holdout_does_not_count_items_seen_in_training_as_relevant():
    rows = np.array([0, 0, 0, 0])
    cols = np.array([1, 2, 1, 3])  # item 1 again at the end: not a hit a recommender could make
    holdout = temporal_holdout(
        rows, cols, np.ones(4, np.float32), np.array([1, 2, 3, 4]), shape=(1, 5), test_fraction=0.5
    )
    assert holdout.train.toarray()[0].tolist() == [0, 1, 1, 0, 0]
    assert holdout.test.toarray()[0].tolist() == [0, 0, 0, 1, 0]


def test_time_split_holdout_tests_only_new_items_of_consumers_seen_before_the_cut():
    # One cut for everybody at time 4 (half of the 8 events): consumer 0 re-views item 1 (not a hit) and finds
    # item 3; consumer 1 has nothing before the cut (a cold start, not evaluated).
    rows = np.array([0, 0, 0, 0, 0, 1, 1, 0])
    cols = np.array([1, 2, 0, 1, 3, 4, 2, 4])
    times = np.array([1, 2, 3, 4, 5, 6, 7, 8])
    holdout = time_split_holdout(rows, cols, np.ones(8, np.float32), times, shape=(2, 5), test_fraction=0.5)
    assert holdout.train.toarray().tolist() == [[1, 2, 1, 0, 0], [0, 0, 0, 0, 0]]
    assert holdout.test.toarray().tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]


def test_test_items_unseen_in_training_still_count_as_relevant():
    train = Ratings(np.array([1, 1, 2]), np.array([10, 11, 10]), np.ones(3, np.float32), np.zeros(3, np.int64))
    test = Ratings(np.array([1, 2]), np.array([99, 11]), np.ones(2, np.float32), np.zeros(2, np.int64))
    holdout = holdout_from_ratings(train, test)
    assert holdout.train.shape == (2, 2)
    assert holdout.test.shape == (2, 3)  # item 99 gets a column no list can reach
    m = evaluate(algorithm_create("popular", threads=1).fit(holdout.train), holdout, k=2)
    # user 1 can be recommended nothing new (both items seen): 0; user 2 gets item 11: a hit.
    assert m.recall == pytest.approx(0.5)


@pytest.mark.shared_data
def test_movielens_protocol_split_and_baseline_are_fixed(shared_data):
    ratings = movielens_load(shared_data / "movielens-100k")
    assert len(ratings) == 100_000
    holdout, mask = movielens_holdout(ratings)
    # Per user floor(0.75 * count) rows train; the sizes follow from the data, which rows from seed 42.
    assert int(mask.sum()) == 74_646
    assert int((~mask).sum()) == 25_354
    assert holdout.user_ids.size == 943
    assert holdout.test.nnz == 25_354
    counts = np.bincount(ratings.users)
    train_counts = np.bincount(ratings.users[mask], minlength=counts.size)
    assert np.array_equal(train_counts, np.floor(counts * 0.75).astype(int))
    # The split itself is pinned: seed 42 always sends the same rows (file order) to the test side.
    assert np.flatnonzero(~mask)[:8].tolist() == [1, 7, 11, 12, 25, 30, 33, 34]
    assert hashlib.sha256(np.packbits(mask).tobytes()).hexdigest()[:16] == "91e409842bc250cc"
    popular = evaluate(algorithm_create("popular", threads=1).fit(holdout.train), holdout)
    assert popular.users == 943
    assert popular.precision == pytest.approx(0.2278, abs=5e-4)
    assert popular.ndcg == pytest.approx(0.2528, abs=5e-4)


@pytest.mark.shared_data
def test_movielens_ease_lands_where_published_closed_form_results_do(shared_data):
    holdout, _ = movielens_holdout(movielens_load(shared_data / "movielens-100k"))
    ease = evaluate(algorithm_create("ease", threads=1, l2=300.0, dropout=0.0).fit(holdout.train), holdout)
    # Plain EASE at lambda 300 on this protocol: P@10 about 0.43, nDCG@10 about 0.48-0.49.
    assert ease.precision == pytest.approx(0.4286, abs=2e-3)
    assert 0.475 < ease.ndcg < 0.495
