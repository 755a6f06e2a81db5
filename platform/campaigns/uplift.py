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

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def _model_threads() -> Iterator[None]:
    """Fit and score with BLAS_THREADS OpenMP threads (default 1). Gradient boosting on a few hundred rows spread
    over every core spends its time waiting at thread barriers when the machine is busy: a 600-row fit took 14 s
    with both cores and 0.4 s with one (docs/benchmarks.md). The web process is not pinned as workers are
    (config.celery), so the pin is here. threadpool_limits only reaches pools of libraries already loaded."""
    import sklearn.ensemble  # noqa: F401  (loads OpenMP, so the limit reaches it)
    from django.conf import settings
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=settings.BLAS_THREADS):
        yield


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
        with _model_threads():
            self._fit(features, treatment, converted)
        return self

    def _fit(self, features: np.ndarray, treatment: np.ndarray, converted: np.ndarray) -> None:
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

    def propensity(self, features: np.ndarray) -> np.ndarray:
        with _model_threads():
            return _probability(self._models["treated"], np.asarray(features, np.float64), self._constants["treated"])

    def predict(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        with _model_threads():
            if self.learner == "t":
                mu1 = _probability(self._models["treated"], features, self._constants["treated"])
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
    gap = q - diagonal
    area = float(((gap[1:] + gap[:-1]) / 2 * np.diff(x)).sum())  # the trapezoid rule (numpy >= 1.26 has no trapezoid)
    return area / float(x[-1]) ** 2 if x[-1] else 0.0


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


# ------------------------------------------------------------------------------------- marketplace data

FEATURES = (
    "events",
    "purchases",
    "merchant_events",
    "merchant_views",
    "merchant_carts",
    "merchant_purchases",
    "days_since_event",
    "days_since_merchant_purchase",
)
_NEVER_DAYS = 365.0
_IN_CHUNK = 900  # SQLite's bound-parameter limit; fine everywhere


def consumer_features(*, consumer_ids: Any, merchant_id: int, as_of: Any) -> np.ndarray:
    """One row per consumer id (in the given order): behaviour before `as_of`, overall and at this merchant
    (FEATURES). Consumers without events get zeros and the 'never' recency (365 days)."""
    from django.db.models import Count, Max, Q

    from consumers.models import Event, EventType

    ids = [int(c) for c in np.asarray(consumer_ids, dtype=np.int64).tolist()]
    position = {cid: i for i, cid in enumerate(ids)}
    out = np.zeros((len(ids), len(FEATURES)), dtype=np.float64)
    out[:, 6:] = _NEVER_DAYS
    here = Q(merchant_id=merchant_id)
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        rows = (
            Event.objects.filter(consumer_id__in=chunk, occurred_at__lt=as_of)
            .values("consumer_id")
            .annotate(
                events=Count("id"),
                purchases=Count("id", filter=Q(event_type=EventType.PURCHASE)),
                merchant_events=Count("id", filter=here),
                merchant_views=Count("id", filter=here & Q(event_type=EventType.VIEW)),
                merchant_carts=Count("id", filter=here & Q(event_type=EventType.CART)),
                merchant_purchases=Count("id", filter=here & Q(event_type=EventType.PURCHASE)),
                last_event=Max("occurred_at"),
                last_purchase=Max("occurred_at", filter=here & Q(event_type=EventType.PURCHASE)),
            )
            .order_by()
        )
        for typed_row in rows:
            row: dict[str, Any] = dict(typed_row)
            i = position[row["consumer_id"]]
            out[i, :6] = [row[name] for name in FEATURES[:6]]
            for column, key in ((6, "last_event"), (7, "last_purchase")):
                if row[key] is not None:
                    out[i, column] = min(_NEVER_DAYS, (as_of - row[key]).total_seconds() / 86_400)
    return out


@dataclass(frozen=True)
class CampaignRows:
    """Deliveries of completed campaigns: consumer, arm, converted (attributed in the report window) and the
    features as of each campaign's start."""

    consumer_ids: np.ndarray
    treatment: np.ndarray
    converted: np.ndarray
    features: np.ndarray
    campaign_ids: tuple[int, ...]


def campaign_rows(*, campaign_ids: list[int], merchant_id: int) -> CampaignRows:
    """Training rows from the merchant's completed campaigns with a control group. Conversions are those of
    the campaign report (campaigns.selectors), so the model learns what the report measures."""
    from django.db.models import BooleanField, ExpressionWrapper

    from .models import Campaign, CampaignStatus, Group
    from .selectors import delivery_rows

    consumers, arms, outcomes, blocks, used = [], [], [], [], []
    campaigns = Campaign.objects.filter(
        pk__in=campaign_ids, merchant_id=merchant_id, status=CampaignStatus.COMPLETED
    ).order_by("pk")
    for campaign in campaigns:
        rows, converted = delivery_rows(campaign)
        # One pass over the deliveries, reading only the arm and whether it converted (not the report's values).
        deliveries = list(
            rows.annotate(is_converted=ExpressionWrapper(converted, output_field=BooleanField()))
            .order_by("pk")
            .values_list("consumer_id", "group", "is_converted")
        )
        if not any(group == Group.CONTROL for _, group, _ in deliveries):
            continue
        ids = np.array([c for c, _, _ in deliveries], dtype=np.int64)
        consumers.append(ids)
        arms.append(np.array([g == Group.TREATMENT for _, g, _ in deliveries], dtype=bool))
        outcomes.append(np.array([bool(y) for _, _, y in deliveries], dtype=np.int64))
        as_of = campaign.started_at or campaign.launched_at or campaign.created_at
        blocks.append(consumer_features(consumer_ids=ids, merchant_id=merchant_id, as_of=as_of))
        used.append(campaign.pk)
    if not used:
        empty = np.empty(0, np.int64)
        return CampaignRows(empty, empty.astype(bool), empty, np.empty((0, len(FEATURES))), ())
    return CampaignRows(
        np.concatenate(consumers), np.concatenate(arms), np.concatenate(outcomes), np.vstack(blocks), tuple(used)
    )


MODEL_CACHE_SECONDS = 24 * 3600
_MODEL_CACHE_VERSION = 1  # bump when the learners' settings change, so no process reads a model of the old ones


def rows_model(*, data: CampaignRows, merchant_id: int) -> UpliftModel:
    """The default learner fitted on every row of `data`, from the shared cache when these exact rows were fitted
    before (a forecast viewed again, the launch's frozen forecast after the review page's, persuadables of the
    same campaign). Raises ValueError as UpliftModel.fit does.

    Keyed by a digest of the rows themselves rather than by the campaign alone: a completed campaign's rows can
    still change, as purchases keep arriving until each delivery's attribution window closes, an erasure removes
    a consumer's deliveries and events, and events of before the campaign can be ingested late. Changed rows are
    a new key, so a cached model is never a stale one; unchanged rows cost reading them instead of a fit."""
    from django.core.cache import cache

    key = rows_model_key(data=data, merchant_id=merchant_id)
    model = cache.get(key)
    if not isinstance(model, UpliftModel):
        model = UpliftModel().fit(data.features, data.treatment, data.converted)
        cache.set(key, model, MODEL_CACHE_SECONDS)
    return model


def rows_model_key(*, data: CampaignRows, merchant_id: int) -> str:
    """rows_model's cache key: a digest of the rows, the learner, the cache version and scikit-learn's version
    (a model pickled by one release is not for another)."""
    import sklearn

    digest = hashlib.sha256()
    for part in (data.features, data.treatment, data.converted):
        digest.update(np.ascontiguousarray(part).tobytes())
    digest.update(f"{data.features.shape}:{DEFAULT_LEARNER}:{_MODEL_CACHE_VERSION}:{sklearn.__version__}".encode())
    return f"uplift:model:{merchant_id}:{digest.hexdigest()}"


def scoring_moment():
    """When consumers are scored for a forecast: the start of the current UTC day, so the forecast (and so its
    released figures) stays the same all day however often the review page asks for it, instead of drifting with
    the recency features every second and spending budget on each new value."""
    from django.utils import timezone

    return timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)


