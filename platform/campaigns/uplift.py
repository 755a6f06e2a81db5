"""Persuadable audiences: uplift models trained on completed campaigns with a control group.

A campaign's deliveries are a randomised experiment: each consumer of the audience was assigned to treatment
(messaged) or control (held out), and a conversion is a purchase attributed in the report window
(campaigns/selectors.py). From those rows an uplift model estimates, for any consumer, how much more likely
they are to buy when messaged than when not: τ(x) = P(buy | x, messaged) − P(buy | x, not messaged).
Targeting the consumers with the largest τ (the persuadables) earns more incremental conversions than
targeting the most likely buyers, who often buy anyway.

Library choice: meta-learners on scikit-learn, written here. scikit-uplift (sklift) would need pandas and
matplotlib in the shared environment and has had no release since 2022; causalml pins compiled dependencies.
The two meta-learners are a few lines each on scikit-learn's estimators (Künzel et al. 2019):

- T-learner: one outcome model per arm, τ(x) = μ₁(x) − μ₀(x);
- X-learner: the T-learner's models impute each consumer's individual effect (D₁ = y − μ₀(x) for treated,
  D₀ = μ₁(x) − y for controls), one regression per arm on those, blended by the propensity e (the treatment
  share: assignment is random, so e is a constant): τ(x) = e·τ₀(x) + (1 − e)·τ₁(x). It suits the usual
  split (a small control group) better than the T-learner.

Evaluation on held-out treatment and control rows (never the training rows): the Qini curve (incremental
conversions of the top fraction by score, treatment conversions minus control conversions scaled to the
treated count), its area against random targeting (the Qini coefficient), and uplift at k (treatment rate
minus control rate within the top k).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_ARM = 50  # rows per arm below which a model is not trained (too little to learn from)
DEFAULT_LEARNER = "t"  # measured better than "x" on the planted benchmark (docs/benchmarks.md)


# --------------------------------------------------------------------------------------------- learners


def _classifier(seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=150,
        learning_rate=0.05,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        random_state=seed,
    )


def _regressor(seed: int):
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        max_iter=150,
        learning_rate=0.05,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        random_state=seed,
    )


def _probability(model, features: np.ndarray, constant: float | None) -> np.ndarray:
    if constant is not None:  # an arm where everybody (or nobody) converted
        return np.full(features.shape[0], constant)
    return model.predict_proba(features)[:, 1]


@dataclass
class UpliftModel:
    """A fitted meta-learner. `predict(features)` is τ(x) per row; `propensity(features)` the conversion
    probability when messaged (what targeting by propensity ranks by)."""

    learner: str = DEFAULT_LEARNER
    seed: int = 0
    treatment_share: float = 0.5
    _models: dict[str, Any] = field(default_factory=dict, repr=False)
    _constants: dict[str, float | None] = field(default_factory=dict, repr=False)

    def fit(self, features: np.ndarray, treatment: np.ndarray, converted: np.ndarray) -> UpliftModel:
        features = np.asarray(features, dtype=np.float64)
        treatment = np.asarray(treatment, dtype=bool)
        converted = np.asarray(converted, dtype=np.int64)
        if self.learner not in ("t", "x"):
            raise ValueError(f"learner must be 't' or 'x', got {self.learner!r}")
        n_t, n_c = int(treatment.sum()), int((~treatment).sum())
        if min(n_t, n_c) < MIN_ARM:
            raise ValueError(
                f"an uplift model needs at least {MIN_ARM} treatment and {MIN_ARM} control rows, got {n_t} and {n_c}"
            )
        self.treatment_share = n_t / (n_t + n_c)
        for arm, rows in (("treated", treatment), ("control", ~treatment)):
            y = converted[rows]
            if y.min() == y.max():
                self._constants[arm] = float(y[0])
                self._models[arm] = None
            else:
                self._constants[arm] = None
                self._models[arm] = _classifier(self.seed).fit(features[rows], y)
        if self.learner == "x":
            mu1 = _probability(self._models["treated"], features, self._constants["treated"])
            mu0 = _probability(self._models["control"], features, self._constants["control"])
            d1 = converted[treatment] - mu0[treatment]
            d0 = mu1[~treatment] - converted[~treatment]
            self._models["tau_treated"] = _regressor(self.seed).fit(features[treatment], d1)
            self._models["tau_control"] = _regressor(self.seed).fit(features[~treatment], d0)
        return self

    def propensity(self, features: np.ndarray) -> np.ndarray:
        return _probability(self._models["treated"], np.asarray(features, np.float64), self._constants["treated"])

    def predict(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        if self.learner == "t":
            mu1 = self.propensity(features)
            mu0 = _probability(self._models["control"], features, self._constants["control"])
            return mu1 - mu0
        e = self.treatment_share
        tau1 = self._models["tau_treated"].predict(features)
        tau0 = self._models["tau_control"].predict(features)
        return e * tau0 + (1.0 - e) * tau1


# ------------------------------------------------------------------------------------------- evaluation


def _ranked(scores: np.ndarray, seed: int = 0) -> np.ndarray:
    """Row order by score, best first; ties in a fixed random order (so ties do not favour either arm)."""
    rng = np.random.default_rng(seed)
    return np.lexsort((rng.random(scores.size), -np.asarray(scores, np.float64)))


def incremental_at(scores: np.ndarray, treatment: np.ndarray, converted: np.ndarray, fraction: float) -> float:
    """Estimated incremental conversions from messaging the top `fraction` of these consumers by score:
    (treatment rate − control rate) within the top, times the number of consumers in it."""
    treatment = np.asarray(treatment, bool)
    converted = np.asarray(converted, np.float64)
    order = _ranked(scores)
    top = order[: max(1, math.ceil(fraction * order.size))]
    t, c = top[treatment[top]], top[~treatment[top]]
    if t.size == 0 or c.size == 0:
        return 0.0
    return float((converted[t].mean() - converted[c].mean()) * top.size)


def uplift_at_k(scores: np.ndarray, treatment: np.ndarray, converted: np.ndarray, fraction: float = 0.2) -> float:
    """Treatment conversion rate minus control conversion rate among the top `fraction` by score."""
    n_top = max(1, math.ceil(fraction * np.asarray(scores).size))
    return incremental_at(scores, treatment, converted, fraction) / n_top


def qini_curve(scores: np.ndarray, treatment: np.ndarray, converted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, q): after targeting the first x consumers by score, q = treated conversions − control conversions
    × (treated so far / control so far). q at the end is the whole population's incremental conversions."""
    treatment = np.asarray(treatment, bool)
    converted = np.asarray(converted, np.float64)
    order = _ranked(scores)
    t = treatment[order]
    y = converted[order]
    n_t = np.cumsum(t)
    n_c = np.cumsum(~t)
    y_t = np.cumsum(y * t)
    y_c = np.cumsum(y * ~t)
    ratio = np.divide(n_t, n_c, out=np.zeros(n_t.size), where=n_c > 0)
    q = y_t - y_c * ratio
    x = np.arange(1, order.size + 1)
    return np.r_[0, x], np.r_[0.0, q]


