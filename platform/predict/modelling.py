"""Fitting, choosing and measuring the models behind the predicted traits.

Candidates: scikit-learn's HistGradientBoosting (classifier or regressor) against
a logistic (classification) or ridge (regression) model on standardised
features. The validation window's units are split in two by a fixed seed: one
half chooses between the candidates, the other half measures the chosen model
and the baseline, so the reported figures are not the ones the choice was made on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import average_precision_score, brier_score_loss, mean_absolute_error, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

CLASSIFICATION = "classification"
REGRESSION = "regression"

# Publication rule: what "beats its baseline" means (docs/predictions.md).
MIN_AUC_GAIN = 0.01  # validation ROC-AUC at least this much above the recency/frequency baseline's
MIN_AUC = 0.55  # and clearly better than chance
MIN_MAE_GAIN = 0.02  # regression: validation MAE at least 2 % below the baseline's
MIN_CLASS_SUPPORT = 20  # positives and negatives each, in training and in validation
MIN_REGRESSION_SUPPORT = 50

IMPORTANCE_ROWS = 3_000
PREDICT_CHUNK_ROWS = 500_000
CALIBRATION_BINS = 10
PSI_BINS = 10


def candidates(kind: str, *, seed: int, loss: str = "squared_error") -> dict[str, Any]:
    if kind == CLASSIFICATION:
        return {
            "hist_gradient_boosting": HistGradientBoostingClassifier(
                max_iter=150, learning_rate=0.08, max_leaf_nodes=31, l2_regularization=1.0, random_state=seed
            ),
            "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=1.0)),
        }
    return {
        "hist_gradient_boosting": HistGradientBoostingRegressor(
            loss=loss, max_iter=150, learning_rate=0.08, max_leaf_nodes=31, l2_regularization=1.0, random_state=seed
        ),
        "ridge_regression": make_pipeline(StandardScaler(), Ridge(alpha=1.0)),
    }


def predict(model: Any, kind: str, matrix: np.ndarray) -> np.ndarray:
    if matrix.shape[0] == 0:
        return np.empty(0)
    if kind == CLASSIFICATION:
        return model.predict_proba(matrix)[:, 1]
    return model.predict(matrix)


def linear_input(matrix: np.ndarray) -> np.ndarray:
    """Counts and amounts are heavy-tailed: the linear candidates see them on a log scale."""
    return np.sign(matrix) * np.log1p(np.abs(matrix))


class Fitted:
    """A chosen candidate, fitted: the linear ones are given log-scaled inputs."""

    def __init__(self, name: str, model: Any, kind: str):
        self.name, self.model, self.kind = name, model, kind

    def _input(self, matrix: np.ndarray) -> np.ndarray:
        return matrix if self.name == "hist_gradient_boosting" else linear_input(matrix)

    def fit(self, matrix: np.ndarray, target: np.ndarray) -> Fitted:
        self.model.fit(self._input(matrix), target)
        return self

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        # In chunks: scikit-learn copies its input to float64, which for the 10M+ rows of a pair family at a
        # million consumers would double the float32 matrix's gigabytes for nothing.
        if matrix.shape[0] <= PREDICT_CHUNK_ROWS:
            return predict(self.model, self.kind, self._input(matrix))
        return np.concatenate(
            [
                predict(self.model, self.kind, self._input(matrix[start : start + PREDICT_CHUNK_ROWS]))
                for start in range(0, matrix.shape[0], PREDICT_CHUNK_ROWS)
            ]
        )


def subsample(size: int, limit: int, seed: int) -> np.ndarray:
    if size <= limit:
        return np.arange(size)
    return np.sort(np.random.default_rng(seed).choice(size, limit, replace=False))


def stratified_sample(y: np.ndarray, limit: int, seed: int, *, kind: str) -> np.ndarray:
    """Row positions of at most `limit` rows, sorted. Classification keeps each class's share of the rows (each
    class sampled at the same rate), so a positive rate, a Brier score or a PR-AUC on the sample estimates the
    whole window's; regression samples uniformly."""
    if y.size <= limit:
        return np.arange(y.size)
    rng = np.random.default_rng(seed)
    if kind != CLASSIFICATION:
        return np.sort(rng.choice(y.size, limit, replace=False))
    chosen = []
    positives = np.flatnonzero(y > 0)
    negatives = np.flatnonzero(y <= 0)
    take_positive = round(limit * positives.size / y.size)
    for rows, take in ((positives, take_positive), (negatives, limit - take_positive)):
        chosen.append(rng.choice(rows, min(take, rows.size), replace=False))
    return np.sort(np.concatenate(chosen))


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    if y.size == 0 or y.min() == y.max():
        return {}
    return {
        "roc_auc": round(float(roc_auc_score(y, p)), 4),
        "pr_auc": round(float(average_precision_score(y, p)), 4),
        "brier": round(float(brier_score_loss(y, np.clip(p, 0, 1))), 4),
        "positive_rate": round(float(y.mean()), 4),
    }