def _basis_require() -> None:
    """Learning from campaigns and scoring consumers is audience analytics: it needs an approved `tagging`
    (audience insights) activity, as segment refreshes do. Refused as a 422 naming what is missing."""
    from merchants.errors import Unprocessable
    from privacy.models import Purpose
    from privacy.services import ProcessingNotPermitted, processing_basis_require

    try:
        processing_basis_require(purpose=Purpose.TAGGING)
    except ProcessingNotPermitted as exc:
        raise Unprocessable(
            f"Uplift models need an approved audience-insights processing activity: {exc}", code="no_basis"
        ) from None


def top_counts(scores: np.ndarray, treatment: np.ndarray, converted: np.ndarray, fraction: float) -> dict[str, int]:
    """Within the top `fraction` by score: how many were treated and converted among them, and the same for the
    control rows (exact counts, which the merchant sees only released: persuadables_evaluation_public)."""
    treatment = np.asarray(treatment, bool)
    converted = np.asarray(converted, bool)
    order = _ranked(scores)
    top = order[: max(1, math.ceil(fraction * order.size))]
    t, c = top[treatment[top]], top[~treatment[top]]
    return {
        "treated": int(t.size),
        "treated_converted": int(converted[t].sum()),
        "control": int(c.size),
        "control_converted": int(converted[c].sum()),
    }


