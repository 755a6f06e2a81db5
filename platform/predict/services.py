"""Write operations of the predicted traits: train with temporal validation, write model cards, band the scores
into tag families through the tagging machinery, record fairness and audit it all."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import sklearn.ensemble  # noqa: F401  (loads OpenMP, so threadpool_limits reaches it)
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from threadpoolctl import threadpool_limits

from merchants.models import Merchant
from privacy.audit import audit_record
from privacy.models import Purpose
from privacy.services import ProcessingBasis, processing_basis_require
from tags.arrays import sorted_unique
from tags.bitmaps import bitmaps_load, tag_key
from tags.inputs import TaggingInput
from tags.rules import TagRule
from tags.selectors import tag_catalogue_rows
from tags.services import tags_compute

from .fairness import Population, population_load, spread
from .families import FAMILIES, MAX_STORES, MIN_GROUP_BUYERS, PREDICTIONS, TOP_CATEGORIES, PredictedRule, Prediction
from .features import FEATURE_WINDOW_DAYS, Features, History, NotEnoughHistory
from .modelling import CLASSIFICATION, Evaluation, baseline_classifier, choose_and_measure, psi, score_bins
from .models import ModelCard

logger = logging.getLogger("dmp.predict")

# The purpose predictions run under: the register's `tagging` purpose (they are tags, derived the same way,
# and need the same basis: the Business Improvement Exception or consent). docs/predictions.md.
PURPOSE = Purpose.TAGGING


class UnknownPrediction(ValueError):
    def __init__(self, family: str):
        self.family = family
        super().__init__(f"Unknown predicted family {family!r}; known: {', '.join(FAMILIES)}.")


@dataclass
class PredictionReport:
    run_id: int
    as_of: datetime
    cards: dict[str, int] = field(default_factory=dict)  # family -> ModelCard id
    published: dict[str, bool] = field(default_factory=dict)
    scored: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


class PredictionSession:
    """One run's shared state: the history (loaded once from the tagging run's input), groups, trained models."""

    def __init__(self, *, basis: ProcessingBasis, seed: int = 0):
        self.basis = basis
        self.seed = seed
        self.history: History | None = None
        self.cards: dict[str, ModelCard] = {}
        self.results: dict[str, tuple[Features, np.ndarray] | None] = {}
        self.seconds: dict[str, float] = {}
        self._groups: dict[str, list[int]] = {}
        self._features: dict = {}  # consumer features per cut-off, shared by the families
        self.as_of: datetime | None = None

    def _history(self, data: TaggingInput) -> History:
        if self.history is None:
            # Loaded first, so their own timings (the run's "inputs") stay apart from the history's arrays.
            data.events, data.purchases, data.products, data.profile("age_range")
            start = time.perf_counter()
            self.history = History.from_input(data)
            self.as_of = data.as_of
            self.seconds["history"] = round(time.perf_counter() - start, 3)
        return self.history

    def groups(self, prediction: Prediction, data: TaggingInput) -> list[int]:
        """Group codes modelled: stores with enough recent buyers (most first), or the top categories."""
        if prediction.unit == "consumer":
            return []
        if prediction.unit not in self._groups:
            history = self._history(data)
            recent = history.pu_t > -FEATURE_WINDOW_DAYS
            group = history.pu_merchant if prediction.unit == "merchant" else history.pu_category
            keep = recent & (group >= 0)
            width = np.int64(int(group.max(initial=0)) + 1)
            pairs = sorted_unique(history.pu_consumer[keep].astype(np.int64) * width + group[keep])
            buyers = np.bincount((pairs % width).astype(np.int64), minlength=int(width))
            order = np.argsort(-buyers, kind="stable")
            limit = MAX_STORES if prediction.unit == "merchant" else TOP_CATEGORIES
            self._groups[prediction.unit] = [int(g) for g in order[:limit] if buyers[g] >= MIN_GROUP_BUYERS]
        return self._groups[prediction.unit]

    def group_labels(self, prediction: Prediction, data: TaggingInput) -> list[tuple[str, str]]:
        codes = self.groups(prediction, data)
        history = self._history(data)
        if prediction.unit == "merchant":
            ids = [history.merchant_ids[c] for c in codes]
            merchants = {m.pk: m for m in Merchant.objects.filter(pk__in=ids)}
            return [(merchants[i].slug, merchants[i].name) for i in ids if i in merchants]
        if prediction.unit == "category":
            labels = data.products.category_labels
            return [(history.categories[c], labels[c]) for c in codes]
        return []

    def scored(self, prediction: Prediction, data: TaggingInput) -> tuple[Features, np.ndarray] | None:
        """Train, validate, write the card, and (when published) score everyone at as_of. None: not published."""
        if prediction.family not in self.results:
            start = time.perf_counter()
            # One OpenMP/BLAS thread per process (BLAS_THREADS): gradient boosting on a busy two-core machine
            # with every core was many times slower. Only pools of libraries already loaded are reached.
            with threadpool_limits(limits=settings.BLAS_THREADS):
                self.results[prediction.family] = self._train(prediction, data)
            self.seconds[prediction.family] = round(time.perf_counter() - start, 3)
        return self.results[prediction.family]

    def _train(self, prediction: Prediction, data: TaggingInput) -> tuple[Features, np.ndarray] | None:
        history = self._history(data)
        groups = self.groups(prediction, data)
        horizon = prediction.horizon_days
        train_cut, validation_cut = -2 * horizon, -horizon
        start = time.perf_counter()
        features_before = self.seconds.get("features", 0.0)
        evaluation, names = evaluate(
            prediction,
            history,
            groups,
            train_cut,
            validation_cut,
            self.seed,
            cache=self._features,
            timings=self.seconds,
        )
        spent_on_features = self.seconds.get("features", 0.0) - features_before
        self.seconds[f"{prediction.family}:train"] = round(time.perf_counter() - start - spent_on_features, 3)
        scores: np.ndarray | None = None
        features: Features | None = None
        if evaluation.published and evaluation.scorer is not None:
            start = time.perf_counter()
            features = prediction.features(history, 0.0, groups, self._features)
            _add_seconds(self.seconds, "features", start)
            start = time.perf_counter()
            scores = evaluation.scorer.predict(features.matrix)
            self.seconds[f"{prediction.family}:score"] = round(time.perf_counter() - start, 3)
        self.cards[prediction.family] = card_write(
            prediction=prediction,
            evaluation=evaluation,
            names=names,
            as_of=data.as_of,
            groups=self.group_labels(prediction, data),
            scores=scores,
            basis=self.basis,
        )
        if features is None or scores is None:
            return None
        return features, scores


def evaluate(
    prediction: Prediction,
    history: History,
    groups: list[int],
    train_cut: float,
    validation_cut: float,
    seed: int,
    cache: dict | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[Evaluation, list[str]]:
    """Train at train_cut, validate at validation_cut (features strictly up to each cut, labels strictly after).

    `timings`, when given, gets the seconds spent building features and labels added under "features"."""
    horizon = prediction.horizon_days
    started = time.perf_counter()
    try:
        if prediction.unit != "consumer" and not groups:
            raise NotEnoughHistory("no store or category has enough buyers to model")
        if train_cut - FEATURE_WINDOW_DAYS < history.start - 1e-6:
            raise NotEnoughHistory("the events kept do not reach back far enough for a training window")
        cache = {} if cache is None else cache
        # The training and validation windows are built for a random sample of the consumers (all of them up to
        # CONSUMER_SAMPLE_FACTOR x PREDICT_TRAIN_MAX_ROWS): the fits use a bounded sample of rows anyway.
        sample_cache = cache.setdefault("consumer sample", {})
        if "history" not in sample_cache:
            keep = training_consumers(history.consumers, seed)
            sample_cache["history"] = history if keep is None else history.for_consumers(keep)
        sample = sample_cache["history"]
        train = prediction.features(sample, train_cut, groups, sample_cache, population=history)
        y_train = prediction.labels(sample, train, train_cut)
        validation = prediction.features(sample, validation_cut, groups, sample_cache, population=history)
        y_val = prediction.labels(sample, validation, validation_cut)
    except NotEnoughHistory as exc:
        return Evaluation(reason=f"Not published: {exc}."), []
    finally:
        if timings is not None:
            _add_seconds(timings, "features", started)
    if prediction.kind == CLASSIFICATION:
        if y_train.size and y_train.min() != y_train.max():
            baseline = baseline_classifier(train.rf_score, y_train, validation.rf_score)
        else:
            baseline = np.full(y_val.size, 0.5)
    else:
        heuristic = prediction.baseline(validation, horizon)
        assert heuristic is not None
        constant = np.full(y_val.size, float(np.median(y_train)) if y_train.size else 0.0)
        # The simple baseline is whichever of the recency/frequency heuristic and the training median does
        # better on validation: a model has to beat both.
        heuristic_error = np.abs(heuristic - y_val).mean() if y_val.size else 0.0
        constant_error = np.abs(constant - y_val).mean() if y_val.size else 0.0
        baseline = heuristic if heuristic_error <= constant_error else constant
    evaluation = choose_and_measure(
        kind=prediction.kind,
        train=(train.matrix, y_train.astype(np.float64) if prediction.kind != CLASSIFICATION else y_train),
        validation=(validation.matrix, y_val.astype(np.float64) if prediction.kind != CLASSIFICATION else y_val),
        baseline_prediction=baseline,
        names=train.names,
        seed=seed,
        loss=prediction.loss,
    )
    return evaluation, train.names


# Consumers whose training and validation rows are built, as a multiple of PREDICT_TRAIN_MAX_ROWS: enough that the
# buyers-only families and the stratified row samples still have their rows to choose from.
CONSUMER_SAMPLE_FACTOR = 4


def training_consumers(consumers: int, seed: int) -> np.ndarray | None:
    """A seeded uniform sample of consumer positions (bool per consumer), or None when everyone fits."""
    limit = CONSUMER_SAMPLE_FACTOR * settings.PREDICT_TRAIN_MAX_ROWS
    if consumers <= limit:
        return None
    keep = np.zeros(consumers, dtype=bool)
    keep[np.random.default_rng(seed).choice(consumers, limit, replace=False)] = True
    return keep


def _add_seconds(timings: dict[str, float], key: str, started: float) -> None:
    timings[key] = round(timings.get(key, 0.0) + time.perf_counter() - started, 3)


def card_write(
    *,
    prediction: Prediction,
    evaluation: Evaluation,
    names: list[str],
    as_of: datetime,
    groups: list[tuple[str, str]],
    scores: np.ndarray | None,
    basis: ProcessingBasis,
) -> ModelCard:
    previous = ModelCard.objects.filter(family=prediction.family, published=True).order_by("-trained_at").first()
    bins = score_bins(scores) if scores is not None else {}
    horizon = prediction.horizon_days
    return ModelCard.objects.create(
        family=prediction.family,
        kind=prediction.kind,
        algorithm=evaluation.algorithm,
        candidate_scores=evaluation.candidate_scores,
        trained_at=timezone.now(),
        as_of=as_of,
        train_cutoff=as_of - timedelta(days=2 * horizon),
        validation_cutoff=as_of - timedelta(days=horizon),
        horizon_days=horizon,
        feature_window_days=FEATURE_WINDOW_DAYS,
        features=names,
        groups=[identifier for identifier, _ in groups],
        train_rows=evaluation.train_rows,
        validation_rows=evaluation.validation_rows,
        metrics=evaluation.metrics,
        baseline_metrics=evaluation.baseline,
        calibration=evaluation.calibration,
        importance=evaluation.importance,
        score_bins=bins,
        psi=psi(previous.score_bins if previous else None, scores) if scores is not None else None,
        scored=0 if scores is None else int(scores.size),
        published=evaluation.published,
        reason=evaluation.reason,
        activity_id=basis.activity_id,
    )


Progress = Callable[[str], None]


def predictions_compute(
    *,
    actor: str,
    as_of: datetime | None = None,
    families: list[str] | None = None,
    progress: Progress | None = None,
    seed: int = 0,
) -> PredictionReport:
    """Train every predicted family (or those named), write a model card each, and replace the families' tags.

    Refuses without an approved tagging activity (ProcessingNotPermitted, nothing written). A model that does not
    beat its baseline on validation is not published: its card says why and its family is emptied (nobody holds
    a band of an unvalidated model). Fairness spreads of every band are stored on the cards, and the run is
    audited (`predict.computed`), besides the tagging run's own `tags.computed` entry.
    """
    for family in families or []:
        if family not in PREDICTIONS:
            raise UnknownPrediction(family)
    basis = processing_basis_require(purpose=PURPOSE)
    session = PredictionSession(basis=basis, seed=seed)
    chosen = [PREDICTIONS[f] for f in (families or FAMILIES)]
    rules: list[TagRule] = [PredictedRule(prediction, session) for prediction in chosen]
    tagging = tags_compute(rules=rules, actor=actor, as_of=as_of, progress=progress)
    report = PredictionReport(run_id=tagging.run_id, as_of=tagging.as_of, seconds=dict(session.seconds))
    for name, seconds in tagging.load_seconds.items():
        report.seconds[f"inputs:{name}"] = seconds
    for family_report in tagging.families:
        report.seconds[f"{family_report.family}:write"] = family_report.write_seconds
    started = time.perf_counter()
    population = population_load() if any(card.published for card in session.cards.values()) else None
    with transaction.atomic():
        for family, card in session.cards.items():
            if card.published:
                card.fairness = fairness_by_band(family, population=population)
                card.save(update_fields=["fairness"])
            report.cards[family] = card.pk
            report.published[family] = card.published
            report.scored[family] = card.scored
        report.seconds["fairness"] = round(time.perf_counter() - started, 3)
        audit_record(
            actor=actor,
            action="predict.computed",
            purpose=basis.purpose,
            legal_basis=basis.legal_basis,
            activity_id=basis.activity_id,
            object_type="TaggingRun",
            object_id=tagging.run_id,
            counts={family: card.scored for family, card in session.cards.items()},
            details={
                family: {"card": card.pk, "published": card.published, "algorithm": card.algorithm}
                for family, card in session.cards.items()
            },
        )
    logger.info("predict.computed", extra={"fields": {"run": tagging.run_id, "published": report.published}})
    return report


def fairness_by_band(family: str, *, population: Population | None = None) -> dict[str, dict]:
    """For every value of the family with members: its spread over age ranges and countries."""
    rows = [row for row in tag_catalogue_rows(families=[family]) if row[1] == family]
    bitmaps = bitmaps_load([tag_key(tag_id) for tag_id, _, _ in rows])
    population = population or population_load()
    out = {}
    for tag_id, _, value in sorted(rows, key=lambda r: r[2]):
        members = bitmaps.get(tag_key(tag_id))
        if members:
            out[value] = spread(members, population=population).as_dict()
    return out
