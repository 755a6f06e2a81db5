"""Recommendation algorithms behind one interface.

Every algorithm is fitted on a consumer x product matrix of interaction
weights (CSR) and then ranks products for batches of consumers:

    model = algorithm_create("ease", l2=300).fit(matrix)
    ids, scores = model.recommend(history, user_rows=rows, n=10, exclude=purchased, items=catalogue)

`history` holds one row per consumer being ranked (their interactions, used by
the item models and to fold in consumers a factor model has not seen);
`user_rows` are their rows in the training matrix (-1 for none); `exclude` is
a sparse mask of columns never to return per consumer; `items` restricts the
ranking to some columns (one merchant's catalogue). Results are column indices
into the training matrix, best first, -1 where fewer than n qualify.

Models save to and load from a dict of arrays (`artefact()` /
`algorithm_load()`), which the registry stores as an .npz file. CPU threads
(BLAS and implicit's OpenMP loops) are pinned with threadpoolctl to
settings.BLAS_THREADS unless a caller asks otherwise, so Celery worker
processes do not oversubscribe the machine.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from .memory import MemoryBudgetExceeded, csr_bytes, memory_budget_bytes

logger = logging.getLogger("dmp.recommend")

# Scores at or below this mean "not rankable" (excluded, or outside the allowed items).
_MASKED = np.float32(-np.finfo(np.float32).max)
_MAX_CHUNK_SCORES = 20_000_000
# A dense score chunk costs about 16 bytes per score at its peak (the float32 scores, the masked copy and the
# top-n selection's candidates), so a chunk never takes more than this share of the memory budget.
_CHUNK_BYTES_PER_SCORE = 16


def default_threads() -> int:
    from django.conf import settings

    return max(1, settings.BLAS_THREADS)


_controller = None
_scratch = threading.local()


@contextlib.contextmanager
def pinned_threads(threads: int, *, blas: int | None = None) -> Iterator[None]:
    """Limit the OpenMP pool to `threads` and BLAS to `blas` (default: the same) for a fit or a scoring batch.

    One ThreadpoolController per process: building one scans the loaded
    libraries (about a millisecond), too slow for every served request.
    """
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    with _controller.limit(limits={"openmp": threads, "blas": threads if blas is None else blas}):
        yield


class Recommender(ABC):
    """Common interface. Subclasses define `name`, `defaults`, `_fit`, `_scores` and the artefact hooks."""

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    has_consumer_factors: ClassVar[bool] = False
    # implicit parallelises with its own OpenMP loops and wants single-threaded BLAS underneath.
    single_threaded_blas_in_fit: ClassVar[bool] = False

    def __init__(self, *, threads: int | None = None, memory_budget: int | None = None, **params: Any):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) for {self.name}: {', '.join(sorted(unknown))}; "
                f"accepted: {', '.join(sorted(self.defaults)) or 'none'}"
            )
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.threads = threads if threads is not None else default_threads()
        # Bytes; None means the configured budget (recommend.memory.memory_budget_bytes), read when needed.
        self.memory_budget = memory_budget
        self.n_users = 0
        self.n_items = 0
        self.fit_info: dict[str, Any] = {}

    # -- memory ----------------------------------------------------------------------------------------------

    def budget_bytes(self) -> int:
        return int(self.memory_budget) if self.memory_budget is not None else memory_budget_bytes()

    def memory_estimate(self, *, users: int, items: int, nnz: int) -> int:
        """Peak bytes fit() allocates for a users x items matrix with nnz entries (the caller's matrix aside),
        with a margin for what the arithmetic leaves out (small temporaries, the allocator's slack)."""
        return _with_margin(csr_bytes(users, nnz) + self._fit_bytes(users, items, nnz))

    def _fit_bytes(self, users: int, items: int, nnz: int) -> int:
        """Bytes the algorithm itself allocates on top of fit()'s float32 copy of the matrix."""
        return 0

    def memory_plan(self, *, users: int, items: int, nnz: int) -> dict[str, Any]:
        """Check the estimate against the budget before anything is allocated; raise MemoryBudgetExceeded when
        it does not fit. Returns what was planned (stored with the training run)."""
        budget = self.budget_bytes()
        needed = self.memory_estimate(users=users, items=items, nnz=nnz)
        if needed > budget:
            raise MemoryBudgetExceeded(
                algorithm=self.name,
                needed_bytes=needed,
                budget_bytes=budget,
                what=_shape_text(users, items, nnz),
                advice=self._budget_advice(),
            )
        return {"memory_budget_bytes": budget, "memory_estimate_bytes": needed}

    def _budget_advice(self) -> str:
        return "raise the budget, or train on fewer consumers and products"

    # -- fitting ---------------------------------------------------------------------------------------------

    def fit(self, interactions: sp.spmatrix) -> Recommender:
        # Before any copy: nnz before summing duplicates is an upper bound of the matrix's entries.
        users, items = interactions.shape
        nnz = int(interactions.nnz) if sp.issparse(interactions) else int(np.count_nonzero(interactions))
        self.fit_info = self.memory_plan(users=users, items=items, nnz=nnz)
        matrix = sp.csr_matrix(interactions, dtype=np.float32)
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        self.n_users, self.n_items = matrix.shape
        with pinned_threads(self.threads, blas=1 if self.single_threaded_blas_in_fit else None):
            self._fit(matrix)
        return self

    @abstractmethod
    def _fit(self, matrix: sp.csr_matrix) -> None: ...

    # -- scoring ---------------------------------------------------------------------------------------------

    @abstractmethod
    def _scores(self, history: sp.csr_matrix, user_rows: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        """Dense float32 scores, one row per consumer, one column per item (or per entry of `items`)."""

    def scores(
        self, history: sp.spmatrix, *, user_rows: np.ndarray | None = None, items: np.ndarray | None = None
    ) -> np.ndarray:
        history = self._history(history)
        user_rows = self._user_rows(user_rows, history.shape[0])
        with pinned_threads(self.threads):
            return self._scores(history, user_rows, None if items is None else np.asarray(items, dtype=np.int64))

    def recommend(
        self,
        history: sp.spmatrix,
        *,
        n: int,
        user_rows: np.ndarray | None = None,
        exclude: sp.spmatrix | None = None,
        items: np.ndarray | None = None,
        chunk_size: int = 4096,
        drop_ties: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n columns per consumer, best first: (ids, scores), each (consumers x n); -1 ids pad short lists.

        With `drop_ties`, picks the model cannot tell from the best item it left out are dropped too (-1): a
        pick is kept only when its score is strictly above the (n+1)-th score. A list of all-zero or all-equal
        scores (item-kNN for a consumer whose items have no neighbours) then comes back empty, for the caller
        to fill from its baseline instead of from arbitrary ties.
        """
        if n < 1:
            raise ValueError("n must be at least 1")
        history = self._history(history)
        user_rows = self._user_rows(user_rows, history.shape[0])
        items = None if items is None else _sorted_unique(items)
        if items is not None and items.size and (items[0] < 0 or items[-1] >= self.n_items):
            raise IndexError("items must be columns of the training matrix")
        exclude = None if exclude is None else sp.csr_matrix(exclude)
        if exclude is not None and exclude.shape != history.shape:
            raise ValueError(f"exclude has shape {exclude.shape}, expected {history.shape}")
        n_users = history.shape[0]
        ids = np.full((n_users, n), -1, dtype=np.int64)
        top_scores = np.full((n_users, n), _MASKED, dtype=np.float32)
        if n_users == 0 or (items is not None and items.size == 0):
            return ids, top_scores
        # Bound a chunk's dense score matrix to about 80 MB whatever the catalogue's width, and its peak to a
        # quarter of the memory budget.
        width = self.n_items if items is None else items.size
        max_scores = min(_MAX_CHUNK_SCORES, self.budget_bytes() // (4 * _CHUNK_BYTES_PER_SCORE))
        chunk_size = max(64, min(chunk_size, max_scores // max(width, 1)))
        with pinned_threads(self.threads):
            for start in range(0, n_users, chunk_size):
                stop = min(n_users, start + chunk_size)
                chunk_ids, chunk_scores = self._recommend_chunk(
                    history[start:stop],
                    user_rows[start:stop],
                    None if exclude is None else exclude[start:stop],
                    items,
                    n + 1 if drop_ties else n,
                )
                if drop_ties:
                    chunk_ids, chunk_scores = _without_ties(chunk_ids, chunk_scores, n)
                ids[start:stop, : chunk_ids.shape[1]] = chunk_ids
                top_scores[start:stop, : chunk_scores.shape[1]] = chunk_scores
        ids[top_scores <= _MASKED] = -1
        return ids, top_scores

    def _recommend_chunk(
        self,
        history: sp.csr_matrix,
        user_rows: np.ndarray,
        exclude: sp.csr_matrix | None,
        items: np.ndarray | None,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = self._chunk_scores(history, user_rows, items)
        if exclude is not None and exclude.nnz:
            rows, cols = _mask_positions(exclude, items)
            scores[rows, cols] = _MASKED
        local, best = top_n(scores, n)
        return (local if items is None else np.where(local >= 0, items[np.maximum(local, 0)], -1)), best

    def _chunk_scores(self, history: sp.csr_matrix, user_rows: np.ndarray, items: np.ndarray | None) -> np.ndarray:
        """Scores for one chunk of a batch; may reuse a scratch buffer (the caller consumes it at once)."""
        return self._scores(history, user_rows, items)

    def similar_items(self, item: int, *, n: int, items: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The n columns most similar to `item` (never itself), optionally among `items` only."""
        if not 0 <= item < self.n_items:
            raise IndexError("item is not a column of the training matrix")
        items = None if items is None else _sorted_unique(items)
        with pinned_threads(self.threads):
            similarity = self._item_similarity(item).astype(np.float32, copy=False)
        similarity[item] = _MASKED
        if items is not None:
            allowed = np.full(self.n_items, _MASKED, dtype=np.float32)
            allowed[items] = similarity[items]
            similarity = allowed
        local, best = top_n(similarity[None, :], n)
        ids, scores = local[0], best[0]
        ids[scores <= _MASKED] = -1
        return ids, scores

    @abstractmethod
    def _item_similarity(self, item: int) -> np.ndarray:
        """Similarity of every column to `item` (dense, length n_items)."""

    def consumer_factors(self) -> np.ndarray | None:
        """Consumers' latent vectors (rows of the training matrix x k), for models that learn them."""
        return None

    # -- persistence -----------------------------------------------------------------------------------------

    def artefact(self) -> dict[str, np.ndarray]:
        arrays = self._artefact()
        arrays["shape"] = np.array([self.n_users, self.n_items], dtype=np.int64)
        return arrays

    @abstractmethod
    def _artefact(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _restore(self, arrays: dict[str, np.ndarray]) -> None: ...

    # -- helpers ---------------------------------------------------------------------------------------------

    def _history(self, history: sp.spmatrix) -> sp.csr_matrix:
        history = sp.csr_matrix(history, dtype=np.float32)
        if history.shape[1] != self.n_items:
            raise ValueError(f"history has {history.shape[1]} columns, the model {self.n_items}")
        return history

    def _user_rows(self, user_rows: np.ndarray | None, count: int) -> np.ndarray:
        if user_rows is None:
            return np.full(count, -1, dtype=np.int64)
        user_rows = np.asarray(user_rows, dtype=np.int64)
        if user_rows.shape != (count,):
            raise ValueError(f"user_rows must have one entry per history row ({count})")
        return np.where(user_rows < self.n_users, user_rows, -1)


# Estimates are multiplied by this: measured peaks (tracemalloc) came to 0.3-1.0 of the arithmetic, never above.
_ESTIMATE_MARGIN = 1.05


def _with_margin(size: int) -> int:
    return int(size * _ESTIMATE_MARGIN)


def _shape_text(users: int, items: int, nnz: int) -> str:
    return f"on {users:,} consumers x {items:,} products ({nnz:,} interactions)"


def _sorted_unique(values) -> np.ndarray:
    """As np.unique, without its sort when the values already are sorted and distinct (the hot path)."""
    values = np.asarray(values, dtype=np.int64)
    if values.size < 2 or bool(np.all(values[1:] > values[:-1])):
        return values
    return np.unique(values)


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the indices of the n largest scores, best first (ties in any order).

    Wide rows go through a two-level selection: the row is cut into groups,
    the n groups with the largest maxima are kept (every top-n entry lives in
    one of them, since a group holding none of them has a maximum no larger
    than the n-th score), and only their entries are partitioned. For 5,000
    columns and n = 10 that partitions about 450 values instead of 5,000.
    """
    rows, width = scores.shape
    n = min(n, width)
    if n == 0:
        return np.empty((rows, 0), np.int64), np.empty((rows, 0), scores.dtype)
    group = int(np.sqrt(width / n))
    if group >= 4 and width // group > 2 * n:
        groups = width // group
        main = groups * group
        # Group q holds columns q, q + groups, q + 2*groups, ...: the maximum then runs over the middle axis,
        # elementwise across contiguous rows of `groups` values, which numpy vectorises (a short last axis
        # would not be).
        maxima = scores[:, :main].reshape(rows, group, groups).max(axis=1)
        best_groups = np.argpartition(-maxima, n - 1, axis=1)[:, :n]
        candidates = (best_groups[:, :, None] + groups * np.arange(group)).reshape(rows, n * group)
        if main < width:  # the ragged tail is always a candidate
            tail = np.broadcast_to(np.arange(main, width), (rows, width - main))
            candidates = np.concatenate([candidates, tail], axis=1)
        candidate_scores = np.take_along_axis(scores, candidates, axis=1)
        local, best = _top_n_flat(candidate_scores, n)
        return np.take_along_axis(candidates, local, axis=1).astype(np.int64), best
    return _top_n_flat(scores, n)


def _top_n_flat(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    if n < scores.shape[1]:
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64), np.take_along_axis(part_scores, order, axis=1)


def _without_ties(ids: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n of n+1 picks, masking those whose score does not beat the (n+1)-th (they are ties)."""
    if ids.shape[1] <= n:  # fewer candidates than n+1: nothing was left out to tie with
        return ids, scores
    left_out = scores[:, n : n + 1]
    ids, scores = ids[:, :n].copy(), scores[:, :n].copy()
    tied = (scores <= left_out) & (left_out > _MASKED)
    ids[tied] = -1
    scores[tied] = _MASKED
    return ids, scores


def _mask_positions(exclude: sp.csr_matrix, items: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Row and score-column positions of excluded entries (mapped into `items` when given)."""
    rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
    cols = exclude.indices.astype(np.int64)
    if items is None:
        return rows, cols
    position = np.searchsorted(items, cols)
    position = np.minimum(position, items.size - 1)
    keep = items[position] == cols
    return rows[keep], position[keep]


def binary_interactions(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """The matrix with every stored entry set to 1 (who interacted with what, not how often)."""
    binary = matrix.copy()
    binary.data[:] = 1.0
    return binary


def ridge_fold_in(history: sp.csr_matrix, item_factors: np.ndarray, *, regularization: float) -> np.ndarray:
    """Consumer vectors from their interaction rows by the closed-form ALS projection onto fixed item factors:
    u = (VᵀV + λI)⁻¹ Vᵀx for each row x. One sparse x dense product and one k x k solve for every row at once,
    so a million rows take about a second (the exact per-row iALS solve would take minutes)."""
    item_factors = np.asarray(item_factors, dtype=np.float64)
    k = item_factors.shape[1]
    gram = item_factors.T @ item_factors + regularization * np.eye(k)
    projection = np.linalg.solve(gram, item_factors.T).T  # V (VᵀV + λI)⁻¹, items x k (the Gramian is symmetric)
    return np.asarray(sp.csr_matrix(history) @ projection.astype(np.float32), dtype=np.float32)


# --- popularity ---------------------------------------------------------------------------------------------


class Popularity(Recommender):
    """Items ranked by how many consumers interacted with them: the baseline every model must beat."""

    name = "popular"
    defaults = {}

    def _fit_bytes(self, users, items, nnz):
        return csr_bytes(users, nnz) + items * 16  # the binary copy; the column sums

    def _fit(self, matrix: sp.csr_matrix) -> None:
        self.popularity = np.asarray(binary_interactions(matrix).sum(axis=0)).ravel().astype(np.float32)

    def _scores(self, history, user_rows, items):
        row = self.popularity if items is None else self.popularity[items]
        return np.repeat(row[None, :], history.shape[0], axis=0)

    def _item_similarity(self, item: int) -> np.ndarray:
        return self.popularity.copy()

    def _artefact(self):
        return {"popularity": self.popularity}

    def _restore(self, arrays):
        self.popularity = arrays["popularity"]


class CategoryPopularity(Recommender):
    """Popular in the consumer's own categories: the marketplace baseline every model must beat.

    Each item belongs to one category (`item_categories`, an integer code per
    column, -1 for none; set with `with_categories` before `fit`). A consumer's
    affinity to a category is its share of their interaction weight; an item
    scores that share plus `popularity_weight` x its popularity (consumers who
    interacted with it) divided by the largest popularity. A small weight
    (0.05) puts the consumer's categories first, strongest first, each in
    popularity order; a large one turns it into global popularity. The default,
    0.5, was the best on marketplace-shaped validation splits (synthetic
    marketplace and online retail; docs/recommendations.md). Popularity alone
    ranks a consumer without history.

    `category_depth` is read by the caller that maps products to categories
    (1: the top level of the category path); the model only sees the codes.
    """

    name = "category_popular"
    defaults = {"popularity_weight": 0.5, "category_depth": 1}

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        weight = self.params["popularity_weight"]
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise ValueError(f"popularity_weight must be a number >= 0, got {weight!r}")
        depth = self.params["category_depth"]
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"category_depth must be an integer >= 1, got {depth!r}")
        self.item_categories: np.ndarray | None = None

    def with_categories(self, codes: np.ndarray) -> CategoryPopularity:
        """Integer category code of every column of the matrix to fit (-1: no category)."""
        self.item_categories = np.asarray(codes, dtype=np.int64)
        return self

    def _fit_bytes(self, users, items, nnz):
        return csr_bytes(users, nnz) + items * 32

    def _fit(self, matrix: sp.csr_matrix) -> None:
        codes = self.item_categories
        if codes is None:
            codes = np.full(matrix.shape[1], -1, dtype=np.int64)
        if codes.shape != (matrix.shape[1],):
            raise ValueError(f"item_categories has {codes.size} entries, the matrix {matrix.shape[1]} columns")
        self.item_categories = codes
        self.popularity = np.asarray(binary_interactions(matrix).sum(axis=0)).ravel().astype(np.float32)

    def _membership(self) -> sp.csr_matrix:
        """items x (categories + 1) one-hot; the last column collects items without a category."""
        codes = self.item_categories
        assert codes is not None
        n_categories = int(codes.max()) + 1 if codes.size and codes.max() >= 0 else 0
        column = np.where(codes >= 0, codes, n_categories)
        return sp.csr_matrix(
            (np.ones(codes.size, np.float32), (np.arange(codes.size), column)), shape=(codes.size, n_categories + 1)
        )

    def _scores(self, history, user_rows, items):
        codes = self.item_categories
        assert codes is not None
        membership = self._membership()
        affinity = np.asarray((history @ membership).todense(), dtype=np.float32)
        affinity[:, -1] = 0.0  # uncategorised items carry no affinity
        totals = affinity.sum(axis=1, keepdims=True)
        share = np.divide(affinity, totals, out=np.zeros_like(affinity), where=totals > 0)
        column = np.where(codes >= 0, codes, membership.shape[1] - 1)
        popularity = self._popularity_scaled()
        if items is not None:
            column, popularity = column[items], popularity[items]
        return share[:, column] + popularity[None, :]

    def _popularity_scaled(self) -> np.ndarray:
        top = float(self.popularity.max()) if self.popularity.size else 0.0
        weight = float(self.params["popularity_weight"])
        # A floor keeps popularity as the tie-break inside a category even at weight 0.
        scale = max(weight, 1e-4) / top if top > 0 else 0.0
        return (self.popularity * scale).astype(np.float32)

    def _item_similarity(self, item: int) -> np.ndarray:
        codes = self.item_categories
        assert codes is not None
        same = ((codes == codes[item]) & (codes >= 0)).astype(np.float32)
        return same + self._popularity_scaled()

    def _artefact(self):
        assert self.item_categories is not None
        return {"popularity": self.popularity, "item_categories": self.item_categories}

    def _restore(self, arrays):
        self.popularity = arrays["popularity"]
        self.item_categories = arrays["item_categories"].astype(np.int64)


# --- matrix factorisation (implicit) ------------------------------------------------------------------------


class _FactorModel(Recommender):
    has_consumer_factors = True
    single_threaded_blas_in_fit = True
    user_factors: np.ndarray
    item_factors: np.ndarray

    def consumer_factors(self) -> np.ndarray:
        return self.user_factors

    def _fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        """Vectors for consumers the model was not trained on, from their interactions."""
        weights = history.multiply(1.0 / np.maximum(history.sum(axis=1), 1e-9)).tocsr()
        return np.asarray(weights @ self.item_factors, dtype=np.float32)

    def _user_vectors(self, history: sp.csr_matrix, user_rows: np.ndarray) -> np.ndarray:
        vectors = np.zeros((user_rows.size, self.item_factors.shape[1]), dtype=np.float32)
        known = user_rows >= 0
        vectors[known] = self.user_factors[user_rows[known]]
        unknown = np.flatnonzero(~known)
        if unknown.size:
            vectors[unknown] = self._fold_in(history[unknown])
        return vectors

    def _scores(self, history, user_rows, items):
        factors = self.item_factors if items is None else self.item_factors[items]
        return self._user_vectors(history, user_rows) @ factors.T

    def _chunk_scores(self, history, user_rows, items):
        # One scratch matrix per thread, reused chunk after chunk: a fresh 80 MB array per chunk costs more
        # in page faults than the multiplication that fills it.
        factors_t = np.ascontiguousarray((self.item_factors if items is None else self.item_factors[items]).T)
        vectors = self._user_vectors(history, user_rows)
        shape = (vectors.shape[0], factors_t.shape[1])
        scratch = getattr(_scratch, "scores", None)
        if scratch is None or scratch.size < shape[0] * shape[1]:
            scratch = np.empty(shape[0] * shape[1], dtype=np.float32)
            _scratch.scores = scratch
        out = scratch[: shape[0] * shape[1]].reshape(shape)
        return np.matmul(vectors, factors_t, out=out)

    def _item_similarity(self, item: int) -> np.ndarray:
        norms = np.linalg.norm(self.item_factors, axis=1)
        norms[norms == 0] = 1e-9
        return (self.item_factors @ self.item_factors[item]) / (norms * norms[item])

    def _artefact(self):
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _restore(self, arrays):
        self.user_factors = np.ascontiguousarray(arrays["user_factors"], dtype=np.float32)
        self.item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)


class ALS(_FactorModel):
    """implicit's conjugate-gradient ALS (Hu, Koren & Volinsky). Confidence = 1 + alpha * weight.

    `bm25` re-weights the matrix with implicit's bm25_weight(K1, B) before
    fitting (it dampens heavy consumers and very popular items). The defaults
    (32 factors, strong regularisation, alpha 3, no bm25) were selected on a
    MovieLens validation split carved out of the training data
    (docs/recommendations.md).
    """

    name = "als"
    defaults = {
        "factors": 32,
        "regularization": 30.0,
        "alpha": 3.0,
        "iterations": 15,
        "bm25": False,
        "bm25_k1": 100.0,
        "bm25_b": 0.8,
        "random_state": 42,
    }

    def _fit_bytes(self, users, items, nnz):
        # implicit keeps the matrix and its transpose (and, with alpha, scaled copies); two factor matrices
        # in implicit's model and ours.
        copies = 4 if self.params["bm25"] else 3
        return copies * csr_bytes(max(users, items), nnz) + 2 * (users + items) * int(self.params["factors"]) * 4

    def _budget_advice(self) -> str:
        return "raise the budget, or use fewer factors"

    def _weighted(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        if not self.params["bm25"]:
            return matrix
        from implicit.nearest_neighbours import bm25_weight

        return bm25_weight(matrix, K1=self.params["bm25_k1"], B=self.params["bm25_b"]).tocsr().astype(np.float32)

    def _fit(self, matrix):
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=int(self.params["factors"]),
            regularization=float(self.params["regularization"]),
            alpha=float(self.params["alpha"]),
            iterations=int(self.params["iterations"]),
            random_state=self.params["random_state"],
            num_threads=self.threads,
        )
        model.fit(self._weighted(matrix), show_progress=False)
        self._model = model
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def _fold_in(self, history):
        # The exact ALS solve for a new row given the item factors (implicit's recalculate_user).
        from implicit.cpu.als import AlternatingLeastSquares

        if getattr(self, "_model", None) is None:
            model = AlternatingLeastSquares(
                factors=self.item_factors.shape[1],
                regularization=float(self.params["regularization"]),
                alpha=float(self.params["alpha"]),
                num_threads=self.threads,
            )
            model.item_factors = self.item_factors
            model.user_factors = self.user_factors
            self._model = model
        if self.params["bm25"]:
            # bm25_weight works per column over the rows it is given; for a handful of new rows
            # the idf would be meaningless, so weight with the training-time length norm only.
            history = history.copy()
            history.data = history.data * (self.params["bm25_k1"] + 1.0) / (self.params["bm25_k1"] + history.data)
        return np.asarray(
            self._model.recalculate_user(np.arange(history.shape[0]), sp.csr_matrix(history)), dtype=np.float32
        )

    def _restore(self, arrays):
        super()._restore(arrays)
        self._model = None


class BPR(_FactorModel):
    """implicit's Bayesian Personalised Ranking (SGD on sampled pairs). Consumers it has not seen are folded in
    as the weighted mean of their items' factors."""

    name = "bpr"
    defaults = {
        "factors": 64,
        "learning_rate": 0.005,
        "regularization": 0.003,
        "iterations": 100,  # implicit's BPR overfits beyond this on MovieLens: validation falls from 100 to 200
        "random_state": 42,
    }

    def _fit_bytes(self, users, items, nnz):
        # The binary copy and implicit's own copies of it; factors (with the bias column), implicit's and ours.
        return 3 * csr_bytes(max(users, items), nnz) + 2 * (users + items) * (int(self.params["factors"]) + 1) * 4

    def _budget_advice(self) -> str:
        return "raise the budget, or use fewer factors"

    def _fit(self, matrix):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(
            factors=int(self.params["factors"]),
            learning_rate=float(self.params["learning_rate"]),
            regularization=float(self.params["regularization"]),
            iterations=int(self.params["iterations"]),
            random_state=self.params["random_state"],
            num_threads=self.threads,
        )
        model.fit(binary_interactions(matrix), show_progress=False)
        # implicit appends an item-bias column to the item factors and a constant 1 to the user factors.
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def _fold_in(self, history):
        vectors = super()._fold_in(history)
        vectors[:, -1] = 1.0  # the bias slot
        return vectors

    def consumer_factors(self) -> np.ndarray:
        # implicit keeps a constant 1 in the last user column to pick up the item bias: not a taste dimension.
        return self.user_factors[:, :-1]


class IALS(_FactorModel):
    """iALS as revisited by Rendle et al. (2021): weighted least squares with a Gramian for the unobserved cells.

    Minimises, over consumer vectors w and item vectors h,

        sum over observed (u, i) of c_ui (w_u·h_i - 1)²  +  α0 · sum over all (u, i) of (w_u·h_i)²
        + λ · (sum_u (|I_u| + α0·|I|)^ν |w_u|²  +  sum_i (|U_i| + α0·|U|)^ν |h_i|²)

    with α0 = `unobserved_weight`, λ = `regularization`, ν =
    `regularization_exponent` and c_ui = 1 (binary, the default) or the
    interaction weight. The frequency-scaled regularisation grows with
    how much each consumer and item has to explain, so one value transfers
    across data sizes (checked on MovieLens validation splits of 45k to 67k
    rows; docs/recommendations.md). Each half-step solves every row exactly:
    rows are sorted by history length and solved in batches of dense
    (factors x factors) systems. Consumers it has not seen are folded in by the
    same solve. The defaults were selected on a MovieLens validation split.
    """

    name = "ials"
    single_threaded_blas_in_fit = False
    defaults = {
        "factors": 64,
        "regularization": 0.02,
        "unobserved_weight": 0.25,
        "regularization_exponent": 1.0,
        "iterations": 16,
        "init_std": 0.1,
        "binary": True,
        "random_state": 42,
    }

    # A batch of row systems holds about this many float64 cells per array (see _solve_rows).
    solve_cells = 2_000_000

    def _fit_bytes(self, users, items, nnz):
        factors = int(self.params["factors"])
        vectors = (users + items) * factors
        # X and its transpose; the float64 factors of two successive half-steps and the float32 results; the
        # per-row bookkeeping of a half-step; about six arrays of a batch of row systems.
        return (
            2 * csr_bytes(max(users, items), nnz)
            + vectors * (8 * 2 + 4)
            + max(users, items) * 8 * 4
            + 6 * self.solve_cells * 8
        )

    def _budget_advice(self) -> str:
        return "raise the budget, or use fewer factors"

    def _fit(self, matrix):
        params = self.params
        X = binary_interactions(matrix) if params["binary"] else matrix
        factors = int(params["factors"])
        if factors < 1 or int(params["iterations"]) < 0:
            raise ValueError("factors must be at least 1 and iterations at least 0")
        if float(params["unobserved_weight"]) < 0 or float(params["regularization"]) < 0:
            raise ValueError("unobserved_weight and regularization must not be negative")
        rng = np.random.default_rng(params["random_state"])
        scale = float(params["init_std"]) / np.sqrt(factors)
        users = rng.normal(0.0, scale, (X.shape[0], factors))
        items = rng.normal(0.0, scale, (X.shape[1], factors))
        XT = X.T.tocsr()
        for _ in range(int(params["iterations"])):
            users = self._solve_rows(X, items)
            items = self._solve_rows(XT, users)
        self.user_factors = np.ascontiguousarray(users, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(items, dtype=np.float32)

    def _solve_rows(self, rows: sp.csr_matrix, other: np.ndarray, *, cells: int | None = None) -> np.ndarray:
        """For each row r of `rows`: (sum c h hᵀ + α0·HᵀH + λ_r I) w = sum c h over the row's columns, H = `other`."""
        cells = self.solve_cells if cells is None else cells
        alpha0 = float(self.params["unobserved_weight"])
        other = np.asarray(other, dtype=np.float64)
        n, d = rows.shape[0], other.shape[1]
        gram = alpha0 * (other.T @ other)
        counts = np.diff(rows.indptr)
        penalty = float(self.params["regularization"]) * np.power(
            counts + alpha0 * rows.shape[1], float(self.params["regularization_exponent"])
        )
        out = np.zeros((n, d), dtype=np.float64)
        order = np.argsort(counts, kind="stable")
        sorted_counts = counts[order]
        diagonal = np.arange(d)
        start = 0
        while start < n:
            # Rows are sorted by length: a batch of b rows pads to its last row's length and holds b dense
            # systems, so b x max(length, d) x d bounds its memory.
            window = np.maximum(sorted_counts[start : start + 65_536], d) * d
            fits = np.arange(1, window.size + 1) * window <= cells  # true, then false: the sizes only grow
            stop = start + max(1, int(fits.sum()))
            batch = order[start:stop]
            length = max(int(counts[batch].max()), 1)
            begins = rows.indptr[batch]
            lengths = counts[batch]
            slot = np.arange(length)
            present = slot[None, :] < lengths[:, None]
            positions = np.where(present, begins[:, None] + slot[None, :], 0)
            columns = rows.indices[positions]
            confidence = np.where(present, rows.data[positions], 0.0)
            vectors = other[columns]  # batch x length x d
            weighted = vectors * confidence[:, :, None]
            systems = np.matmul(vectors.transpose(0, 2, 1), weighted)
            systems += gram[None]
            systems[:, diagonal, diagonal] += penalty[batch][:, None]
            targets = weighted.sum(axis=1)
            out[batch] = np.linalg.solve(systems, targets[:, :, None])[:, :, 0]
            start = stop
        return out

    def _fold_in(self, history):
        history = binary_interactions(history) if self.params["binary"] else sp.csr_matrix(history)
        return self._solve_rows(history, self.item_factors).astype(np.float32)


# --- item-item nearest neighbours (implicit) ----------------------------------------------------------------


class ItemKNN(Recommender):
    """implicit's item-item recommenders: cosine or BM25 similarity, K neighbours per item.

    Scores are history @ S, with S the sparse K-nearest-neighbour similarity
    matrix; consumers are never needed at serving time beyond their history.
    """

    name = "item_knn"
    single_threaded_blas_in_fit = True
    defaults = {"similarity": "bm25", "neighbours": 400, "bm25_k1": 0.6, "bm25_b": 0.75}

    def _fit_bytes(self, users, items, nnz):
        neighbours = min(int(self.params["neighbours"]), items)
        # Weighted float64 copies of the matrix (the weighting, its transpose, implicit's input); the
        # neighbour lists as implicit builds them (float64 values, indices, row ids) and our float32 copy;
        # one dense accumulator row per thread.
        weighted = nnz * (8 + 4) + (max(users, items) + 1) * 8
        return 3 * weighted + items * neighbours * (2 * 20 + 8) + self.threads * items * 16

    def _budget_advice(self) -> str:
        return "raise the budget, or use fewer neighbours"

    def _fit(self, matrix):
        from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight, normalize

        kind = self.params["similarity"]
        # The weighting implicit's CosineRecommender / BM25Recommender apply, handed over as CSR.
        if kind == "cosine":
            weighted = normalize(matrix.T).T
        elif kind == "bm25":
            weighted = bm25_weight(matrix.T, float(self.params["bm25_k1"]), float(self.params["bm25_b"])).T
        else:
            raise ValueError(f"similarity must be 'cosine' or 'bm25', got {kind!r}")
        model = ItemItemRecommender(K=int(self.params["neighbours"]), num_threads=self.threads)
        model.fit(sp.csr_matrix(weighted, dtype=np.float64), show_progress=False)
        self.similarity = sp.csr_matrix(model.similarity, dtype=np.float32)

    def _scores(self, history, user_rows, items):
        similarity = self.similarity if items is None else self.similarity[:, items]
        return np.asarray((history @ similarity).todense(), dtype=np.float32)

    def _item_similarity(self, item):
        return np.asarray(self.similarity[item].todense(), dtype=np.float32).ravel()

    def _artefact(self):
        s = self.similarity
        return {"similarity_data": s.data, "similarity_indices": s.indices, "similarity_indptr": s.indptr}

    def _restore(self, arrays):
        n = int(arrays["shape"][1])
        self.similarity = sp.csr_matrix(
            (arrays["similarity_data"], arrays["similarity_indices"], arrays["similarity_indptr"]), shape=(n, n)
        )


# --- EASE ---------------------------------------------------------------------------------------------------


class EASE(Recommender):
    """Embarrassingly Shallow Autoencoder (Steck 2019): B = I - P / diag(P), P = (XᵀX + Λ)⁻¹, diag(B) = 0.

    Λ = l2·I + dropout/(1-dropout)·diag(XᵀX): the second term is the emphasised
    denoising penalty of Steck's EDLAE (2020), which regularises popular items
    in proportion to their frequency; dropout=0 is plain EASE.

    The inverse is O(items³) time and O(items²) memory: about 1 s for 2k
    items, minutes for 20k. The model keeps the most popular items, as many as
    `max_items` and the memory budget allow (two dense items x items matrices
    at the peak: 8 bytes a cell up to 10,000 items, 4 beyond), and refuses to
    train when the budget fits fewer than `min_items`. Items left out get no
    learned weights: they are scored zero and never recommended by this model.
    The stored weight matrix is dense up to `dense_items` items, otherwise
    pruned to the `keep_per_item` largest weights per target item.
    """

    name = "ease"
    defaults = {
        "l2": 300.0,
        "dropout": 0.8,
        "binary": True,
        "max_items": 50_000,
        "min_items": 1_000,
        "dense_items": 8_000,
        "keep_per_item": 500,
    }
    # Double precision up to this many items; beyond, single precision halves the memory.
    float64_items = 10_000
    # Cells of one block of the Gram product (and of one block of the pruning), whatever the item count.
    block_cells = 1 << 22

    def _block(self, n: int) -> int:
        return max(1, min(n, self.block_cells // max(n, 1)))

    def _ease_bytes(self, users: int, items: int, nnz: int, n: int) -> int:
        """Peak bytes of a fit that keeps n items (besides fit()'s own copy of the matrix)."""
        cell = 8 if n <= self.float64_items else 4
        keep = min(int(self.params["keep_per_item"]), n)
        block = self._block(n) * n
        # The binary copy, its kept columns, their transpose; the popularity counts.
        matrices = 3 * csr_bytes(max(users, items), nnz) + items * 24
        phases = (
            n * n * cell + block * 12,  # the Gram matrix, filled a block of rows at a time (sparse, then dense)
            2 * n * n * cell,  # its Cholesky factor (in place) and the inverse (in place of an identity)
            n * n * cell + (n * n * 4 if cell == 8 else 0),  # the weights, and their float32 copy
            # the float32 weights, a block of selection temporaries (|w|, -|w|, int64 positions), the kept entries
            n * n * 4
            + (min(n * n, self.block_cells) * 16 + n * keep * 32 if n > int(self.params["dense_items"]) else 0),
        )
        return matrices + max(phases)

    def _fit_bytes(self, users, items, nnz):
        return self._ease_bytes(users, items, nnz, min(items, int(self.params["max_items"])))

    def _ease_total(self, users: int, items: int, nnz: int, n: int) -> int:
        return _with_margin(csr_bytes(users, nnz) + self._ease_bytes(users, items, nnz, n))

    def items_for_budget(self, *, users: int, items: int, nnz: int, budget: int) -> int:
        """The most items (at most max_items) whose fit stays within `budget` bytes; 0 when none does."""
        ceiling = min(items, int(self.params["max_items"]))

        def fits(n: int) -> bool:
            return self._ease_total(users, items, nnz, n) <= budget

        best = 0
        # The estimate grows with n within each precision, and drops where single precision takes over.
        for low, high in ((1, min(ceiling, self.float64_items)), (self.float64_items + 1, ceiling)):
            if low > high or not fits(low):
                continue
            while low < high:
                middle = (low + high + 1) // 2
                if fits(middle):
                    low = middle
                else:
                    high = middle - 1
            best = max(best, low)
        return best

    def memory_plan(self, *, users, items, nnz):
        budget = self.budget_bytes()
        ceiling = min(items, int(self.params["max_items"]))
        floor = min(ceiling, max(int(self.params["min_items"]), 1))
        chosen = self.items_for_budget(users=users, items=items, nnz=nnz, budget=budget)
        if chosen < floor:
            raise MemoryBudgetExceeded(
                algorithm=self.name,
                needed_bytes=self._ease_total(users, items, nnz, floor),
                budget_bytes=budget,
                what=f"{_shape_text(users, items, nnz)} with its minimum of {floor:,} products (min_items)",
                advice=f"it fits {chosen:,}. Raise the budget, or lower min_items",
            )
        self._item_cap = chosen
        return {
            "memory_budget_bytes": budget,
            "memory_estimate_bytes": self._ease_total(users, items, nnz, chosen),
            "items": items,
            "items_kept": chosen,
            "items_limited_by": "memory" if chosen < ceiling else ("max_items" if ceiling < items else None),
        }

    def _fit(self, matrix):
        X = binary_interactions(matrix) if self.params["binary"] else matrix
        n_items = X.shape[1]
        popularity = np.asarray(binary_interactions(matrix).sum(axis=0)).ravel()
        cap = getattr(self, "_item_cap", min(n_items, int(self.params["max_items"])))
        kept = np.sort(np.argsort(-popularity, kind="stable")[:cap]) if n_items > cap else np.arange(n_items)
        n = kept.size
        Xk = X[:, kept].tocsr()
        XkT = Xk.T.tocsr()
        dtype = np.float64 if n <= self.float64_items else np.float32
        # The Gram matrix XᵀX, dense, filled a block of rows at a time: the sparse product of a block is
        # bounded, where the whole product could hold n² entries besides the dense copy.
        gram = np.empty((n, n), dtype=dtype)
        step = self._block(n)
        for start in range(0, n, step):
            gram[start : start + step] = (XkT[start : start + step] @ Xk).toarray()
        del XkT
        diag = np.diag(gram).copy()
        dropout = float(self.params["dropout"])
        gram[np.diag_indices_from(gram)] += float(self.params["l2"]) + (dropout / (1.0 - dropout)) * diag
        # P = G⁻¹ through Cholesky, both in place: G is symmetric, so its transpose is the same matrix in the
        # column-major order LAPACK works in, and the inverse overwrites an identity. Two n x n arrays at most.
        factor, _ = scipy.linalg.cho_factor(gram.T, lower=True, overwrite_a=True, check_finite=False)
        identity = np.eye(n, dtype=dtype, order="F")
        precision = scipy.linalg.cho_solve((factor, True), identity, overwrite_b=True, check_finite=False)
        del factor, gram, identity
        # P is symmetric too: its transpose is the same matrix, row-major. B = -P / diag(P), column by column.
        weights = precision.T
        weights /= -np.diag(weights).copy()[None, :]
        np.fill_diagonal(weights, 0.0)
        del precision
        weights = weights.astype(np.float32, copy=False)
        self.kept = kept
        if n <= int(self.params["dense_items"]):
            self.weights: np.ndarray | sp.csr_matrix = np.ascontiguousarray(weights)
        else:
            self.weights = _prune_columns(weights, int(self.params["keep_per_item"]), block_cells=self.block_cells)

    def _restrict(self, items: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Positions in `kept` of the requested items and their positions in the score row."""
        targets = np.arange(self.n_items) if items is None else items
        position = np.searchsorted(self.kept, targets)
        position = np.minimum(position, max(self.kept.size - 1, 0))
        present = self.kept[position] == targets if self.kept.size else np.zeros(targets.size, bool)
        return position[present], np.flatnonzero(present)

    def _scores(self, history, user_rows, items):
        n_out = self.n_items if items is None else items.size
        scores = np.zeros((history.shape[0], n_out), dtype=np.float32)
        if self.params["binary"]:
            history = binary_interactions(history)
        source = history[:, self.kept] if self.kept.size != self.n_items else history
        kept_pos, out_pos = self._restrict(items)
        weights = self.weights[:, kept_pos] if kept_pos.size != self.kept.size else self.weights
        block = source @ weights
        scores[:, out_pos] = block.toarray() if sp.issparse(block) else np.asarray(block)
        return scores

    def _item_similarity(self, item):
        similarity = np.zeros(self.n_items, dtype=np.float32)
        position = np.searchsorted(self.kept, item)
        if position < self.kept.size and self.kept[position] == item:
            row = self.weights[position]
            similarity[self.kept] = row.toarray().ravel() if sp.issparse(row) else row
        return similarity

    def _artefact(self):
        arrays = {"kept": self.kept}
        if sp.issparse(self.weights):
            arrays.update(
                weights_data=self.weights.data, weights_indices=self.weights.indices, weights_indptr=self.weights.indptr
            )
        else:
            arrays["weights"] = self.weights
        return arrays

    def _restore(self, arrays):
        self.kept = arrays["kept"]
        if "weights" in arrays:
            self.weights = arrays["weights"]
        else:
            size = self.kept.size
            self.weights = sp.csr_matrix(
                (arrays["weights_data"], arrays["weights_indices"], arrays["weights_indptr"]), shape=(size, size)
            )


def _prune_columns(weights: np.ndarray, keep: int, *, block_cells: int = 1 << 22) -> sp.csr_matrix:
    """Keep the `keep` largest-magnitude weights feeding each target item (column), a block of columns at a time
    (selecting over the whole matrix at once would need an n x n index array)."""
    n_rows, n_cols = weights.shape
    keep = min(keep, n_rows)
    step = max(1, block_cells // max(n_rows, 1))
    rows = np.empty((keep, n_cols), dtype=np.int32)
    values = np.empty((keep, n_cols), dtype=np.float32)
    for start in range(0, n_cols, step):
        block = weights[:, start : start + step]
        top = np.argpartition(-np.abs(block), keep - 1, axis=0)[:keep]
        rows[:, start : start + step] = top
        values[:, start : start + step] = np.take_along_axis(block, top, axis=0)
    cols = np.broadcast_to(np.arange(n_cols, dtype=np.int32), rows.shape)
    return sp.csr_matrix((values.ravel(), (rows.ravel(), cols.ravel())), shape=weights.shape, dtype=np.float32)


ALGORITHMS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (ALS, IALS, BPR, ItemKNN, EASE, Popularity, CategoryPopularity)
}


def algorithm_create(name: str, *, threads: int | None = None, **params: Any) -> Recommender:
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(sorted(ALGORITHMS))}") from None
    return cls(threads=threads, **params)


def algorithm_load(
    name: str, params: dict[str, Any], arrays: dict[str, np.ndarray], *, threads: int | None = None
) -> Recommender:
    model = algorithm_create(
        name, threads=threads, **{k: v for k, v in params.items() if k in ALGORITHMS[name].defaults}
    )
    shape = arrays["shape"]
    model.n_users, model.n_items = int(shape[0]), int(shape[1])
    model._restore(arrays)
    return model
