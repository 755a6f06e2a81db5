"""The predicted-trait tag families: what each predicts, for whom, its bands and their definitions.

Each family is a `Prediction` (what to learn) and a tagging rule (`PredictedRule`) that the tagging machinery
runs like any other (tags.services.tags_compute): the family's values are bands, never scores, and no
per-consumer score is stored (ConsumerTag.score stays empty for these families).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from django.conf import settings

from tags.arrays import sorted_unique_inverse
from tags.inputs import TaggingInput
from tags.rules import Assignments, TagRule, TagValue

from .factors import ConsumerFactors, factors_fit, group_affinity, with_factors
from .features import Features, History, consumer_features, pair_features, searchsorted_many
from .modelling import CLASSIFICATION, REGRESSION

if TYPE_CHECKING:
    from .services import PredictionSession

# Rank bands: share of the scored population, highest prediction first.
RANK_BANDS = [
    ("very_high", "Top 10 %", 0.10),
    ("high", "Top 10–30 %", 0.30),
    ("medium", "Top 30–60 %", 0.60),
    ("low", "Bottom 40 %", 1.00),
]
# Days to the next order.
DAY_BANDS = [
    ("within_7d", "Within 7 days", 7.0),
    ("within_30d", "In 8 to 30 days", 30.0),
    ("within_60d", "In 31 to 60 days", 60.0),
    ("later", "Later than 60 days, or not expected", np.inf),
]
PAIR_BANDS = RANK_BANDS[:3]  # pair families tag the top 60 % of each store's or category's candidates only
TOP_CATEGORIES = 5
MAX_STORES = 200
MIN_GROUP_BUYERS = 20  # a store needs this many buyers in the training window to get a model's bands


@dataclass(frozen=True)
class Prediction:
    family: str
    label: str
    description: str
    kind: str  # classification or regression
    horizon_days: float
    unit: str  # consumer, merchant or category
    subject: str  # plain words for "who is scored", used in definitions
    loss: str = "squared_error"

    def features(
        self,
        history: History,
        cutoff: float,
        groups: list[int],
        cache: dict | None = None,
        population: History | None = None,
    ) -> Features:
        """The rows this family scores at a cut-off. `cache` (one run's, one per history) shares consumer features
        between families. `population`: the whole history when `history` is a sample of its consumers."""
        cache = {} if cache is None else cache
        if ("history", cutoff) not in cache:
            cache[("history", cutoff)] = history.until(cutoff)
        past = cache[("history", cutoff)]
        k = settings.PREDICT_FACTORS
        if k and ("factors", cutoff) not in cache:
            # Fitted on this history's interactions up to the cut-off only (predict.factors).
            cache[("factors", cutoff)] = factors_fit(past, cutoff=cutoff, k=k)
        factors = cache.get(("factors", cutoff)) if k else None
        if ("consumer", cutoff) not in cache:
            found = consumer_features(past, cutoff=cutoff)
            cache[("consumer", cutoff)] = found if factors is None else with_factors(found, factors)
        found = cache[("consumer", cutoff)]
        if self.unit == "consumer":
            if self.family in ("churn_risk", "predicted_value", "next_order"):
                return _select(found, found.has_purchase)
            return found
        return pair_features(
            past,
            cutoff=cutoff,
            by=self.unit,
            groups=groups,
            base=found,
            population=population,
            per_consumer=store_candidates() if self.unit == "merchant" else None,
            affinity=None if factors is None else self._affinity(past, factors),
        )

    def _affinity(self, history: History, factors: ConsumerFactors) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        product_group = history.product_merchant if self.unit == "merchant" else history.product_category
        return partial(group_affinity, factors, product_group)

    def labels(self, history: History, features: Features, cutoff: float) -> np.ndarray:
        """The outcome of each row in (cutoff, cutoff + horizon]; never read for features."""
        window = history.purchases_after(cutoff, self.horizon_days)
        n = history.consumers
        consumer = history.pu_consumer[window]
        if self.family == "purchase_propensity":
            return (np.bincount(consumer, minlength=n) > 0)[features.consumer].astype(np.int8)
        if self.family == "churn_risk":
            return (np.bincount(consumer, minlength=n) == 0)[features.consumer].astype(np.int8)
        if self.family == "predicted_value":
            spend = np.bincount(consumer, weights=history.pu_amount[window], minlength=n)
            return np.log1p(np.maximum(spend, 0))[features.consumer]
        if self.family == "next_order":
            first = np.full(n, self.horizon_days + 1)
            np.minimum.at(first, consumer, (history.pu_t[window] - cutoff).astype(np.float64))
            return first[features.consumer]
        group = history.pu_merchant[window] if self.unit == "merchant" else history.pu_category[window]
        assert features.group is not None
        width = np.int64(max(int(features.group.max(initial=0)), int(group.max(initial=0))) + 1)
        bought, _ = sorted_unique_inverse(consumer.astype(np.int64) * width + group)
        keys = features.consumer.astype(np.int64) * width + features.group
        found = np.minimum(searchsorted_many(bought, keys), max(bought.size - 1, 0))
        return ((bought[found] == keys) if bought.size else np.zeros(keys.size, bool)).astype(np.int8)

    def baseline(self, features: Features, horizon: float) -> np.ndarray | None:
        """Regression baselines (None: the classification baseline is fitted from the rf score)."""
        if self.family == "predicted_value":
            spend = features.matrix[:, features.names.index("spend_window")].astype(np.float64)
            return np.log1p(spend * horizon / 180.0)
        if self.family == "next_order":
            gap = features.matrix[:, features.names.index("mean_order_gap")].astype(np.float64)
            since = features.matrix[:, features.names.index("days_since_purchase")].astype(np.float64)
            return np.clip(gap - since, 1.0, horizon + 1)
        return None

    def bands(self) -> list[tuple[str, str, float]]:
        if self.family == "next_order":
            return DAY_BANDS
        return PAIR_BANDS if self.unit != "consumer" else RANK_BANDS


def store_candidates() -> int | None:
    """How many stores a consumer is a store_propensity candidate of (their most-visited in the feature window),
    None for every store they touched: PREDICT_STORE_CANDIDATES. Scoring and tag rows grow with the pairs; a store
    seen once in six months is rarely where the next purchase goes (docs/predictions.md has the measured cost)."""
    return settings.PREDICT_STORE_CANDIDATES or None


def _select(found: Features, mask: np.ndarray) -> Features:
    return Features(
        cutoff=found.cutoff,
        names=found.names,
        matrix=found.matrix[mask],
        consumer=found.consumer[mask],
        group=None if found.group is None else found.group[mask],
        rf_score=found.rf_score[mask],
        has_purchase=found.has_purchase[mask],
    )


PREDICTIONS: dict[str, Prediction] = {
    p.family: p
    for p in (
        Prediction(
            family="purchase_propensity",
            label="Purchase propensity (next 30 days)",
            description="How likely the consumer is to buy anything on the marketplace in the next 30 days, "
            "predicted from their recent behaviour and banded by rank among active consumers.",
            kind=CLASSIFICATION,
            horizon_days=30,
            unit="consumer",
            subject="consumers active in the last 180 days",
        ),
        Prediction(
            family="store_propensity",
            label="Store purchase propensity (next 30 days)",
            description="How likely the consumer is to buy from a given store in the next 30 days. Values name "
            "the store then the band, e.g. store_propensity:acme.very_high.",
            kind=CLASSIFICATION,
            horizon_days=30,
            unit="merchant",
            subject="consumers for whom the store is among their most-visited stores of the last 180 days",
        ),
        Prediction(
            family="category_propensity",
            label="Category purchase propensity (next 30 days)",
            description=f"How likely the consumer is to buy in one of the {TOP_CATEGORIES} top categories in the "
            "next 30 days. Values name the category then the band, e.g. category_propensity:beauty.very_high.",
            kind=CLASSIFICATION,
            horizon_days=30,
            unit="category",
            subject="consumers who engaged with the category in the last 180 days",
        ),
        Prediction(
            family="churn_risk",
            label="Churn risk (next 60 days)",
            description="How likely a recent buyer is to make no purchase at all in the next 60 days.",
            kind=CLASSIFICATION,
            horizon_days=60,
            unit="consumer",
            subject="consumers who bought in the last 180 days",
        ),
        Prediction(
            family="predicted_value",
            label="Predicted 12-month value",
            description="What a recent buyer is expected to spend on the marketplace over the next 12 months "
            "(learned on 90-day spend and scaled to a year), banded by rank among recent buyers.",
            kind=REGRESSION,
            horizon_days=90,
            unit="consumer",
            subject="consumers who bought in the last 180 days",
        ),
        Prediction(
            family="next_order",
            label="Expected days to the next order",
            description="When a recent buyer is expected to place their next order.",
            kind=REGRESSION,
            horizon_days=60,
            unit="consumer",
            subject="consumers who bought in the last 180 days",
            loss="absolute_error",
        ),
    )
}
FAMILIES = tuple(PREDICTIONS)


def band_values(prediction: Prediction, groups: list[tuple[str, str]]) -> list[TagValue]:
    """Every value of the family. groups: (identifier, label) of each store or category (pair families)."""
    values = []
    bands = prediction.bands()
    if prediction.unit == "consumer":
        for value, label, bound in bands:
            values.append(TagValue(value, label, _definition(prediction, label, bound, None)))
        return values
    for identifier, group_label in groups:
        for value, label, bound in bands:
            values.append(
                TagValue(
                    f"{identifier}.{value}",
                    f"{group_label}: {label}",
                    _definition(prediction, label, bound, group_label),
                )
            )
    return values


def _definition(prediction: Prediction, label: str, bound: float, group: str | None) -> str:
    who = prediction.subject.replace("the store", group or "the store").replace("the category", group or "the category")
    if prediction.unit == "merchant" and store_candidates() is not None:
        who = who.replace("among their most-visited", f"one of their {store_candidates()} most-visited")
    elif prediction.unit == "merchant":
        who = f"consumers who interacted with {group or 'the store'} in the last 180 days"
    if prediction.family == "next_order":
        return f"Recent buyers whose next order is predicted {label.lower()}."
    most, least = {
        "purchase_propensity": ("most likely to buy in the next 30 days", "least likely to buy in the next 30 days"),
        "store_propensity": (f"most likely to buy from {group} in the next 30 days", ""),
        "category_propensity": (f"most likely to buy in {group} in the next 30 days", ""),
        "churn_risk": (
            "most likely to make no purchase in the next 60 days",
            "least likely to stop buying in the next 60 days",
        ),
        "predicted_value": (
            "with the highest predicted spend over the next 12 months",
            "with the lowest predicted spend over the next 12 months",
        ),
    }[prediction.family]
    share = label.replace("Top ", "").replace("Bottom ", "")
    if label.startswith("Bottom"):
        return f"The remaining {share} of {who}: those {least}, as predicted by a validated model."
    return f"The {share} of {who} {most}, as predicted by a validated model."


class PredictedRule(TagRule):
    """A predicted trait as a tag family: trains (once per run, shared) and bands the scores. No scores are stored."""

    rule_version = "1"
    purpose = "tagging"
    family: ClassVar[str]

    def __init__(self, prediction: Prediction, session: PredictionSession):
        self.prediction = prediction
        self.session = session
        self.family = prediction.family  # type: ignore[misc]
        self.label = prediction.label  # type: ignore[misc]
        self.description = prediction.description  # type: ignore[misc]

    def values(self, data: TaggingInput) -> list[TagValue]:
        return band_values(self.prediction, self.session.group_labels(self.prediction, data))

    def compute(self, data: TaggingInput) -> Assignments:
        scored = self.session.scored(self.prediction, data)
        values = self.values(data)
        if scored is None:
            return Assignments.empty(values, with_scores=False)
        features, scores = scored
        band = band_of(self.prediction, scores, features.group)
        keep = band >= 0
        consumers, band = features.consumer[keep], band[keep]
        if self.prediction.unit == "consumer":
            index = band
        else:
            assert features.group is not None
            codes = np.asarray(self.session.groups(self.prediction, data), dtype=np.int64)
            group = features.group[keep].astype(np.int64)
            order = np.full(int(max(codes.max(initial=0), group.max(initial=0))) + 1, -1, dtype=np.int64)
            order[codes] = np.arange(codes.size)
            index = order[group] * len(self.prediction.bands()) + band
        return Assignments(values, consumers.astype(np.int32), index.astype(np.int32), None)


def band_of(prediction: Prediction, scores: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Band index per row (-1: no band). Rank bands within each group for pair families; ties share a band."""
    bands = prediction.bands()
    if prediction.family == "next_order":
        bounds = np.array([b for _, _, b in bands])
        return np.searchsorted(bounds, np.round(scores), side="left").astype(np.int64)
    out = np.full(scores.size, -1, dtype=np.int64)
    if scores.size == 0:
        return out
    group_codes = np.zeros(scores.size, dtype=np.int64) if groups is None else groups.astype(np.int64)
    bounds = np.array([b for _, _, b in bands])
    # Share of the row's group scoring strictly higher (equal scores share a band), for every group at once:
    # rows sorted by group then score; a run of equal (group, score) ends where the rows scoring higher begin.
    # By score, then stably by group: the same order as a lexsort of the two, a third of its time for millions of
    # pairs (group codes are small integers, which numpy sorts stably by radix).
    order = np.argsort(scores)
    small = group_codes.size == 0 or (group_codes.min() >= 0 and group_codes.max() < np.iinfo(np.int16).max)
    order = order[np.argsort(group_codes[order].astype(np.int16) if small else group_codes[order], kind="stable")]
    sorted_group, sorted_score = group_codes[order], scores[order]
    group_start = np.searchsorted(sorted_group, sorted_group, side="left")
    group_end = np.searchsorted(sorted_group, sorted_group, side="right")
    new_run = np.r_[True, (sorted_group[1:] != sorted_group[:-1]) | (sorted_score[1:] != sorted_score[:-1])]
    run_end = np.r_[np.flatnonzero(new_run)[1:], scores.size]
    higher = (group_end - run_end[np.cumsum(new_run) - 1]) / (group_end - group_start)
    band = np.searchsorted(bounds, higher, side="right")
    out[order] = np.where(band < len(bands), band, -1)
    return out
