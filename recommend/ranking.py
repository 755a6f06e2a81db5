"""Ranking one merchant's catalogue for consumers: the model first, then the fallbacks.

Shared by the single-consumer endpoint and the batch API campaigns use, so both
give the same answer. Order of preference for each consumer:

1. the serving model, among the merchant's products it knows, never a product
   the consumer bought from this merchant;
2. "interest": the merchant's most popular products in the consumer's strongest
   interest category (the product category carrying the largest event weight
   in the consumer's own events, across the marketplace);
3. "popular": the merchant's most popular products overall.

Popularity is the event weight each product received in the last
POPULARITY_DAYS days, cached for POPULARITY_CACHE_SECONDS.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from django.core.cache import cache
from django.db.models import Count
from django.utils import timezone

from consumers.models import Event, EventType, Product
from dbtools.backend import on_postgresql

from .artefacts import LoadedModel
from .interactions import DEFAULT_EVENT_WEIGHTS

POPULARITY_DAYS = 90
POPULARITY_CACHE_SECONDS = 600
POPULARITY_PER_CATEGORY = 200
POPULARITY_OVERALL = 1000
CATALOGUE_CACHE_SECONDS = 30

SOURCE_MODEL = "model"
SOURCE_INTEREST = "interest"
SOURCE_POPULAR = "popular"


def _in_chunk_size() -> int:
    # SQLite caps bound parameters per statement; PostgreSQL takes large arrays happily.
    return 20_000 if on_postgresql() else 900


def _chunks(values: Sequence[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


# --- catalogue and popularity -------------------------------------------------------------------------------


@dataclass
class Catalogue:
    merchant_id: int
    product_ids: np.ndarray  # sorted
    loaded_at: float
    _columns: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

    def model_columns(self, model: LoadedModel) -> np.ndarray:
        """The model columns of this catalogue's products the model knows (sorted)."""
        key = (model.model_id, model.version)
        columns = self._columns.get(key)
        if columns is None:
            columns = model.columns_for(self.product_ids)
            columns = np.unique(columns[columns >= 0])
            self._columns = {key: columns}
        return columns


_catalogues: dict[int, Catalogue] = {}


def merchant_catalogue(merchant_id: int, *, fresh: bool = False) -> Catalogue:
    """The merchant's product ids, cached per process for a few seconds (the endpoint's hot path)."""
    cached = _catalogues.get(merchant_id)
    if not fresh and cached is not None and time.monotonic() - cached.loaded_at < CATALOGUE_CACHE_SECONDS:
        return cached
    ids = np.fromiter(
        Product.objects.filter(merchant_id=merchant_id).order_by("id").values_list("id", flat=True).iterator(),
        dtype=np.int64,
    )
    catalogue = Catalogue(merchant_id=merchant_id, product_ids=ids, loaded_at=time.monotonic())
    _catalogues[merchant_id] = catalogue
    return catalogue


@dataclass
class Popularity:
    overall: list[int]  # product ids, most popular first
    by_category: dict[str, list[int]]


def _popularity_key(merchant_id: int) -> str:
    return f"recommend:popularity:{merchant_id}"


