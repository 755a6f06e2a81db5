"""The recommender's consumer factors as features, fitted at each cut-off so they never see its future.

The recommend app's serving model is trained on everything up to its run, the validation window included, so its
factors would leak the labels' period into the features. Instead, at every cut-off an implicit-feedback matrix
factorisation of the recommend app (iALS) is fitted on the (consumer, product) interactions of the feature window
BEFORE that cut-off, for a bounded sample of consumers; every scored consumer is then folded in by the closed-form
ALS projection onto its item factors (recommend.algorithms.ridge_fold_in), one sparse x dense product.
`factors_fit` refuses a history holding anything after its cut-off (TemporalLeak), like the other features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommend.algorithms import IALS, binary_interactions, ridge_fold_in

from .features import FEATURE_WINDOW_DAYS, Features, History, check_cutoff

# Consumers the factorisation is fitted on at each cut-off (a seeded sample of those with interactions), so the
# fit costs the same however many consumers are scored; and its iALS parameters. The recommend app's default
# unobserved weight (0.25, chosen on MovieLens' 1,700 films) shrinks every factor to ~1e-17 over 50,000 products;
# 0.001 keeps them at a usable scale. Measured on the million-consumer world's 200,000-consumer training sample at
# one cut-off (a logistic fit of next-month purchase on the 16 factors alone, ROC-AUC on held-out consumers):
# 20,000 consumers x 6 iterations 0.707 in 2.2 s; 10,000 x 4 0.679 in 1.3 s (docs/predictions.md).
FIT_CONSUMERS = 10_000
FIT_PARAMS = {"iterations": 4, "unobserved_weight": 0.001}
# The fold-in's ridge, as a share of the item Gramian's mean diagonal (scale-free: iALS item factors are small).
FOLD_IN_RIDGE = 0.1


@dataclass(frozen=True)
class ConsumerFactors:
    """Factors fitted at one cut-off: per product and per consumer position (zeros without interactions)."""

    cutoff: float
    item: np.ndarray  # float32, products x k
    consumer: np.ndarray  # float32, consumers x k

    @property
    def names(self) -> list[str]:
        return factor_names(self.item.shape[1])


def factor_names(k: int) -> list[str]:
    return [f"factor_{position + 1}" for position in range(k)]


def interactions(
    history: History, *, cutoff: float, products: int, window: float = FEATURE_WINDOW_DAYS
) -> sp.csr_matrix:
    """Binary (consumer position x product position) matrix of the events in the window up to the cut-off."""
    check_cutoff(history, cutoff)
    keep = (history.ev_t > cutoff - window) & (history.ev_product >= 0)
    rows = history.ev_consumer[keep]
    columns = history.ev_product[keep]
    matrix = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, columns)), shape=(history.consumers, products))
    matrix.sum_duplicates()
    return binary_interactions(matrix)


def factors_fit(history: History, *, cutoff: float, k: int, seed: int = 0) -> ConsumerFactors:
    """iALS fitted on a sample of the consumers' interactions before the cut-off; every consumer folded in."""
    products = int(history.product_category.size)
    matrix = interactions(history, cutoff=cutoff, products=products)
    active = np.flatnonzero(np.diff(matrix.indptr) > 0)
    if active.size > FIT_CONSUMERS:
        active = np.sort(np.random.default_rng(seed).choice(active, FIT_CONSUMERS, replace=False))
    if active.size == 0 or products == 0:
        return ConsumerFactors(
            cutoff, np.zeros((products, k), np.float32), np.zeros((history.consumers, k), np.float32)
        )
    model = IALS(threads=1, factors=k, random_state=seed, **FIT_PARAMS).fit(matrix[active])
    item = model.item_factors
    ridge = FOLD_IN_RIDGE * float(np.einsum("ij,ij->", item, item)) / k
    return ConsumerFactors(cutoff, item, ridge_fold_in(matrix, item, regularization=max(ridge, 1e-6)))


def with_factors(found: Features, factors: ConsumerFactors) -> Features:
    """The consumer features with the consumer's factors appended as columns."""
    if found.cutoff != factors.cutoff:
        raise ValueError(f"factors of cut-off {factors.cutoff:g} given to features of cut-off {found.cutoff:g}")
    return Features(
        cutoff=found.cutoff,
        names=[*found.names, *factors.names],
        matrix=np.hstack([found.matrix, factors.consumer[found.consumer]]).astype(np.float32, copy=False),
        consumer=found.consumer,
        group=found.group,
        rf_score=found.rf_score,
        has_purchase=found.has_purchase,
    )


def group_affinity(
    factors: ConsumerFactors, product_group: np.ndarray, consumer: np.ndarray, group: np.ndarray
) -> np.ndarray:
    """For each (consumer, group) row: the consumer's factors · the mean item factors of the group's products."""
    known = product_group >= 0
    width = int(max(int(product_group.max(initial=-1)), int(group.max(initial=-1)))) + 1
    sums = np.zeros((width, factors.item.shape[1]), dtype=np.float64)
    np.add.at(sums, product_group[known], factors.item[known])
    means = (sums / np.maximum(np.bincount(product_group[known], minlength=width), 1)[:, None]).astype(np.float32)
    out = np.empty(consumer.size, dtype=np.float32)
    for start in range(0, consumer.size, AFFINITY_CHUNK_ROWS):  # in chunks: millions of pairs x k floats otherwise
        end = start + AFFINITY_CHUNK_ROWS
        out[start:end] = np.einsum("ij,ij->i", factors.consumer[consumer[start:end]], means[group[start:end]])
    return out


AFFINITY_CHUNK_ROWS = 1 << 20
