"""Reads: the serving model, consumer factors for lookalikes, recommendations for one consumer, similar
products."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from consumers.models import Product
from privacy.services import ProcessingNotPermitted, processing_basis_require

from .artefacts import LoadedModel, artefact_name, artefact_read, model_load
from .models import Algorithm, RecommenderModel
from .ranking import (
    SOURCE_INTEREST,
    SOURCE_MODEL,
    SOURCE_POPULAR,
    merchant_catalogue,
    merchant_popularity,
    rank_for_consumers,
)

FACTOR_ALGORITHMS = (Algorithm.ALS, Algorithm.IALS, Algorithm.BPR)

logger = logging.getLogger("dmp.recommend")


def serving_model() -> RecommenderModel | None:
    """The active model with the best hold-out nDCG (ties: the most recently activated)."""
    return RecommenderModel.objects.filter(is_active=True).order_by("-ndcg", "-activated_at", "-id").first()


@dataclass(frozen=True)
class ConsumerFactors:
    """Latent consumer vectors of the active factor model: row i of `factors` is consumer `consumer_ids[i]`."""

    model_id: int
    algorithm: str
    consumer_ids: np.ndarray  # sorted int64
    factors: np.ndarray  # (consumers x k) float32, read-only


def consumer_factors() -> ConsumerFactors | None:
    """Factors from the active factor model (ALS, iALS or BPR; the best hold-out nDCG if several), else None."""
    record = (
        RecommenderModel.objects.filter(is_active=True, algorithm__in=FACTOR_ALGORITHMS)
        .order_by("-ndcg", "-activated_at", "-id")
        .first()
    )
    if record is None:
        return None
    loaded = model_load(record)
    factors = loaded.recommender.consumer_factors()
    if factors is None:
        return None
    factors = factors.view()
    factors.flags.writeable = False
    consumer_ids = loaded.consumer_ids.view()
    consumer_ids.flags.writeable = False
    return ConsumerFactors(model_id=record.pk, algorithm=record.algorithm, consumer_ids=consumer_ids, factors=factors)


def serving() -> tuple[RecommenderModel | None, LoadedModel | None]:
    """The serving model's registry row and its loaded artefact (cached per process), or (None, None).

    A missing or unreadable artefact gives (None, None), logged: callers then fall back to popularity."""
    record = serving_model()
    if record is None:
        return None, None
    try:
        return record, model_load(record)
    except (OSError, KeyError, ValueError):
        # A missing or unreadable artefact must not take serving down: fall back to popularity, loudly.
        logger.exception("recommend.artefact_unreadable", extra={"fields": {"model": record.pk}})
        return None, None


def _product_dicts(merchant_id: int, product_ids: list[int], sources: list[str]) -> list[dict[str, Any]]:
    """Product rows in the given order, fetched scoped to the merchant (a foreign or deleted id drops out)."""
    rows = {
        p["id"]: p
        for p in Product.objects.filter(merchant_id=merchant_id, id__in=product_ids).values(
            "id", "sku", "title", "category", "brand", "price"
        )
    }
    out = []
    for product_id, source in zip(product_ids, sources, strict=True):
        row = rows.get(product_id)
        if row is None:
            continue
        out.append(
            {
                "product_id": row["id"],
                "sku": row["sku"],
                "title": row["title"],
                "category": row["category"],
                "brand": row["brand"],
                "price": row["price"],
                "source": source,
            }
        )
    return out


def personalisation_allowed() -> bool:
    """Whether an approved `recommendation` activity lets us use a consumer's data to rank for them."""
    try:
        processing_basis_require(purpose="recommendation")
    except ProcessingNotPermitted:
        return False
    return True


def recommendations_for(*, consumer_id: int | None, merchant_id: int, n: int) -> list[dict[str, Any]]:
    """Top-n products of the merchant for one consumer (None: someone unknown), best first.

    Without an approved `recommendation` activity nobody's data is used: everyone gets the merchant's most
    popular products (an aggregate), as an unknown consumer does.

    Each dict has product_id, sku, title, category, brand, price and `source`
    ("model", "interest" or "popular": how the product was chosen).
    """
    if not personalisation_allowed():
        consumer_id = None
    return recommendations_with(model=serving()[1], consumer_id=consumer_id, merchant_id=merchant_id, n=n)