def regression_metrics(y: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    if y.size == 0:
        return {}
    return {"mae": round(float(mean_absolute_error(y, prediction)), 4), "mean": round(float(y.mean()), 4)}


def calibration_bins(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict[str, float]]:
    """Reliability table: per bin of predicted probability, how many, mean prediction, observed rate."""
    out = []
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        out.append(
            {
                "low": round(float(edges[b]), 2),
                "high": round(float(edges[b + 1]), 2),
                "count": int(mask.sum()),
                "predicted": round(float(p[mask].mean()), 4),
                "observed": round(float(y[mask].mean()), 4),
            }
        )
    return out


def regression_calibration(y: np.ndarray, prediction: np.ndarray, bins: int = 5) -> list[dict[str, float]]:
    """Per quintile of prediction: how many, mean predicted, mean observed."""
    out: list[dict[str, float]] = []
    if y.size == 0:
        return out
    edges = np.unique(np.quantile(prediction, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, prediction, side="right") - 1, 0, max(edges.size - 2, 0))
    for b in range(max(edges.size - 1, 1)):
        mask = which == b
        if not mask.any():
            continue
        out.append(
            {
                "low": round(float(edges[b]), 2),
                "high": round(float(edges[min(b + 1, edges.size - 1)]), 2),
                "count": int(mask.sum()),
                "predicted": round(float(prediction[mask].mean()), 4),
                "observed": round(float(y[mask].mean()), 4),
            }
        )
    return out


def importance(fitted: Fitted, matrix: np.ndarray, y: np.ndarray, names: list[str], seed: int) -> list[dict]:
    """Permutation importance on (a sample of) the validation rows: how much the metric drops without each feature."""
    if matrix.shape[0] < 10 or (fitted.kind == CLASSIFICATION and y.min() == y.max()):
        return []
    rows = subsample(matrix.shape[0], IMPORTANCE_ROWS, seed)
    scoring = "roc_auc" if fitted.kind == CLASSIFICATION else "neg_mean_absolute_error"

    class _Estimator:  # permutation_importance calls predict/predict_proba on the raw matrix
        def fit(self, *args):  # pragma: no cover - never refitted
            return self

        def predict(self, m):
            return fitted.predict(m)

        def predict_proba(self, m):
            p = fitted.predict(m)
            return np.column_stack([1 - p, p])

        def decision_function(self, m):
            return fitted.predict(m)

    estimator = _Estimator()
    result = permutation_importance(
        estimator, matrix[rows], y[rows], scoring=_scorer(scoring), n_repeats=3, random_state=seed
    )
    ranked = sorted(
        zip(names, result.importances_mean.tolist(), result.importances_std.tolist(), strict=True),
        key=lambda item: -item[1],
    )
    return [{"feature": n, "importance": round(m, 4), "std": round(s, 4)} for n, m, s in ranked]


def _scorer(name: str):
    def score(estimator, matrix, y):
        p = estimator.predict(matrix)
        if name == "roc_auc":
            return roc_auc_score(y, p)
        return -mean_absolute_error(y, p)

    return score


def score_bins(scores: np.ndarray, bins: int = PSI_BINS) -> dict[str, list[float]]:
    """The score distribution of a run as decile edges and shares, kept on the card for the next run's drift."""
    if scores.size == 0:
        return {"edges": [], "shares": []}
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, bins + 1))[1:-1])
    counts = np.bincount(np.searchsorted(edges, scores, side="right"), minlength=edges.size + 1)
    return {"edges": [float(e) for e in edges], "shares": [round(float(c / scores.size), 6) for c in counts]}


def psi(previous: dict | None, scores: np.ndarray) -> float | None:
    """Population stability index of this run's scores against the previous run's bins (None without one)."""
    if not previous or not previous.get("shares") or scores.size == 0:
        return None
    edges = np.asarray(previous["edges"], dtype=np.float64)
    expected = np.asarray(previous["shares"], dtype=np.float64)
    actual = np.bincount(np.searchsorted(edges, scores, side="right"), minlength=edges.size + 1) / scores.size
    expected = np.clip(expected, 1e-4, None)
    actual = np.clip(actual, 1e-4, None)
    return round(float(np.sum((actual - expected) * np.log(actual / expected))), 4)


@dataclass
class Evaluation:
    """What training found: the chosen model (refitted on the latest window for scoring) and its card's figures."""

    algorithm: str = ""
    candidate_scores: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    calibration: list[dict] = field(default_factory=list)
    importance: list[dict] = field(default_factory=list)
    train_rows: int = 0
    validation_rows: int = 0
    published: bool = False
    reason: str = ""
    scorer: Fitted | None = None


