import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recommend.algorithms import ALGORITHMS, algorithm_create, algorithm_load, ridge_fold_in, top_n
from recommend.evaluation import evaluate, temporal_holdout

from .conftest import planted_matrix

# Small, fixed settings so the suite stays fast; the MovieLens benchmark uses the tuned defaults.
FAST_PARAMS = {
    "als": dict(factors=16, iterations=10),
    "ials": dict(factors=16, iterations=8),
    "bpr": dict(factors=16),
    "item_knn": dict(neighbours=50),
    "ease": dict(l2=50.0),
    "popular": {},
    "category_popular": {},
}
MODELS = [
    ("als", {}),
    ("ials", {}),
    ("bpr", {}),
    ("item_knn", dict(similarity="cosine")),
    ("item_knn", dict(similarity="bm25")),
    ("ease", {}),
]


@pytest.fixture(scope="module")
def planted_holdout():
    matrix, stamps, _ = planted_matrix()
    coo = matrix.tocoo()
    times = np.asarray(stamps[coo.row, coo.col]).ravel()
    return temporal_holdout(coo.row, coo.col, coo.data, times, shape=matrix.shape, test_fraction=0.25)


def make(name: str, **extra):
    return algorithm_create(name, threads=1, **{**FAST_PARAMS[name], **extra})


@pytest.mark.parametrize(("name", "extra"), MODELS, ids=["als", "ials", "bpr", "knn-cosine", "knn-bm25", "ease"])
def test_every_algorithm_beats_popularity_on_planted_groups(planted_holdout, name, extra):
    baseline = evaluate(make("popular").fit(planted_holdout.train), planted_holdout)
    model = evaluate(make(name, **extra).fit(planted_holdout.train), planted_holdout)
    assert model.users == baseline.users > 500
    assert model.ndcg > 1.5 * baseline.ndcg
    assert model.precision > 1.5 * baseline.precision


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_recommend_respects_exclusions_and_allowed_items(planted_holdout, name):
    train = planted_holdout.train
    model = make(name).fit(train)
    users = np.arange(40)
    allowed = np.arange(0, train.shape[1], 3)
    ids, scores = model.recommend(train[users], user_rows=users, n=10, exclude=train[users], items=allowed)
    assert ids.shape == (40, 10)
    for u in users:
        picked = ids[u][ids[u] >= 0]
        assert set(picked) <= set(allowed)
        assert not set(picked) & set(train[u].indices)
        assert len(set(picked)) == len(picked)
        valid = scores[u][ids[u] >= 0]
        assert np.all(np.diff(valid) <= 1e-6)  # best first


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_lists_are_padded_with_minus_one_when_too_few_items_qualify(name):
    matrix, _, _ = planted_matrix(users=60, items=40, groups=4, per_user=8)
    model = make(name).fit(matrix)
    ids, _ = model.recommend(matrix[:5], user_rows=np.arange(5), n=10, exclude=matrix[:5], items=np.arange(12))
    for u in range(5):
        allowed_left = 12 - len(set(matrix[u].indices) & set(range(12)))
        assert (ids[u] >= 0).sum() == min(10, allowed_left)
        assert np.all(ids[u][(ids[u] >= 0).sum() :] == -1)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_artefact_round_trip_gives_the_same_recommendations(planted_holdout, name):
    train = planted_holdout.train
    model = make(name).fit(train)
    restored = algorithm_load(name, model.params, model.artefact(), threads=1)
    users = np.arange(25)
    before = model.recommend(train[users], user_rows=users, n=10, exclude=train[users])[0]
    after = restored.recommend(train[users], user_rows=users, n=10, exclude=train[users])[0]
    assert np.array_equal(before, after)