def recommendations_with(
    *, model: LoadedModel | None, consumer_id: int | None, merchant_id: int, n: int
) -> list[dict[str, Any]]:
    """recommendations_for with the serving model already in hand (the endpoint looks it up once)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if consumer_id is None:
        popularity = merchant_popularity(merchant_id)
        picks = popularity.overall[:n]
        return _product_dicts(merchant_id, picks, [SOURCE_POPULAR] * len(picks))
    ranked = rank_for_consumers(merchant_id=merchant_id, consumer_ids=[consumer_id], n=n, model=model)
    return _product_dicts(merchant_id, ranked.product_ids[consumer_id], ranked.sources_for(consumer_id))


def similar_products_with(
    *, model: LoadedModel | None, merchant_id: int, product_id: int, category: str, n: int
) -> list[dict[str, Any]]:
    """The merchant's products most similar to one of its products (never itself), best first.

    From the serving model where it knows the product; otherwise, or to fill
    up, the merchant's popular products in the product's `category` (as the
    caller already fetched it), then overall.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    picks: list[int] = []
    sources: list[str] = []
    if model is not None:
        column = int(model.columns_for([product_id])[0])
        if column >= 0:
            catalogue = merchant_catalogue(merchant_id)
            ids, _ = model.recommender.similar_items(column, n=n, items=catalogue.model_columns(model))
            for column_id in ids.tolist():
                if column_id >= 0:
                    picks.append(int(model.product_ids[column_id]))
                    sources.append(SOURCE_MODEL)
    if len(picks) < n:
        popularity = merchant_popularity(merchant_id)
        taken = {product_id, *picks}
        for candidates, source in (
            (popularity.by_category.get(category, []) if category else [], SOURCE_INTEREST),
            (popularity.overall, SOURCE_POPULAR),
        ):
            for candidate in candidates:
                if len(picks) >= n:
                    break
                if candidate not in taken:
                    picks.append(candidate)
                    sources.append(source)
                    taken.add(candidate)
    return _product_dicts(merchant_id, picks, sources)


def consumer_model_presence(consumer_id: int) -> list[dict[str, Any]]:
    """Which stored models hold a row for this consumer (a factor vector or an interaction history)."""
    held = []
    for record in RecommenderModel.objects.exclude(artefact="").order_by("pk"):
        try:
            loaded = model_load(record) if record.is_active else None
            consumer_ids = (
                loaded.consumer_ids if loaded is not None else artefact_read(artefact_name(record))["consumer_ids"]
            )
        except (OSError, KeyError, ValueError):
            continue
        position = np.searchsorted(consumer_ids, consumer_id)
        if position < consumer_ids.size and consumer_ids[position] == consumer_id:
            held.append(
                {
                    "model": record.pk,
                    "algorithm": record.algorithm,
                    "active": record.is_active,
                    "trained_at": record.created_at.isoformat(),
                    "holds": "latent factor vector" if record.has_consumer_factors else "interaction history row",
                }
            )
    return held


# --- product audiences: who is most likely to buy a product or a category (segments' likely_to_buy) -----------


@dataclass(frozen=True)
class ProductAffinity:
    """The serving model's score of each consumer it was trained on for a set of products (the highest over
    them). `model_id` / `version` identify the model, for caching; both None when nothing could be scored."""

    consumer_ids: np.ndarray  # sorted int64
    scores: np.ndarray  # float32, one per consumer
    model_id: int | None = None
    version: int | None = None


_AFFINITY_CHUNK = 8192
_AFFINITY_MEMO = 16


def product_affinity(*, product_ids: Any) -> ProductAffinity:
    """Scores of every consumer the serving model knows for `product_ids` (max over the products the model
    knows). Empty without an approved `recommendation` activity, without a serving model, or when the model
    knows none of the products. Memoised on the loaded model (per process, per artefact version) by products."""
    empty = ProductAffinity(np.empty(0, np.int64), np.empty(0, np.float32))
    if not personalisation_allowed():
        return empty
    record, model = serving()
    if record is None or model is None:
        return empty
    columns = model.columns_for(np.asarray(product_ids, dtype=np.int64))
    columns = np.unique(columns[columns >= 0])
    key = ("affinity", columns.tobytes())
    cached = model.memo.get(key)
    if cached is not None:
        return cached
    if columns.size == 0:
        return ProductAffinity(np.empty(0, np.int64), np.empty(0, np.float32), record.pk, model.version)
    n_rows = model.consumer_ids.size
    scores = np.empty(n_rows, dtype=np.float32)
    for start in range(0, n_rows, _AFFINITY_CHUNK):
        rows = np.arange(start, min(n_rows, start + _AFFINITY_CHUNK))
        block = model.recommender.scores(model.history_rows(rows), user_rows=rows, items=columns)
        scores[rows] = block.max(axis=1)
    result = ProductAffinity(model.consumer_ids, scores, record.pk, model.version)
    while len(model.memo) >= _AFFINITY_MEMO:
        model.memo.pop(next(iter(model.memo)))
    model.memo[key] = result
    return result


def likely_buyers(*, product_ids: Any, top: int | None = None, percent: float | None = None) -> np.ndarray:
    """Consumer ids (sorted) the serving model scores highest for the products: the `top` best, or the best
    `percent` % of the consumers it scores (rounded up). Ties at the boundary go to the lower consumer id, so
    the answer is deterministic. Exactly one of top and percent."""
    if (top is None) == (percent is None):
        raise ValueError("give exactly one of top and percent")
    affinity = product_affinity(product_ids=product_ids)
    n = affinity.consumer_ids.size
    if n == 0:
        return np.empty(0, np.int64)
    k = int(top) if top is not None else int(np.ceil(n * float(percent or 0) / 100.0))
    k = max(0, min(k, n))
    if k == 0:
        return np.empty(0, np.int64)
    if k == n:
        return affinity.consumer_ids.copy()
    scores = affinity.scores
    threshold = np.partition(scores, n - k)[n - k]  # the k-th largest score
    above = np.flatnonzero(scores > threshold)
    tied = np.flatnonzero(scores == threshold)  # ascending positions, so ascending consumer ids
    chosen = np.concatenate([above, tied[: k - above.size]])
    return np.sort(affinity.consumer_ids[chosen])