def halves(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split validation rows in two by a fixed seed: (choose, report)."""
    mask = np.random.default_rng(seed).random(size) < 0.5
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def choose_and_measure(
    *,
    kind: str,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    baseline_prediction: np.ndarray,
    names: list[str],
    seed: int,
    loss: str = "squared_error",
    max_rows: int | None = None,
) -> Evaluation:
    """Fit the candidates on the training window, choose on half the validation window, report on the other half.

    `baseline_prediction` is the baseline's prediction for every validation row (probability or value). Each
    window is first reduced to a stratified sample of at most `max_rows` rows (PREDICT_TRAIN_MAX_ROWS).
    """
    x_train, y_train = train
    x_val, y_val = validation
    found = Evaluation(train_rows=int(y_train.size), validation_rows=int(y_val.size))
    refusal = _support_refusal(kind, y_train, y_val)
    if refusal:
        found.reason = refusal
        return found
    # A bounded stratified sample of each window (PREDICT_TRAIN_MAX_ROWS; docs/predictions.md): the fits, the
    # choice and the reported figures use it; scoring still covers every unit.
    limit = max_rows if max_rows is not None else settings.PREDICT_TRAIN_MAX_ROWS
    rows = stratified_sample(y_train, limit, seed, kind=kind)
    sampled = stratified_sample(y_val, limit, seed + 1, kind=kind)
    x_val, y_val, baseline_prediction = x_val[sampled], y_val[sampled], baseline_prediction[sampled]
    choose, report = halves(y_val.size, seed)
    fitted: dict[str, Fitted] = {}
    for name, model in candidates(kind, seed=seed, loss=loss).items():
        fitted[name] = Fitted(name, model, kind).fit(x_train[rows], y_train[rows])
        prediction = fitted[name].predict(x_val[choose])
        if kind == CLASSIFICATION:
            value = classification_metrics(y_val[choose], prediction).get("roc_auc", 0.5)
        else:
            value = -regression_metrics(y_val[choose], prediction)["mae"]
        found.candidate_scores[name] = round(float(value), 4)
    best = max(found.candidate_scores, key=lambda n: (found.candidate_scores[n], n == "hist_gradient_boosting"))
    found.algorithm = best
    chosen = fitted[best]
    prediction = chosen.predict(x_val[report])
    if kind == CLASSIFICATION:
        found.metrics = {**classification_metrics(y_val[report], prediction), "rows": int(report.size)}
        found.baseline = classification_metrics(y_val[report], baseline_prediction[report])
        found.calibration = calibration_bins(y_val[report], prediction)
        gain = found.metrics.get("roc_auc", 0.5) - found.baseline.get("roc_auc", 0.5)
        auc = found.metrics.get("roc_auc", 0.5)
        if gain < MIN_AUC_GAIN or auc < MIN_AUC:
            found.reason = (
                f"Not published: validation ROC-AUC {auc:.3f} against the recency/frequency baseline's "
                f"{found.baseline.get('roc_auc', 0.5):.3f}; publication needs at least {MIN_AUC:.2f} and "
                f"{MIN_AUC_GAIN:.2f} above the baseline."
            )
        else:
            found.published = True
            found.reason = f"Published: validation ROC-AUC {auc:.3f}, {gain:+.3f} against the baseline."
    else:
        found.metrics = {**regression_metrics(y_val[report], prediction), "rows": int(report.size)}
        found.baseline = regression_metrics(y_val[report], baseline_prediction[report])
        found.calibration = regression_calibration(y_val[report], prediction)
        mae, base = found.metrics["mae"], found.baseline["mae"]
        if mae > base * (1 - MIN_MAE_GAIN):
            found.reason = (
                f"Not published: validation MAE {mae:.3f} against the baseline's {base:.3f}; publication needs "
                f"at least {MIN_MAE_GAIN:.0%} lower."
            )
        else:
            found.published = True
            found.reason = f"Published: validation MAE {mae:.3f} against the baseline's {base:.3f}."
    found.importance = importance(chosen, x_val[report], y_val[report], names, seed)
    if found.published:
        # Score with the same algorithm refitted on the latest labelled window (the validation window).
        found.scorer = Fitted(best, candidates(kind, seed=seed, loss=loss)[best], kind).fit(x_val, y_val)
    return found


def _support_refusal(kind: str, y_train: np.ndarray, y_val: np.ndarray) -> str:
    if kind == CLASSIFICATION:
        counts = [int(y.sum()) for y in (y_train, y_val)] + [int((1 - y).sum()) for y in (y_train, y_val)]
        if min(counts) < MIN_CLASS_SUPPORT:
            return (
                f"Not published: too little data to validate (training {counts[0]} positive / {counts[2]} negative, "
                f"validation {counts[1]} / {counts[3]}; at least {MIN_CLASS_SUPPORT} of each needed)."
            )
        return ""
    if min(y_train.size, y_val.size) < MIN_REGRESSION_SUPPORT:
        return (
            f"Not published: too little data to validate ({y_train.size} training and {y_val.size} validation rows; "
            f"at least {MIN_REGRESSION_SUPPORT} of each needed)."
        )
    return ""


def baseline_classifier(train_score: np.ndarray, y_train: np.ndarray, validation_score: np.ndarray) -> np.ndarray:
    """The baseline as a probability: a one-feature logistic fit of the recency/frequency score."""
    if y_train.min() == y_train.max():
        return np.full(validation_score.size, float(y_train.mean()))
    model = LogisticRegression().fit(train_score.reshape(-1, 1), y_train)
    return model.predict_proba(validation_score.reshape(-1, 1))[:, 1]