TOP_FRACTION = 0.2  # uplift@k is reported at k = the top 20 % (the merchant's "top fifth")


def persuadables_create(
    *,
    campaign_id: int,
    merchant_id: int,
    name: str,
    actor: str,
    size: int | None = None,
    share: float | None = None,
):
    """A segment (kind persuadable) of the consumers an uplift model, trained on the merchant's completed campaign
    `campaign_id` (treatment and control), expects to gain most from a campaign like it: the `size` best, or the
    best `share` (0 < share ≤ 1) of the scored consumers; exactly one of the two.

    Candidates are the live consumers with any event at this merchant; only those with a positive predicted
    uplift qualify. The model is evaluated on a held-out 30 % of the campaign's rows first (Qini, uplift@20 %, and
    the exact counts behind uplift@20 % by uplift and by propensity, stored with the segment; merchants see them
    released); it is then refitted on every row. Raises NotFound for another merchant's (or a missing) campaign,
    Unprocessable when the campaign is not completed, has no control group or too few rows.
    """
    from django.conf import settings
    from django.db import transaction
    from django.utils import timezone
    from pyroaring import BitMap

    from consumers.models import Event
    from merchants.errors import Invalid, NotFound, Unprocessable
    from segments.models import SegmentKind
    from segments.services import segment_members_write, segment_named_create
    from tags.selectors import live_consumers_bitmap

    from .models import Campaign, CampaignStatus

    campaign = Campaign.objects.filter(pk=campaign_id, merchant_id=merchant_id).first()
    if campaign is None:
        raise NotFound("No such campaign.", code="not_found")
    if (size is None) == (share is None):
        raise Invalid("Give either size (how many consumers) or share (which top part of them).", code="invalid")
    if share is not None and not 0 < share <= 1:
        raise Invalid("share must be above 0 and at most 1 (the whole).", code="invalid", details={"field": "share"})
    _basis_require()
    if campaign.status != CampaignStatus.COMPLETED:
        raise Unprocessable("Persuadables are learned from a completed campaign.", code="campaign_not_completed")
    if size is not None and size < settings.MIN_AUDIENCE:
        raise Unprocessable(f"size must be at least {settings.MIN_AUDIENCE}.", code="invalid_size")
    data = campaign_rows(campaign_ids=[campaign_id], merchant_id=merchant_id)
    try:
        held = split_holdout(data.treatment.size, fraction=0.3, seed=campaign_id)
        holdout_model = UpliftModel().fit(data.features[~held], data.treatment[~held], data.converted[~held])
        evaluation = uplift_evaluate(holdout_model, data.features[held], data.treatment[held], data.converted[held])
        features, arms, outcomes = data.features[held], data.treatment[held], data.converted[held]
        top = {
            "uplift": top_counts(holdout_model.predict(features), arms, outcomes, TOP_FRACTION),
            "propensity": top_counts(holdout_model.propensity(features), arms, outcomes, TOP_FRACTION),
        }
        model = rows_model(data=data, merchant_id=merchant_id)
    except ValueError as exc:
        raise Unprocessable(f"This campaign cannot train an uplift model: {exc}.", code="too_few_rows") from None
    live = live_consumers_bitmap()
    candidates = np.array(
        sorted(set(Event.objects.filter(merchant_id=merchant_id).values_list("consumer_id", flat=True)) & set(live)),
        dtype=np.int64,
    )
    now = timezone.now()
    tau = model.predict(consumer_features(consumer_ids=candidates, merchant_id=merchant_id, as_of=now))
    order = _ranked(tau)
    wanted = size if size is not None else math.ceil((share or 0) * candidates.size)
    chosen = [int(candidates[i]) for i in order[:wanted] if tau[i] > 0]
    spec = {
        "campaign": campaign_id,
        "size": size,
        "share": share,
        "learner": model.learner,
        "holdout": evaluation.as_dict(),
        "holdout_top": top,
        "trained_rows": int(data.treatment.size),
    }
    with transaction.atomic():
        segment = segment_named_create(
            merchant_id=merchant_id,
            name=name,
            kind=SegmentKind.PERSUADABLE,
            definition=f"persuadables of campaign:{campaign_id}",
            lookalike_spec=spec,
            created_by=actor,
        )
        segment_members_write(
            segment_id=segment.pk,
            members=BitMap(chosen),
            method=f"uplift-{model.learner}",
            definition=segment.definition,
            actor=actor,
            detail=spec,
        )
    segment.refresh_from_db()
    return segment