def merchant_popularity(merchant_id: int) -> Popularity:
    """The merchant's products by recent event weight, overall and per category (cached)."""
    key = _popularity_key(merchant_id)
    cached = cache.get(key)
    if cached is not None:
        return Popularity(overall=cached["overall"], by_category=cached["by_category"])
    score: dict[int, float] = defaultdict(float)
    category_of: dict[int, str] = {}
    # The recent window first; a merchant quiet for that long falls back to all of its history.
    for since in (timezone.now() - timedelta(days=POPULARITY_DAYS), None):
        events = Event.objects.filter(
            merchant_id=merchant_id, product__isnull=False, event_type__in=list(DEFAULT_EVENT_WEIGHTS)
        )
        if since is not None:
            events = events.filter(occurred_at__gte=since)
        rows = (
            events.values("product_id", "product__category", "event_type")
            .annotate(n=Count("id"))
            .order_by()
            .values_list("product_id", "product__category", "event_type", "n")
        )
        for product_id, category, event_type, count in rows.iterator():
            score[product_id] += DEFAULT_EVENT_WEIGHTS.get(event_type, 0.0) * count
            category_of[product_id] = category or ""
        if score:
            break
    ranked = sorted(score, key=lambda pid: (-score[pid], pid))
    by_category: dict[str, list[int]] = defaultdict(list)
    for product_id in ranked:
        bucket = by_category[category_of[product_id]]
        if len(bucket) < POPULARITY_PER_CATEGORY:
            bucket.append(product_id)
    popularity = Popularity(overall=ranked[:POPULARITY_OVERALL], by_category=dict(by_category))
    cache.set(key, {"overall": popularity.overall, "by_category": popularity.by_category}, POPULARITY_CACHE_SECONDS)
    return popularity


def strongest_interests(consumer_ids: Sequence[int]) -> dict[int, str]:
    """Each consumer's category with the largest summed event weight (ties: alphabetical). Consumers
    without categorised events are absent."""
    totals: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for chunk in _chunks(list(consumer_ids), _in_chunk_size()):
        rows = (
            Event.objects.filter(
                consumer_id__in=chunk, product__isnull=False, event_type__in=list(DEFAULT_EVENT_WEIGHTS)
            )
            .exclude(product__category="")
            .values("consumer_id", "product__category", "event_type")
            .annotate(n=Count("id"))
            .order_by()
            .values_list("consumer_id", "product__category", "event_type", "n")
        )
        for consumer_id, category, event_type, count in rows.iterator():
            totals[consumer_id][category] += DEFAULT_EVENT_WEIGHTS.get(event_type, 0.0) * count
    return {
        consumer_id: min(weights, key=lambda c: (-weights[c], c)) for consumer_id, weights in totals.items() if weights
    }


# --- purchases and histories --------------------------------------------------------------------------------

# Up to this many consumers their own events are read through the consumer index; above it, one scan of the
# merchant's purchases is cheaper than many IN (...) queries.
_SCAN_THRESHOLD = 1000