@pytest.mark.parametrize("name", ["als", "ials", "bpr", "item_knn", "ease"])
def test_similar_items_never_returns_the_item_and_finds_its_block(name):
    matrix, _, _ = planted_matrix()
    model = make(name).fit(matrix)
    block = matrix.shape[1] // 8
    ids, _ = model.similar_items(5, n=10)
    assert 5 not in ids
    assert np.mean(ids // block == 0) >= 0.6  # item 5 lives in block 0


def test_consumers_the_model_never_saw_are_folded_in_from_their_history(planted_holdout):
    train = planted_holdout.train
    for name in ("als", "ials", "bpr"):
        model = make(name).fit(train)
        users = np.arange(200)
        known = model.recommend(train[users], user_rows=users, n=10, exclude=train[users])[0]
        folded = model.recommend(train[users], user_rows=np.full(200, -1), n=10, exclude=train[users])[0]
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(known, folded, strict=True)])
        assert overlap > 0.4, name


def test_consumer_factors_only_for_factor_models(planted_holdout):
    assert make("als").fit(planted_holdout.train).consumer_factors().shape[0] == planted_holdout.train.shape[0]
    assert make("ials").fit(planted_holdout.train).consumer_factors().shape == (planted_holdout.train.shape[0], 16)
    assert make("ease").fit(planted_holdout.train).consumer_factors() is None


@pytest.mark.parametrize("binary", [True, False])
def test_ials_row_solves_are_exact_whatever_the_batching(binary):
    """Each row's vector solves (sum c h hᵀ + α0 HᵀH + λ (|I_u| + α0 |I|)^ν I) w = sum c h, as a direct solve does."""
    rng = np.random.default_rng(5)
    matrix = sp.random(70, 30, density=0.2, format="csr", random_state=5, dtype=np.float32)
    matrix.data = rng.integers(1, 6, matrix.nnz).astype(np.float32)
    matrix = sp.csr_matrix(sp.diags(np.r_[np.ones(3), 0, np.ones(66)]) @ matrix)  # row 3 has no interactions
    matrix.eliminate_zeros()
    model = algorithm_create(
        "ials",
        threads=1,
        factors=6,
        regularization=0.05,
        unobserved_weight=0.3,
        regularization_exponent=0.8,
        binary=binary,
    )
    items = rng.normal(size=(30, 6))
    X = matrix.copy()
    if binary:
        X.data[:] = 1.0
    expected = np.zeros((70, 6))
    for u in range(70):
        cols, c = X[u].indices, X[u].data.astype(np.float64)
        penalty = 0.05 * (cols.size + 0.3 * 30) ** 0.8
        system = (items[cols].T * c) @ items[cols] + 0.3 * items.T @ items + penalty * np.eye(6)
        expected[u] = np.linalg.solve(system, (items[cols].T * c).sum(axis=1))
    for cells in (1, 500, 2_000_000):  # one row per batch, several rows, everything at once
        np.testing.assert_allclose(model._solve_rows(X, items, cells=cells), expected, rtol=1e-8, atol=1e-10)


def test_ials_refuses_bad_parameters():
    matrix, _, _ = planted_matrix(users=60, items=40, groups=4, per_user=8)
    with pytest.raises(ValueError, match="factors"):
        algorithm_create("ials", threads=1, factors=0).fit(matrix)
    with pytest.raises(ValueError, match="unobserved_weight"):
        algorithm_create("ials", threads=1, unobserved_weight=-1).fit(matrix)


def test_unknown_algorithm_and_parameter_are_named():
    with pytest.raises(ValueError, match="unknown algorithm 'svd'"):
        algorithm_create("svd")
    with pytest.raises(ValueError, match="unknown parameter.*lambda.*accepted: .*l2"):
        algorithm_create("ease", **{"lambda": 3})