@dataclass(frozen=True)
class RankingEvaluation:
    """uplift@20 % of one ranking on the held-out rows, from released counts only (None while any is hidden)."""

    ranking: str  # "uplift" or "propensity"
    treated: Any  # ReleasedCount
    treated_converted: Any
    control: Any
    control_converted: Any
    uplift: Any  # campaigns.stats.Uplift | None


@dataclass(frozen=True)
class PersuadablesEvaluation:
    campaign_id: int | None
    by_uplift: RankingEvaluation
    by_propensity: RankingEvaluation

    @property
    def words(self) -> str:
        """The evaluation in plain words (released figures only)."""
        u, p = self.by_uplift.uplift, self.by_propensity.uplift
        if u is None:
            return (
                "Too few of the campaign's consumers were held out for testing to show how well the model ranks "
                "them; its figures would be hidden. A larger campaign, or a larger control group, gives a verdict."
            )
        lead = (
            f"Tested on consumers of the campaign the model never saw: among the top fifth it ranks as most "
            f"persuadable, those who received the message bought {u.treatment_rate * 100:.1f}% of the time against "
            f"{u.control_rate * 100:.1f}% for those held out, {u.absolute * 100:+.1f} percentage points "
            f"(95% interval {u.ci_low * 100:+.1f} to {u.ci_high * 100:+.1f})."
        )
        if p is None:
            return lead
        verdict = (
            "so targeting persuadables gained more than targeting the likeliest buyers"
            if u.absolute > p.absolute
            else "so on this campaign the likeliest buyers were moved at least as much as the persuadables"
        )
        return f"{lead} The top fifth by likelihood to buy gained {p.absolute * 100:+.1f} points, {verdict}."