def purchases_by_consumer(merchant_id: int, consumer_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(consumer id, product id) pairs of purchases from this merchant by these consumers."""
    if len(consumer_ids) <= _SCAN_THRESHOLD:
        # Filter merchant and type in Python: left in SQL, SQLite's planner (no statistics) prefers the
        # (merchant, type) index and reads every purchase of the merchant for one consumer.
        rows = [
            (consumer_id, product_id)
            for chunk in _chunks(list(consumer_ids), _in_chunk_size())
            for consumer_id, event_merchant, event_type, product_id in Event.objects.filter(consumer_id__in=chunk)
            .order_by()
            .values_list("consumer_id", "merchant_id", "event_type", "product_id")
            if event_merchant == merchant_id and event_type == EventType.PURCHASE and product_id is not None
        ]
        pairs = np.array(rows, dtype=np.int64).reshape(-1, 2)
        return pairs[:, 0], pairs[:, 1]
    base = Event.objects.filter(merchant_id=merchant_id, event_type=EventType.PURCHASE, product__isnull=False)
    pairs = np.array(
        list(base.order_by().values_list("consumer_id", "product_id").iterator(chunk_size=50_000)), dtype=np.int64
    ).reshape(-1, 2)
    wanted = np.isin(pairs[:, 0], np.asarray(consumer_ids, dtype=np.int64))
    return pairs[wanted, 0], pairs[wanted, 1]


def event_histories(
    model: LoadedModel, consumer_ids: Sequence[int], weights: dict[int, float] | None = None
) -> sp.csr_matrix:
    """Live interaction rows (in the model's columns) for consumers the model was not trained on."""
    weights = weights or DEFAULT_EVENT_WEIGHTS
    row_of = {cid: i for i, cid in enumerate(consumer_ids)}
    rows, cols, values = [], [], []
    for chunk in _chunks(list(consumer_ids), _in_chunk_size()):
        for consumer_id, product_id, event_type in (
            Event.objects.filter(consumer_id__in=chunk, product__isnull=False, event_type__in=list(weights))
            .order_by()
            .values_list("consumer_id", "product_id", "event_type")
            .iterator()
        ):
            rows.append(row_of[consumer_id])
            cols.append(product_id)
            values.append(weights[event_type])
    columns = model.columns_for(np.asarray(cols, dtype=np.int64))
    known = columns >= 0
    matrix = sp.csr_matrix(
        (np.asarray(values, np.float32)[known], (np.asarray(rows, np.int64)[known], columns[known])),
        shape=(len(consumer_ids), model.product_ids.size),
    )
    matrix.sum_duplicates()
    return matrix


def _model_event_weights(model: LoadedModel) -> dict[int, float]:
    stored = model.params.get("event_weights") if isinstance(model.params, dict) else None
    if not stored:
        return dict(DEFAULT_EVENT_WEIGHTS)
    return {int(k): float(v) for k, v in stored.items()}


# --- ranking ------------------------------------------------------------------------------------------------


@dataclass
class RankedLists:
    """Product ids per consumer, best first. `sources` is kept only for lists holding fallback picks; any
    other list came from the model entirely."""

    product_ids: dict[int, list[int]] = field(default_factory=dict)
    sources: dict[int, list[str]] = field(default_factory=dict)

    def sources_for(self, consumer_id: int) -> list[str]:
        found = self.sources.get(consumer_id)
        return found if found is not None else [SOURCE_MODEL] * len(self.product_ids.get(consumer_id, []))


def rank_for_consumers(
    *,
    merchant_id: int,
    consumer_ids: Sequence[int],
    n: int,
    model: LoadedModel | None,
    exclude_purchased: bool = True,
    chunk_size: int = 8192,
) -> RankedLists:
    """Top-n of the merchant's catalogue for every consumer id (duplicates collapse)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    unique_ids = np.unique(np.asarray(list(consumer_ids), dtype=np.int64))
    results = RankedLists()
    if unique_ids.size == 0:
        return results
    catalogue = merchant_catalogue(merchant_id, fresh=unique_ids.size > 1)

    bought_consumers, bought_products = (
        purchases_by_consumer(merchant_id, unique_ids.tolist())
        if exclude_purchased
        else (np.empty(0, np.int64), np.empty(0, np.int64))
    )

    needs_fallback: list[int] = []
    if model is not None and catalogue.product_ids.size:
        items = catalogue.model_columns(model)
        rows = model.rows_for(unique_ids)
        cold = np.flatnonzero(rows < 0)
        cold_history = sp.csr_matrix((0, model.product_ids.size), dtype=np.float32)
        if cold.size:
            # Consumers the model has not seen are folded in from their live events.
            cold_history = event_histories(model, unique_ids[cold].tolist(), _model_event_weights(model))
            has_history = np.diff(cold_history.indptr) > 0
            rankable = np.sort(np.concatenate([np.flatnonzero(rows >= 0), cold[has_history]]))
        else:
            rankable = np.flatnonzero(rows >= 0)
        # Purchases as (position in unique_ids, model column), sorted by position.
        positions = np.searchsorted(unique_ids, bought_consumers)
        columns = model.columns_for(bought_products)
        keep = columns >= 0
        order = np.argsort(positions[keep], kind="stable")
        positions, columns = positions[keep][order], columns[keep][order]
        for start in range(0, rankable.size, chunk_size):
            chunk = rankable[start : start + chunk_size]
            history = model.history_rows(rows[chunk])
            cold_here = np.flatnonzero(rows[chunk] < 0)
            if cold_here.size:
                # Add the live rows of cold consumers (their stored rows are empty).
                pick = sp.csr_matrix(
                    (np.ones(cold_here.size, np.float32), (cold_here, np.searchsorted(cold, chunk[cold_here]))),
                    shape=(chunk.size, cold.size),
                )
                history = (history + pick @ cold_history).tocsr()
            exclude = _exclusion_matrix(positions, columns, chunk, model.product_ids.size)
            # Tied picks (all-zero or all-equal scores) come back as -1 and are filled below, never arbitrary.
            ids, _ = model.recommender.recommend(
                history, user_rows=rows[chunk], n=n, exclude=exclude, items=items, drop_ties=True
            )
            products = np.where(ids >= 0, model.product_ids[np.maximum(ids, 0)], -1)
            complete = ids[:, -1] >= 0  # -1 pads short lists at the end
            chunk_consumers = unique_ids[chunk]
            # Complete lists go straight into the dict (zip of two lists, no per-consumer Python work).
            results.product_ids.update(
                zip(chunk_consumers[complete].tolist(), products[complete].tolist(), strict=True)
            )
            for consumer_id, picks in zip(
                chunk_consumers[~complete].tolist(), products[~complete].tolist(), strict=True
            ):
                results.product_ids[consumer_id] = [p for p in picks if p >= 0]
                needs_fallback.append(consumer_id)
        ranked = np.zeros(unique_ids.size, dtype=np.bool_)
        ranked[rankable] = True
        needs_fallback.extend(unique_ids[~ranked].tolist())
    else:
        needs_fallback = unique_ids.tolist()

    if needs_fallback:
        _fill_from_popularity(
            merchant_id=merchant_id,
            consumer_ids=needs_fallback,
            n=n,
            results=results,
            purchased=_purchases_as_sets(bought_consumers, bought_products, needs_fallback),
        )
    return results


def _exclusion_matrix(
    positions: np.ndarray, columns: np.ndarray, chunk: np.ndarray, n_items: int
) -> sp.csr_matrix | None:
    """Purchased model columns for the consumers at `chunk` (sorted positions), as a chunk x items mask."""
    if positions.size == 0:
        return None
    lo, hi = np.searchsorted(positions, [chunk[0], chunk[-1] + 1])
    sel = np.arange(lo, hi)
    local = np.searchsorted(chunk, positions[sel])
    local = np.minimum(local, chunk.size - 1)
    sel = sel[chunk[local] == positions[sel]]
    if sel.size == 0:
        return None
    local_rows = np.searchsorted(chunk, positions[sel])
    return sp.csr_matrix((np.ones(sel.size, np.float32), (local_rows, columns[sel])), shape=(chunk.size, n_items))


def _purchases_as_sets(
    bought_consumers: np.ndarray, bought_products: np.ndarray, consumers: list[int]
) -> dict[int, set[int]]:
    wanted = set(consumers)
    sets: dict[int, set[int]] = defaultdict(set)
    for consumer_id, product_id in zip(bought_consumers.tolist(), bought_products.tolist(), strict=True):
        if consumer_id in wanted:
            sets[consumer_id].add(product_id)
    return sets


def _fill_from_popularity(
    *, merchant_id: int, consumer_ids: list[int], n: int, results: RankedLists, purchased: dict[int, set[int]]
) -> None:
    popularity = merchant_popularity(merchant_id)
    interests = strongest_interests(consumer_ids) if popularity.overall else {}
    empty: set[int] = set()
    for consumer_id in consumer_ids:
        picks = results.product_ids.setdefault(consumer_id, [])
        sources = results.sources.setdefault(consumer_id, [SOURCE_MODEL] * len(picks))
        taken = set(picks) | purchased.get(consumer_id, empty)
        category = interests.get(consumer_id)
        pools = []
        if category is not None:
            pools.append((popularity.by_category.get(category, []), SOURCE_INTEREST))
        pools.append((popularity.overall, SOURCE_POPULAR))
        for candidates, source in pools:
            for product_id in candidates:
                if len(picks) >= n:
                    break
                if product_id not in taken:
                    picks.append(product_id)
                    sources.append(source)
                    taken.add(product_id)
            if len(picks) >= n:
                break


def batch_chunk_size() -> int:
    return settings.RECOMMEND_BATCH_CHUNK
