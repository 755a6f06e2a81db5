"""Offline evaluation: ranking metrics at k and the two hold-out protocols.

The metric definitions follow Microsoft Recommenders'
`recommenders/evaluation/python_evaluation.py` (relevancy_method="top_k",
binary relevance), so figures computed here sit next to their published
MovieLens table:

- precision@k = mean over users of hits / k (k, not the number of items
  recommended, so a list shorter than k cannot score 1);
- recall@k    = mean over users of hits / |relevant|;
- nDCG@k      = mean over users of DCG / IDCG with gain 1 for a hit and
  discount 1/log(1 + rank); IDCG sums the first min(|relevant|, k) discounts;
- MAP         = their `map` (the figure in their benchmark table, which their
  benchmark computed with what was then called `map_at_k`): mean over users of
  sum over hits of (hits so far / rank), divided by |relevant| (not by k);
- MAP@k       = their current `map_at_k`: the same sum divided by min(|relevant|, k).

"Users" are those with at least one relevant item and a recommendation list
(their `common_users`); a user with no hit counts as zero.

Protocol (a), `stratified_split`, reproduces their `python_stratified_split`
(ratio 0.75, seed 42): one uniform random number per row from NumPy's legacy
global generator seeded with the seed, rows ordered by (user, random), and a
user's row goes to training when its rank / count <= ratio. Protocol (b),
`temporal_split`, holds out the last fraction of each consumer's interactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

DEFAULT_K = 10
DEFAULT_SEED = 42
DEFAULT_RATIO = 0.75


@dataclass(frozen=True)
class RankingMetrics:
    k: int
    users: int
    precision: float
    recall: float
    ndcg: float
    map: float
    map_at_k: float
    # With a baseline to fill from (evaluate(..., baseline=)): the share of evaluated users whose list took at
    # least one baseline pick, and the share whose model list was empty (all ties or nothing to score).
    filled: float = 0.0
    empty: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "k": self.k,
            "users": self.users,
            "precision_at_k": self.precision,
            "recall_at_k": self.recall,
            "ndcg_at_k": self.ndcg,
            "map": self.map,
            "map_at_k": self.map_at_k,
            "filled_from_baseline": self.filled,
            "empty_model_lists": self.empty,
        }


def hit_matrix(recommended: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """hits[u, r] is True when recommended[u, r] (a column index, -1 for none) is relevant to user u."""
    recommended = np.asarray(recommended)
    relevant = sp.csr_matrix(relevant)
    relevant.sum_duplicates()
    relevant.sort_indices()
    n_users, k = recommended.shape
    hits = np.zeros((n_users, k), dtype=bool)
    indptr, indices = relevant.indptr, relevant.indices
    for u in range(n_users):
        row = indices[indptr[u] : indptr[u + 1]]
        if row.size:
            hits[u] = np.isin(recommended[u], row) & (recommended[u] >= 0)
    return hits


def ranking_metrics(recommended: np.ndarray, relevant: sp.csr_matrix, k: int = DEFAULT_K) -> RankingMetrics:
    """Metrics at k of per-user ranked lists against per-user relevant sets.

    recommended: (users x >= k) column indices, best first, -1 where a list is shorter.
    relevant: (users x items) sparse matrix, non-zero where the item is relevant.
    Users with no relevant item are left out, as in Microsoft Recommenders.
    """
    recommended = np.asarray(recommended)[:, :k]
    relevant = sp.csr_matrix(relevant)
    relevant.eliminate_zeros()
    n_relevant = np.diff(relevant.indptr)
    users = np.flatnonzero(n_relevant > 0)
    if users.size == 0:
        return RankingMetrics(k, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    hits = hit_matrix(recommended[users], relevant[users])
    actual = n_relevant[users].astype(np.float64)
    ranks = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    n_hits = hits.sum(axis=1)

    precision = float(np.mean(n_hits / k))
    recall = float(np.mean(n_hits / actual))

    discounts = 1.0 / np.log1p(ranks)  # 1/ln(1 + rank); the base cancels in the ratio
    dcg = (hits * discounts).sum(axis=1)
    ideal_discounts = np.concatenate([[0.0], np.cumsum(1.0 / np.log1p(np.arange(1, k + 1, dtype=np.float64)))])
    idcg = ideal_discounts[np.minimum(actual.astype(np.int64), k)]
    ndcg = float(np.mean(dcg / idcg))

    precision_at_hits = np.cumsum(hits, axis=1) / ranks
    reciprocal_sum = (precision_at_hits * hits).sum(axis=1)
    mean_ap = float(np.mean(reciprocal_sum / actual))
    mean_ap_at_k = float(np.mean(reciprocal_sum / np.minimum(actual, k)))
    return RankingMetrics(k, int(users.size), precision, recall, ndcg, mean_ap, mean_ap_at_k)


# --- protocol (a): Microsoft Recommenders' MovieLens 100K benchmark ---------------------------------------


@dataclass(frozen=True)
class Ratings:
    """Rating rows in file order: user, item, rating, unix time."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray

    def __len__(self) -> int:
        return int(self.users.size)

    def subset(self, mask: np.ndarray) -> Ratings:
        return Ratings(self.users[mask], self.items[mask], self.ratings[mask], self.timestamps[mask])