def qini_coefficient(scores: np.ndarray, treatment: np.ndarray, converted: np.ndarray) -> float:
    """Area between the Qini curve and the random-targeting diagonal, per consumer (0 for random targeting)."""
    x, q = qini_curve(scores, treatment, converted)
    diagonal = x / x[-1] * q[-1]
    return float(np.trapezoid(q - diagonal, x) / x[-1] ** 2) if x[-1] else 0.0


@dataclass(frozen=True)
class UpliftEvaluation:
    rows: int
    qini: float
    uplift_at_20: float
    incremental_top_20: float
    incremental_top_20_by_propensity: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "rows": self.rows,
            "qini": self.qini,
            "uplift_at_20": self.uplift_at_20,
            "incremental_top_20": self.incremental_top_20,
            "incremental_top_20_by_propensity": self.incremental_top_20_by_propensity,
        }


def uplift_evaluate(
    model: UpliftModel, features: np.ndarray, treatment: np.ndarray, converted: np.ndarray
) -> UpliftEvaluation:
    """Held-out rows: Qini coefficient, uplift@20 %, and incremental conversions of the top 20 % by uplift and
    by propensity (the comparison that says whether targeting persuadables pays)."""
    tau = model.predict(features)
    propensity = model.propensity(features)
    return UpliftEvaluation(
        rows=int(np.asarray(treatment).size),
        qini=qini_coefficient(tau, treatment, converted),
        uplift_at_20=uplift_at_k(tau, treatment, converted, 0.2),
        incremental_top_20=incremental_at(tau, treatment, converted, 0.2),
        incremental_top_20_by_propensity=incremental_at(propensity, treatment, converted, 0.2),
    )


def split_holdout(n: int, *, fraction: float = 0.3, seed: int = 0) -> np.ndarray:
    """Boolean mask of held-out rows (a random `fraction`), for evaluating on rows the model never saw."""
    rng = np.random.default_rng(seed)
    return rng.random(n) < fraction


# ----------------------------------------------------------------------------------------- planted data


@dataclass(frozen=True)
class PlantedCampaign:
    features: np.ndarray
    treatment: np.ndarray
    converted: np.ndarray
    true_uplift: np.ndarray
    true_propensity: np.ndarray  # conversion probability when messaged


def planted_campaign(*, n: int = 40_000, treatment_share: float = 0.8, seed: int = 7) -> PlantedCampaign:
    """A campaign with a planted heterogeneous effect, for tests and the benchmark.

    Four kinds of consumer, told apart by their features: loyal buyers (high base rate, a small effect: they
    mostly buy anyway), persuadables (low base rate, large effect), lost causes (low, none) and sleeping dogs (moderate
    base rate, a negative effect). Propensity targeting picks the loyal buyers; uplift targeting should pick
    the persuadables.
    """
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 6))
    loyal = features[:, 0] > 0.8
    persuadable = ~loyal & (features[:, 1] > 0.6)
    sleeping = ~loyal & ~persuadable & (features[:, 2] > 1.2)
    base = np.where(loyal, 0.30, np.where(sleeping, 0.10, 0.03)) * np.exp(0.1 * features[:, 3])
    effect = np.where(
        persuadable, 0.10 + 0.04 * np.tanh(features[:, 4]), np.where(sleeping, -0.05, np.where(loyal, 0.02, 0.0))
    )
    base = np.clip(base, 0, 1)
    treated_rate = np.clip(base + effect, 0, 1)
    treatment = rng.random(n) < treatment_share
    rate = np.where(treatment, treated_rate, base)
    converted = (rng.random(n) < rate).astype(np.int64)
    return PlantedCampaign(features, treatment, converted, treated_rate - base, treated_rate)