def test_ease_prunes_large_weight_matrices_and_caps_items():
    matrix, _, _ = planted_matrix(users=300, items=120, groups=4)
    dense = algorithm_create("ease", threads=1, l2=50.0).fit(matrix)
    pruned = algorithm_create("ease", threads=1, l2=50.0, dense_items=10, keep_per_item=40).fit(matrix)
    capped = algorithm_create("ease", threads=1, l2=50.0, max_items=60).fit(matrix)
    assert sp.issparse(pruned.weights) and pruned.weights.nnz <= 40 * 120
    users = np.arange(100)
    a = dense.recommend(matrix[users], n=10, exclude=matrix[users])[0]
    b = pruned.recommend(matrix[users], n=10, exclude=matrix[users])[0]
    assert np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b, strict=True)]) > 0.8
    c = capped.recommend(matrix[users], n=10, exclude=matrix[users])[0]
    assert set(c[c >= 0]) <= set(capped.kept)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    rows=st.integers(1, 20),
    width=st.integers(1, 3000),
    n=st.integers(1, 25),
    distinct=st.integers(2, 1_000_000),
    masked=st.floats(0, 0.9),
)
def test_grouped_top_n_agrees_with_a_full_sort(seed, rows, width, n, distinct, masked):
    """The two-level selection used for wide catalogues must pick the same scores as sorting everything."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, distinct, size=(rows, width)).astype(np.float32)  # few distinct values: ties
    scores[rng.random((rows, width)) < masked] = -np.finfo(np.float32).max
    ids, best = top_n(scores, n)
    expected = -np.sort(-scores, axis=1)[:, : min(n, width)]
    np.testing.assert_array_equal(best, expected)
    np.testing.assert_array_equal(np.take_along_axis(scores, ids, axis=1), best)
    assert all(len(set(row)) == len(row) for row in ids.tolist())


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    users=st.integers(1, 30),
    items=st.integers(1, 400),
    n=st.integers(1, 12),
    restrict=st.booleans(),
)
def test_factor_model_ranking_agrees_with_dense_scores(seed, users, items, n, restrict):
    """recommend() (chunked, masked, restricted, grouped top-n) ranks as plain scoring + a full sort does."""
    rng = np.random.default_rng(seed)
    model = algorithm_create("als", threads=1)
    model.user_factors = rng.normal(size=(users, 4)).astype(np.float32)
    model.item_factors = rng.normal(size=(items, 4)).astype(np.float32)
    model.n_users, model.n_items = users, items
    history = sp.random(users, items, density=0.2, format="csr", random_state=seed, dtype=np.float32)
    allowed = np.flatnonzero(rng.random(items) < 0.7) if restrict else None
    ids, scores = model.recommend(
        history, user_rows=np.arange(users), n=n, exclude=history, items=allowed, chunk_size=7
    )

    dense = model.scores(history, user_rows=np.arange(users))
    dense[history.nonzero()] = -np.inf
    if allowed is not None:
        mask = np.ones(items, bool)
        mask[allowed] = False
        dense[:, mask] = -np.inf
    expected = -np.sort(-dense, axis=1)[:, :n]
    for u in range(users):
        valid = np.isfinite(expected[u])
        got = ids[u][ids[u] >= 0]
        assert len(got) == valid.sum()
        np.testing.assert_allclose(scores[u][: len(got)], expected[u][valid], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dense[u, got], expected[u][valid], rtol=1e-5, atol=1e-5)


# --- category popularity and filling tied lists from it --------------------------------------------------


def _category_planted(*, users: int = 500, categories: int = 10, per_category: int = 30, seed: int = 4):
    """Each consumer shops one or two categories; inside a category items follow one shared Zipf popularity.
    Globally popular items are spread over all categories, so global popularity mostly misses."""
    rng = np.random.default_rng(seed)
    items = categories * per_category
    codes = np.repeat(np.arange(categories), per_category)
    inner = 1.0 / np.arange(1, per_category + 1) ** 1.1
    inner /= inner.sum()
    rows, cols, times = [], [], []
    for u in range(users):
        liked = rng.choice(categories, size=int(rng.integers(1, 3)), replace=False)
        chosen: set[int] = set()
        while len(chosen) < 12:
            c = int(rng.choice(liked)) if rng.random() < 0.9 else int(rng.integers(0, categories))
            chosen.add(c * per_category + int(rng.choice(per_category, p=inner)))
        for t, item in enumerate(rng.permutation(sorted(chosen))):
            rows.append(u)
            cols.append(item)
            times.append(t)
    rows_a, cols_a = np.asarray(rows), np.asarray(cols)
    holdout = temporal_holdout(
        rows_a,
        cols_a,
        np.ones(rows_a.size, np.float32),
        np.asarray(times, np.float64),
        shape=(users, items),
        test_fraction=0.25,
    )
    return holdout, codes


def test_category_popularity_beats_global_popularity_on_category_structured_data():
    holdout, codes = _category_planted()
    popular = evaluate(make("popular").fit(holdout.train), holdout)
    category = evaluate(make("category_popular").with_categories(codes).fit(holdout.train), holdout)
    assert category.users == popular.users > 400
    assert category.ndcg > 2 * popular.ndcg
    assert category.precision > 2 * popular.precision


def test_category_popularity_ranks_the_consumers_strongest_category_first_then_by_popularity():
    # Items 0-2 in category 0, 3-5 in category 1; consumers per item: 3: 4, 0: 3, 1 and 4: 2, 2 and 5: 1.
    train = sp.csr_matrix(
        np.array(
            [
                [1, 1, 0, 1, 1, 0],
                [1, 0, 0, 1, 1, 1],
                [1, 1, 0, 1, 0, 0],
                [0, 0, 0, 1, 0, 0],
                [0, 0, 1, 0, 0, 0],
            ],
            dtype=np.float32,
        )
    )
    model = make("category_popular").with_categories(np.array([0, 0, 0, 1, 1, 1])).fit(train)
    history = sp.csr_matrix(np.array([[0, 0, 5, 1, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=np.float32))
    ids, _ = model.recommend(history, n=4, exclude=history)
    assert ids[0].tolist() == [0, 1, 4, 5]  # category 0 (weight 5) before category 1 (weight 1)
    assert ids[1].tolist()[:2] == [3, 0]  # no history: global popularity


def test_tied_or_zero_scores_are_dropped_and_filled_from_the_baseline():
    holdout, codes = _category_planted(users=300)
    # Item-kNN with a single neighbour leaves most candidates at score 0: arbitrary ties.
    knn = make("item_knn", neighbours=1, similarity="cosine").fit(holdout.train)
    users = holdout.test_rows
    ids, scores = knn.recommend(holdout.train[users], user_rows=users, n=10, exclude=holdout.train[users])
    raw_zero = (scores <= 0) & (ids >= 0)
    assert raw_zero.any()  # without the rule, zero-score picks fill the lists
    dropped, kept_scores = knn.recommend(
        holdout.train[users], user_rows=users, n=10, exclude=holdout.train[users], drop_ties=True
    )
    kept = dropped >= 0
    assert np.all(kept_scores[kept] > 0)  # every pick kept beats what was left out
    assert np.all(np.diff(kept.astype(int), axis=1) <= 0)  # the gaps are at the end of each list
    baseline = make("category_popular").with_categories(codes).fit(holdout.train)
    filled = evaluate(knn, holdout, baseline=baseline)
    unfilled = evaluate(knn, holdout)
    assert filled.filled > 0.3
    assert filled.ndcg > unfilled.ndcg


def test_all_equal_scores_come_back_empty_with_drop_ties():
    model = make("popular").fit(sp.csr_matrix(np.ones((3, 12), np.float32)))
    ids, _ = model.recommend(sp.csr_matrix((2, 12), dtype=np.float32), n=5, drop_ties=True)
    assert np.all(ids == -1)
    ids, _ = model.recommend(sp.csr_matrix((2, 12), dtype=np.float32), n=5)
    assert np.all(ids >= 0)


def test_the_ridge_fold_in_is_each_rows_least_squares_fit_to_the_item_factors():
    rng = np.random.default_rng(3)
    item_factors = rng.normal(size=(30, 4)).astype(np.float32)
    history = sp.random(50, 30, density=0.2, format="csr", random_state=4)
    history.data[:] = 1.0
    folded = ridge_fold_in(history, item_factors, regularization=0.5)
    v = item_factors.astype(np.float64)
    for row in (0, 7, 49):
        x = history[row].toarray().ravel()
        expected = np.linalg.solve(v.T @ v + 0.5 * np.eye(4), v.T @ x)
        assert np.allclose(folded[row], expected, atol=1e-4)
    assert not folded[np.diff(history.indptr) == 0].any()  # a consumer without interactions folds to zero