def persuadables_evaluation_public(segment) -> PersuadablesEvaluation | None:
    """A persuadable segment's hold-out evaluation as a merchant may see it: the counts behind uplift@20 % (by
    predicted uplift, and by propensity for comparison) released under `segment:<id>:holdout:<ranking>:<measure>`,
    and the uplift computed from those released counts only. None for other segments and older ones without
    the counts."""
    from privacy.services import release_figures

    from .selectors import CAMPAIGN_PRECISION, uplift_from_released

    spec = segment.lookalike_spec or {}
    top = spec.get("holdout_top")
    if not top:
        return None
    measures = ("treated", "treated_converted", "control", "control_converted")
    rankings = []
    for ranking in ("uplift", "propensity"):
        released = release_figures(
            merchant_id=segment.merchant_id,
            figures=[(f"segment:{segment.pk}:holdout:{ranking}:{m}", int(top[ranking][m])) for m in measures],
            precision=CAMPAIGN_PRECISION,
        )
        counts = dict(zip(measures, released, strict=True))
        shown = not any(c.suppressed for c in released)
        uplift = (
            uplift_from_released(
                a_converted=counts["treated_converted"],
                a_size=counts["treated"],
                b_converted=counts["control_converted"],
                b_size=counts["control"],
            )
            if shown
            else None
        )
        rankings.append(RankingEvaluation(ranking, uplift=uplift, **counts))
    return PersuadablesEvaluation(spec.get("campaign"), *rankings)


# --------------------------------------------------------------------------------------- the forecast

FORECAST_CANDIDATES = 10  # completed campaigns considered when choosing the most similar one (bounded work)
FORECAST_MODEL = "uplift T-learner (campaigns/uplift.py)"
FORECAST_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Forecast:
    """Released figures (privacy.release.ReleasedCount) of a campaign's expected incremental conversions."""

    campaign_id: int
    like_campaign_id: int
    audience: Any
    incremental: Any
    low: Any
    high: Any
    # "picked": the merchant chose the campaign to learn from; "most_recent": none shares MIN_AUDIENCE consumers
    # with the audience, so the newest candidate (a choice that depends on no consumer)
    chosen_by: str = "most_similar"

    def public(self) -> dict[str, Any]:
        """The shape the API returns and the launch freezes (campaign.forecast): released figures only."""
        return {
            "campaign_id": self.campaign_id,
            "like_campaign_id": self.like_campaign_id,
            "chosen_by": self.chosen_by,
            "audience": self.audience.public(),
            "incremental_conversions": self.incremental.public(),
            "incremental_low": self.low.public(),
            "incremental_high": self.high.public(),
            "confidence": FORECAST_CONFIDENCE,
            "model": FORECAST_MODEL,
        }


@dataclass(frozen=True)
class ForecastExact:
    """The exact figures behind a forecast (for the release layer and tests; merchants see Forecast)."""

    like_campaign_id: int
    audience: int
    incremental: float
    low: float
    high: float
    chosen_by: str = "most_similar"

    def figures(self, campaign_id: int) -> list[tuple[str, int]]:
        """(subject, exact count) for the release layer. The expected extra purchases learned from one campaign and
        from another are two questions, so the campaign learned from is in their subject (however it was chosen):
        the same pick always gets the same answer, and another pick its own noise and cost, never the first pick's
        noise on a value that happens to be equal. The audience does not depend on the pick: one subject."""
        prefix = f"campaign:{campaign_id}:forecast"
        learned = f"{prefix}:like:{self.like_campaign_id}"
        return [
            (f"{prefix}:audience", self.audience),
            (f"{learned}:incremental", max(0, round(self.incremental))),
            (f"{learned}:incremental_low", max(0, round(self.low))),
            (f"{learned}:incremental_high", max(0, round(self.high))),
        ]


def forecast_candidates(*, merchant_id: int, exclude_campaign_id: int | None = None) -> list:
    """The merchant's completed campaigns a forecast may learn from: at least MIN_ARM consumers in both the
    treatment and the control group; the FORECAST_CANDIDATES most recently completed, newest first."""
    from django.db.models import Count, Q

    from .models import Campaign, CampaignStatus, Delivery, Group

    completed = Campaign.objects.filter(merchant_id=merchant_id, status=CampaignStatus.COMPLETED)
    if exclude_campaign_id is not None:
        completed = completed.exclude(pk=exclude_campaign_id)
    recent = list(completed.order_by("-completed_at", "-pk")[: FORECAST_CANDIDATES * 5])
    arms = {
        row["campaign_id"]: row
        for row in Delivery.objects.filter(campaign_id__in=[c.pk for c in recent])
        .values("campaign_id")
        .annotate(
            treated=Count("pk", filter=Q(group=Group.TREATMENT)), control=Count("pk", filter=Q(group=Group.CONTROL))
        )
        .order_by()
    }
    usable = [c for c in recent if c.pk in arms and min(arms[c.pk]["treated"], arms[c.pk]["control"]) >= MIN_ARM]
    return usable[:FORECAST_CANDIDATES]