def movielens_load(path: str | Path) -> Ratings:
    """MovieLens 100K `u.data` (user TAB item TAB rating TAB time), rows in file order.

    `path` is the folder holding u.data or the file itself. Raises ValueError
    naming the line of the first malformed row.
    """
    path = Path(path)
    data_file = path / "u.data" if path.is_dir() else path
    if not data_file.is_file():
        raise FileNotFoundError(f"{data_file} not found: expected MovieLens 100K's u.data")
    rows = []
    with data_file.open(encoding="latin-1") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 4:
                raise ValueError(f"{data_file.name} line {line_number}: expected 4 tab-separated fields")
            try:
                rows.append(tuple(int(f) for f in fields))
            except ValueError:
                raise ValueError(f"{data_file.name} line {line_number}: fields must be integers") from None
    table = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return Ratings(table[:, 0], table[:, 1], table[:, 2].astype(np.float32), table[:, 3])


def stratified_split(users: np.ndarray, *, ratio: float = DEFAULT_RATIO, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Boolean training mask, per user `ratio` of the rows at random: python_stratified_split's rule.

    Their splitter draws `np.random.rand(n)` after `np.random.seed(seed)` (the
    legacy Mersenne Twister, reproduced here by RandomState), sorts rows by
    (user, random), ranks each row within its user, and sends rank / count <= ratio
    to training. The sizes depend only on the per-user counts; which rows go
    where depends on the seed and the row order.
    """
    users = np.asarray(users)
    random = np.random.RandomState(seed).rand(users.size)
    order = np.lexsort((random, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, sorted_users.size])
    position = np.arange(users.size) - np.repeat(starts, counts)
    rank = (position + 1) / np.repeat(counts, counts)
    train = np.zeros(users.size, dtype=bool)
    train[order] = rank <= ratio
    return train


@dataclass
class HoldOut:
    """A train matrix, the relevant test items per train row, and the id maps behind them."""

    train: sp.csr_matrix  # users x items, interaction weights
    test: sp.csr_matrix  # users x items, 1 where relevant
    user_ids: np.ndarray  # row -> original user id
    item_ids: np.ndarray  # column -> original item id

    @property
    def test_rows(self) -> np.ndarray:
        return np.flatnonzero(np.diff(self.test.indptr) > 0)


def holdout_from_ratings(train: Ratings, test: Ratings, *, binary: bool = True) -> HoldOut:
    """Rows are the training users, columns the training items (a model can rank nothing else).

    Test rows of items never seen in training are kept out of the matrix but
    still count in |relevant|, so recall and nDCG are not flattered; their
    `merge_ranking_true_pred` counts them the same way.
    """
    user_ids = np.unique(train.users)
    item_ids = np.unique(train.items)
    rows = np.searchsorted(user_ids, train.users)
    cols = np.searchsorted(item_ids, train.items)
    values = np.ones(len(train), np.float32) if binary else train.ratings.astype(np.float32)
    train_matrix = sp.csr_matrix((values, (rows, cols)), shape=(user_ids.size, item_ids.size), dtype=np.float32)
    train_matrix.sum_duplicates()

    known_user = np.isin(test.users, user_ids)
    test = test.subset(known_user)
    test_rows = np.searchsorted(user_ids, test.users)
    known_item = np.isin(test.items, item_ids)
    # An unseen item gets a column past the end: it counts as relevant but no list can contain it.
    unseen_items, unseen_index = np.unique(test.items[~known_item], return_inverse=True)
    test_cols = np.empty(len(test), dtype=np.int64)
    test_cols[known_item] = np.searchsorted(item_ids, test.items[known_item])
    test_cols[~known_item] = item_ids.size + unseen_index
    test_matrix = sp.csr_matrix(
        (np.ones(len(test), np.float32), (test_rows, test_cols)),
        shape=(user_ids.size, item_ids.size + unseen_items.size),
    )
    test_matrix.sum_duplicates()
    test_matrix.data[:] = 1.0
    return HoldOut(train_matrix, test_matrix, user_ids, item_ids)


def movielens_holdout(
    ratings: Ratings, *, ratio: float = DEFAULT_RATIO, seed: int = DEFAULT_SEED
) -> tuple[HoldOut, np.ndarray]:
    """Protocol (a): the stratified split, all ratings as positive feedback. Returns the hold-out and the mask."""
    mask = stratified_split(ratings.users, ratio=ratio, seed=seed)
    return holdout_from_ratings(ratings.subset(mask), ratings.subset(~mask)), mask


# --- protocol (b): per-consumer temporal hold-out -----------------------------------------------------------


def temporal_split(users: np.ndarray, timestamps: np.ndarray, *, test_fraction: float = 0.2) -> np.ndarray:
    """Boolean training mask: per user, the latest `test_fraction` of their rows (at least one) are held out.

    Users with a single row keep it in training. Ties in time are broken by
    row order, so the split is deterministic.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    users = np.asarray(users)
    order = np.lexsort((np.arange(users.size), np.asarray(timestamps), users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, sorted_users.size])
    position = np.arange(users.size) - np.repeat(starts, counts)
    n_test = np.where(counts > 1, np.maximum(1, np.floor(counts * test_fraction).astype(np.int64)), 0)
    is_test_sorted = position >= np.repeat(counts - n_test, counts)
    train = np.ones(users.size, dtype=bool)
    train[order] = ~is_test_sorted
    return train


def temporal_holdout(
    rows: np.ndarray,
    cols: np.ndarray,
    weights: np.ndarray,
    timestamps: np.ndarray,
    *,
    shape: tuple[int, int],
    test_fraction: float = 0.2,
) -> HoldOut:
    """Protocol (b) on interaction events already mapped to matrix rows and columns.

    Train is the weighted matrix of each consumer's earlier events; relevant
    test items are what the consumer interacted with in their held-out later
    events and had not interacted with before (a recommender excludes what it
    has seen, so re-interactions cannot be hits).
    """
    train_mask = temporal_split(rows, timestamps, test_fraction=test_fraction)
    train, test = _train_and_unseen(rows, cols, weights, train_mask, shape=shape)
    return HoldOut(train, test, np.arange(shape[0]), np.arange(shape[1]))


def _train_and_unseen(
    rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, train_mask: np.ndarray, *, shape: tuple[int, int]
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Both protocols' matrices: train is the weighted events under `train_mask`; test is 1 where a consumer
    interacted with an item in the other events and not in train (a recommender excludes what it has seen, so
    re-interactions cannot be hits)."""
    train = sp.csr_matrix((weights[train_mask].astype(np.float32), (rows[train_mask], cols[train_mask])), shape=shape)
    train.sum_duplicates()
    test = sp.csr_matrix(
        (np.ones(int((~train_mask).sum()), np.float32), (rows[~train_mask], cols[~train_mask])), shape=shape
    )
    test.sum_duplicates()
    test.data[:] = 1.0
    seen = train.copy()
    seen.data[:] = 1.0
    test = (test - test.multiply(seen)).tocsr()
    test.eliminate_zeros()
    return train, test


def time_split_holdout(
    rows: np.ndarray,
    cols: np.ndarray,
    weights: np.ndarray,
    timestamps: np.ndarray,
    *,
    shape: tuple[int, int],
    test_fraction: float = 0.2,
) -> HoldOut:
    """The temporal protocol: one cut in time for everybody, the latest `test_fraction` of all events tested.

    Train is every event before the cut; relevant items are what a consumer
    interacted with after it and not before. Only consumers with events before
    the cut are evaluated (the others are cold starts, the same list for all).
    Unlike the per-consumer hold-out, nothing after the cut leaks into training
    through other consumers, which is what serving faces.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    order = np.lexsort((np.arange(rows.size), np.asarray(timestamps)))
    n_train = round(rows.size * (1.0 - test_fraction))
    train_mask = np.zeros(rows.size, dtype=bool)
    train_mask[order[:n_train]] = True
    train, test = _train_and_unseen(rows, cols, weights, train_mask, shape=shape)
    has_history = (np.diff(train.indptr) > 0).astype(np.float32)
    test = (sp.diags(has_history) @ test).tocsr()
    test.eliminate_zeros()
    return HoldOut(train, test, np.arange(shape[0]), np.arange(shape[1]))


def fill_lists(primary: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Each row of `primary` (ids, -1 for none, picks first) completed with `baseline`'s picks in order,
    skipping ids already in the row. Both are (users x n)."""
    out = primary.copy()
    n = out.shape[1]
    short = np.flatnonzero(out[:, -1] < 0)
    for row in short:
        picks = [int(i) for i in out[row] if i >= 0]
        taken = set(picks)
        for candidate in baseline[row].tolist():
            if len(picks) >= n:
                break
            if candidate >= 0 and candidate not in taken:
                picks.append(candidate)
                taken.add(candidate)
        out[row] = -1
        out[row, : len(picks)] = picks
    return out


def recommended_lists(
    model, holdout: HoldOut, users: np.ndarray, *, k: int, chunk_size: int = 4096, drop_ties: bool = False
) -> np.ndarray:
    """Top-k columns for the given rows of the hold-out, their training items excluded."""
    lists = np.full((users.size, k), -1, dtype=np.int64)
    for start, stop in _chunks(users.size, chunk_size):
        chunk = users[start:stop]
        history = holdout.train[chunk]
        ids, _ = model.recommend(history, user_rows=chunk, n=k, exclude=history, drop_ties=drop_ties)
        lists[start:stop, : ids.shape[1]] = ids
    return lists


def evaluate(model, holdout: HoldOut, *, k: int = DEFAULT_K, chunk_size: int = 4096, baseline=None) -> RankingMetrics:
    """Fit nothing: rank for every user with a relevant test item, excluding their training items.

    With a fitted `baseline`, the model's picks that tie with what it left out
    (all-zero or all-equal scores) are replaced by the baseline's list, as
    serving fills them; the metrics then record how often that happened.
    """
    users = holdout.test_rows
    lists = recommended_lists(model, holdout, users, k=k, chunk_size=chunk_size, drop_ties=baseline is not None)
    relevant = holdout.test[users]
    if baseline is None:
        return ranking_metrics(lists, relevant, k=k)
    short = lists[:, -1] < 0
    empty = lists[:, 0] < 0
    fallback = recommended_lists(baseline, holdout, users, k=k, chunk_size=chunk_size)
    metrics = ranking_metrics(fill_lists(lists, fallback), relevant, k=k)
    counted = np.diff(sp.csr_matrix(relevant).indptr) > 0
    share = float(short[counted].mean()) if counted.any() else 0.0
    share_empty = float(empty[counted].mean()) if counted.any() else 0.0
    return replace(metrics, filled=share, empty=share_empty)


def _chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(total, start + size)
