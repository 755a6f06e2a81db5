"""Lookalike audiences: the consumers most like a seed segment's members.

Two ways to measure "like", chosen per run:

1. **Consumer factors** of the active recommendation model (`recommend.selectors.consumer_factors()`), when a
   model is active and it knows at least MIN_AUDIENCE of the seed: cosine similarity of each consumer's factor
   vector to the centroid of the seed's (unit-normalised) vectors. Consumers the model has no factors for are
   not ranked.
2. Otherwise a **classifier on tag features**: logistic regression on the sparse one-hot tag matrix, seed
   members (sampled) against a random sample of the other live consumers; every other live consumer is scored
   with the fitted weights (a linear model over 0/1 features is a sum of the weights of the consumer's tags,
   computed per tag by bitmap, never by looping over consumers) and the similarity is the predicted probability.

The result is the top `size` consumers by similarity (ties broken by lower id, so runs are reproducible), or
everyone at or above `min_similarity`. Seed members are never part of their own lookalike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from pyroaring import BitMap, FrozenBitMap
from scipy import sparse

from recommend.selectors import consumer_factors
from tags.bitmaps import bitmap_from_ids, bitmap_ids
from tags.models import Tag

from .sources import tag_bitmaps

logger = logging.getLogger("dmp.segments")

POSITIVE_SAMPLE = 20_000
NEGATIVE_SAMPLE = 60_000
NEGATIVES_PER_POSITIVE = 3
RANDOM_STATE = 20240601


class LookalikeError(Exception):
    """The lookalike cannot be built (seed too small, nothing to compare with)."""


@dataclass(frozen=True)
class LookalikeResult:
    members: BitMap
    method: str  # "factors" or "classifier"


def _active_factors():
    """The active model's consumer factors, or None where no active model provides them."""
    try:
        return consumer_factors()
    except Exception:  # a broken model must not stop audience building: the classifier is the fallback
        logger.exception("lookalike.factors_unavailable")
        return None


def lookalike_members(
    *,
    seed_members: FrozenBitMap | BitMap,
    live: FrozenBitMap | BitMap,
    size: int | None = None,
    min_similarity: float | None = None,
    factors=None,
    use_factors: bool = True,
) -> LookalikeResult:
    seed = BitMap(seed_members) & live
    if len(seed) < settings.MIN_AUDIENCE:
        raise LookalikeError(f"A lookalike needs a seed of at least {settings.MIN_AUDIENCE} live consumers.")
    candidates = BitMap(live) - seed
    if not candidates:
        raise LookalikeError("Every live consumer is in the seed; there is nobody left to rank.")
    if use_factors:
        factors = factors if factors is not None else _active_factors()
        if factors is not None:
            ranked = _rank_by_factors(seed, candidates, factors)
            if ranked is not None:
                ids, scores = ranked
                return _select(ids, scores, size, min_similarity, "factors")
    ids, scores = _rank_by_classifier(seed, candidates)
    return _select(ids, scores, size, min_similarity, "classifier")


def _rank_by_factors(seed: BitMap, candidates: BitMap, factors) -> tuple[np.ndarray, np.ndarray] | None:
    consumer_ids = np.asarray(factors.consumer_ids, dtype=np.int64)
    matrix = np.asarray(factors.factors, dtype=np.float32)
    if consumer_ids.size == 0 or matrix.ndim != 2 or matrix.shape[0] != consumer_ids.size:
        return None
    in_seed = np.isin(consumer_ids, bitmap_ids(seed))
    if int(in_seed.sum()) < settings.MIN_AUDIENCE:
        return None  # the model knows too few of the seed to describe it
    norms = np.linalg.norm(matrix, axis=1)
    norms[norms == 0] = 1.0
    unit = matrix / norms[:, None]
    centroid = unit[in_seed].mean(axis=0)
    length = float(np.linalg.norm(centroid))
    if length == 0:
        return None
    centroid /= length
    is_candidate = np.isin(consumer_ids, bitmap_ids(candidates))
    ids = consumer_ids[is_candidate]
    scores = unit[is_candidate] @ centroid
    return ids, scores.astype(np.float64)


def _rank_by_classifier(seed: BitMap, candidates: BitMap) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    tag_ids = list(Tag.objects.order_by("id").values_list("id", flat=True))
    if not tag_ids:
        raise LookalikeError("There are no tags to compare consumers by yet.")
    by_tag, _live = tag_bitmaps(tag_ids, with_live=False)
    bitmaps = [by_tag[t] for t in tag_ids]

    rng = np.random.default_rng(RANDOM_STATE)
    seed_ids = bitmap_ids(seed)
    candidate_ids = bitmap_ids(candidates)
    positives = rng.choice(seed_ids, size=min(POSITIVE_SAMPLE, seed_ids.size), replace=False)
    n_negative = min(candidate_ids.size, NEGATIVE_SAMPLE, max(NEGATIVES_PER_POSITIVE * positives.size, 1000))
    negatives = rng.choice(candidate_ids, size=n_negative, replace=False)
    sample = np.sort(np.concatenate([positives, negatives]))
    labels = np.isin(sample, positives).astype(np.int8)
    sample_bitmap = bitmap_from_ids(sample)
    rows, cols = [], []
    for column, bitmap in enumerate(bitmaps):
        hit = bitmap_ids(sample_bitmap & bitmap)
        rows.append(np.searchsorted(sample, hit))
        cols.append(np.full(hit.size, column, dtype=np.int64))
    row_index = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    col_index = np.concatenate(cols) if cols else np.empty(0, dtype=np.int64)
    features = sparse.csr_matrix(
        (np.ones(row_index.size, dtype=np.float32), (row_index, col_index)), shape=(sample.size, len(bitmaps))
    )
    model = LogisticRegression(max_iter=300, class_weight="balanced", random_state=RANDOM_STATE)
    model.fit(features, labels)
    weights = model.coef_[0]

    # Score every candidate: intercept plus the weights of the tags it has, added tag by tag over an array
    # indexed by consumer id.
    logits = np.full(int(candidate_ids[-1]) + 1, float(model.intercept_[0]), dtype=np.float64)
    for weight, bitmap in zip(weights, bitmaps, strict=True):
        if weight:
            logits[bitmap_ids(bitmap & candidates)] += weight
    scores = 1.0 / (1.0 + np.exp(-logits[candidate_ids]))
    return candidate_ids, scores


def _select(
    ids: np.ndarray, scores: np.ndarray, size: int | None, min_similarity: float | None, method: str
) -> LookalikeResult:
    if ids.size == 0:
        raise LookalikeError("No consumer outside the seed could be compared with it.")
    if min_similarity is not None:
        chosen = ids[scores >= min_similarity]
    else:
        if size is None:
            raise ValueError("a lookalike needs a size or a minimum similarity")
        n = min(int(size), ids.size)
        # Highest score first, lower id first among equals: sort by (-score, id).
        order = np.lexsort((ids, -scores))[:n]
        chosen = ids[order]
    return LookalikeResult(bitmap_from_ids(np.sort(chosen)), method)