def _candidates_reached(campaign_ids: list[int]) -> dict[int, Any]:
    """Each campaign's treatment and control consumers (a bitmap per campaign id), read in one query for them all,
    streamed in campaign order: one campaign's ids at a time wait in memory as Python integers."""
    from itertools import groupby
    from operator import itemgetter

    from pyroaring import BitMap

    from .models import Delivery, Group

    rows = (
        Delivery.objects.filter(campaign_id__in=campaign_ids, group__in=(Group.TREATMENT, Group.CONTROL))
        .order_by("campaign_id")
        .values_list("campaign_id", "consumer_id")
    )
    return {
        campaign_id: BitMap(consumer_id for _, consumer_id in of_campaign)
        for campaign_id, of_campaign in groupby(rows.iterator(chunk_size=50_000), key=itemgetter(0))
    }


def _most_similar(candidates: list, audience, *, campaign) -> int | None:
    """The candidate whose treatment and control consumers overlap the audience most, ties to the most recently
    completed, among those whose overlap is released (not suppressed) at MIN_AUDIENCE or more; None when none is.

    The pick is named to the merchant, so it is made from released overlaps only (privacy.services.release_figures,
    one subject per draft and candidate): a choice made on exact counts would answer, for a narrow audience,
    whether those few consumers were in a past campaign. The overlaps themselves are never shown."""
    from django.conf import settings
    from pyroaring import BitMap

    from privacy.services import release_figures

    # forecast_candidates counted each candidate's groups in the database; their consumers are read here once,
    # every candidate's in the same query.
    reached_by = _candidates_reached([candidate.pk for candidate in candidates])
    overlaps = release_figures(
        merchant_id=campaign.merchant_id,
        figures=[
            (
                f"campaign:{campaign.pk}:forecast:overlap:{candidate.pk}",
                len(reached_by.get(candidate.pk, BitMap()) & audience),
            )
            for candidate in candidates
        ],
    )
    minimum = int(settings.MIN_AUDIENCE)
    best, best_overlap = None, minimum - 1
    for candidate, overlap in zip(candidates, overlaps, strict=True):  # newest first: a tie keeps the newer one
        if overlap.value is not None and not overlap.withheld and overlap.value > best_overlap:
            best, best_overlap = candidate.pk, overlap.value
    return best


def campaign_forecast(*, campaign, like_campaign_id: int | None = None) -> Forecast:
    """campaign_forecast_exact's figures through the release layer (what the merchant sees)."""
    from privacy.services import release_figures

    exact = campaign_forecast_exact(campaign=campaign, like_campaign_id=like_campaign_id)
    released = release_figures(merchant_id=campaign.merchant_id, figures=exact.figures(campaign.pk))
    return Forecast(campaign.pk, exact.like_campaign_id, *released, chosen_by=exact.chosen_by)


def _audience_bitmap(campaign):
    """campaign_segments_audience among live consumers: consent and frequency caps at launch can only shrink it.
    While a segment has no members worked out yet there is no audience to score, as the review has no reach."""
    from merchants.errors import Conflict
    from tags.selectors import live_consumers_bitmap

    from .selectors import campaign_segments_audience

    audience = campaign_segments_audience(campaign=campaign)
    if audience is None:
        raise Conflict(
            "A segment of this campaign has not been computed yet; the forecast is made once it is.",
            code="segment_not_computed",
        )
    return audience & live_consumers_bitmap()


def campaign_forecast_exact(*, campaign, like_campaign_id: int | None = None) -> ForecastExact:
    """Before launch: the incremental conversions an uplift model expects from messaging the campaign's audience,
    with a 95 % interval (exact figures; campaign_forecast releases them).

    The model is trained on `like_campaign_id` (one of the merchant's completed campaigns with at least MIN_ARM
    consumers in each group), or else on the most similar such campaign: of the FORECAST_CANDIDATES most
    recently completed, the one whose treatment and control consumers overlap this audience most by released
    count, ties to the newest, among those whose released overlap is at least MIN_AUDIENCE; when none is,
    the most recently completed ("most_recent"). The audience is the current members of the include segments
    (latest snapshots) minus the exclude segments', among live consumers; consent and frequency caps at launch can
    only shrink it. They are scored on their behaviour before the start of the UTC day (scoring_moment) by the
    model rows_model fitted (or found cached) on the chosen campaign's rows. Expected incremental conversions =
    (1 − control share) x the sum of predicted uplift; the interval adds ±1.96 x the standard deviation of the
    realised count (sum over the treated audience of μ₁(1 − μ₁) + μ₀(1 − μ₀)), the outcome noise, not the model's
    own error. Figures below 0 are released as 0.
    """
    from merchants.errors import Unprocessable

    from .selectors import forecast_like_campaign

    _basis_require()
    audience = _audience_bitmap(campaign)
    if like_campaign_id is not None:
        like = forecast_like_campaign(merchant_id=campaign.merchant_id, campaign_id=like_campaign_id)
        used, chosen_by = like.pk, "picked"
    else:
        candidates = forecast_candidates(merchant_id=campaign.merchant_id, exclude_campaign_id=campaign.pk)
        if not candidates:
            raise Unprocessable(
                "Not enough past campaigns to forecast: no completed campaign with at least "
                f"{MIN_ARM} treatment and {MIN_ARM} control consumers to learn from.",
                code="no_uplift_model",
            )
        similar = _most_similar(candidates, audience, campaign=campaign)
        used, chosen_by = (similar, "most_similar") if similar is not None else (candidates[0].pk, "most_recent")
    data = campaign_rows(campaign_ids=[used], merchant_id=campaign.merchant_id)
    try:
        model = rows_model(data=data, merchant_id=campaign.merchant_id)
    except ValueError as exc:
        raise Unprocessable(
            f"Not enough past campaigns to forecast: that campaign cannot train an uplift model ({exc}).",
            code="no_uplift_model",
        ) from None
    ids = np.array(sorted(audience), dtype=np.int64)
    share = 1.0 - float(campaign.control_share)
    point = low = high = 0.0
    if ids.size:
        features = consumer_features(consumer_ids=ids, merchant_id=campaign.merchant_id, as_of=scoring_moment())
        tau = model.predict(features)
        mu1 = model.propensity(features)
        mu0 = np.clip(mu1 - tau, 0.0, 1.0)
        point = share * float(tau.sum())
        spread = 1.959963984540054 * math.sqrt(share * float((mu1 * (1 - mu1) + mu0 * (1 - mu0)).sum()))
        low, high = point - spread, point + spread
    return ForecastExact(used, int(ids.size), point, low, high, chosen_by)


def campaign_forecast_freeze(*, campaign_id: int, like_campaign_id: int | None = None) -> dict | None:
    """Freeze the released forecast on a launched campaign (campaign.forecast), once: what the report later
    compares the result with. Idempotent: a campaign that already has one keeps it (a retried task, a second
    call); a draft gets none. When no forecast can be made, the reason is frozen instead (the report says why),
    so the launch never waits for, or fails with, the forecast. Returns what is stored."""
    from django.db import transaction
    from django.utils import timezone

    from merchants.errors import DomainError

    from .models import Campaign, CampaignStatus

    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None or campaign.status == CampaignStatus.DRAFT or campaign.forecast is not None:
        return None if campaign is None else campaign.forecast
    try:
        frozen: dict[str, Any] = campaign_forecast(campaign=campaign, like_campaign_id=like_campaign_id).public()
    except DomainError as exc:
        frozen = {"campaign_id": campaign.pk, "refused": True, "reason": exc.message, "code": exc.code}
    frozen["made_at"] = timezone.now().isoformat()
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign_id)
        if locked.forecast is not None:  # another run froze it first: that one stands
            return locked.forecast
        Campaign.objects.filter(pk=campaign_id).update(forecast=frozen)
    return frozen
