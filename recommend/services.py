"""Write operations of the recommender: training runs, the registry's activation rule, erasure, and the
batch recommendation API campaigns call."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from privacy.audit import audit_record
from privacy.services import processing_basis_require

from .algorithms import CategoryPopularity, Recommender, algorithm_create
from .artefacts import arrays_without_consumer, artefact_arrays, artefact_name, artefact_read, artefact_save
from .evaluation import DEFAULT_K, HoldOut, RankingMetrics, evaluate, temporal_holdout, time_split_holdout
from .interactions import (
    DEFAULT_EVENT_WEIGHTS,
    interaction_events_load,
    interactions_from_events,
    product_category_codes,
)
from .memory import MemoryBudgetExceeded
from .models import RecommenderModel, RunStatus, TrainingRun
from .ranking import batch_chunk_size, rank_for_consumers
from .selectors import serving

logger = logging.getLogger("dmp.recommend")

PURPOSE = "recommendation"
DEFAULT_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class TrainingConfig:
    algorithm: str
    params: Mapping[str, Any]
    event_weights: Mapping[int, float]
    half_life_days: float | None = None
    test_fraction: float = DEFAULT_TEST_FRACTION
    k: int = DEFAULT_K

    def as_json(self) -> dict[str, Any]:
        return {
            "model": dict(self.params),
            "event_weights": {str(int(k)): float(v) for k, v in self.event_weights.items()},
            "half_life_days": self.half_life_days,
            "holdout": {"protocol": "temporal", "test_fraction": self.test_fraction, "k": self.k},
        }


def training_config(
    *,
    algorithm: str,
    params: Mapping[str, Any] | None = None,
    event_weights: Mapping[int, float] | None = None,
    half_life_days: float | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    k: int = DEFAULT_K,
) -> TrainingConfig:
    """Validate everything up front, so a bad request fails before any data is read or written."""
    probe = algorithm_create(algorithm, **dict(params or {}))  # raises ValueError naming the bad parameter
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if k < 1:
        raise ValueError("k must be at least 1")
    if half_life_days is not None and half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    return TrainingConfig(
        algorithm=algorithm,
        params=probe.params,
        event_weights=dict(DEFAULT_EVENT_WEIGHTS if event_weights is None else event_weights),
        half_life_days=half_life_days,
        test_fraction=test_fraction,
        k=k,
    )


BASELINE = "category_popular"


@dataclass
class HoldoutReport:
    """One protocol's figures: the model (its tied picks filled from the baseline), the baseline (category
    popularity) and global popularity, on the same split."""

    algorithm: str
    model: RankingMetrics
    baseline: RankingMetrics
    popular: RankingMetrics
    memory: dict[str, Any] = field(default_factory=dict)  # the model's memory plan (Recommender.fit_info)
    temporal: HoldoutReport | None = None  # the same three on the temporal protocol (one cut in time)

    @property
    def beats_baseline(self) -> bool:
        """The activation rule: strictly above category popularity's nDCG@k on the per-consumer hold-out (the
        baseline itself must beat global popularity)."""
        if self.model.users == 0:
            return False
        bar = self.popular if self.algorithm == BASELINE else self.baseline
        return self.model.ndcg > bar.ndcg

    def as_dict(self, config: TrainingConfig) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": "per_consumer",
            "test_fraction": config.test_fraction,
            "k": config.k,
            "model": self.model.as_dict(),
            "baseline": self.baseline.as_dict(),
            "baseline_algorithm": BASELINE,
            "popular": self.popular.as_dict(),
            "beats_baseline": self.beats_baseline,
        }
        if self.temporal is not None:
            out["temporal"] = {
                "protocol": "temporal",
                "model": self.temporal.model.as_dict(),
                "baseline": self.temporal.baseline.as_dict(),
                "popular": self.temporal.popular.as_dict(),
            }
        return out


def model_create(
    algorithm: str, *, params: Mapping[str, Any], product_ids: Any, threads: int | None = None
) -> Recommender:
    """An unfitted model; category popularity gets the products' category codes (at its category_depth)."""
    model = algorithm_create(algorithm, threads=threads, **params)
    if isinstance(model, CategoryPopularity):
        codes, _ = product_category_codes(product_ids, depth=int(model.params["category_depth"]))
        model.with_categories(codes)
    return model


def holdout_report(
    *,
    algorithm: str,
    params: Mapping[str, Any],
    holdout: HoldOut,
    product_ids: Any,
    k: int = DEFAULT_K,
    threads: int | None = None,
    baseline_params: Mapping[str, Any] | None = None,
) -> HoldoutReport:
    """Fit the model, category popularity and global popularity on one split and score all three."""
    model = model_create(algorithm, params=params, product_ids=product_ids, threads=threads).fit(holdout.train)
    baseline = model_create(BASELINE, params=baseline_params or {}, product_ids=product_ids, threads=threads).fit(
        holdout.train
    )
    popular = algorithm_create("popular", threads=threads).fit(holdout.train)
    return HoldoutReport(
        algorithm=algorithm,
        model=evaluate(model, holdout, k=k, baseline=baseline),
        baseline=evaluate(baseline, holdout, k=k),
        popular=evaluate(popular, holdout, k=k),
        memory=dict(model.fit_info),
    )


def recommender_evaluate(*, config: TrainingConfig, events=None, threads: int | None = None) -> HoldoutReport:
    """Both protocols on marketplace events: per-consumer hold-out (the activation rule's) and temporal."""
    if events is None:
        events = interaction_events_load(weights=config.event_weights, half_life_days=config.half_life_days)
    matrix = interactions_from_events(events)
    rows, cols = matrix.rows_for(events.consumer_ids), matrix.columns_for(events.product_ids)
    reports = []
    for split in (temporal_holdout, time_split_holdout):
        holdout = split(
            rows, cols, events.weights, events.timestamps, shape=matrix.shape, test_fraction=config.test_fraction
        )
        reports.append(
            holdout_report(
                algorithm=config.algorithm,
                params=config.params,
                holdout=holdout,
                product_ids=matrix.product_ids,
                k=config.k,
                threads=threads,
            )
        )
    reports[0].temporal = reports[1]
    return reports[0]


def recommender_train(
    *, config: TrainingConfig, actor: str, force: bool = False, threads: int | None = None
) -> TrainingRun:
    """Train, evaluate against the popularity baseline, store the artefact, activate if it won, audit.

    Refuses (ProcessingNotPermitted, nothing written) without an approved
    `recommendation` activity. Raises MemoryBudgetExceeded, with the run
    recorded as failed and its message as the error, when the algorithm
    cannot fit the memory budget even at its smallest (recommend/memory.py). When the data are unchanged since the last
    successful run with the same configuration, records a skipped run instead
    of training again (a retried or duplicated task costs nothing).
    """
    basis = processing_basis_require(purpose=PURPOSE)
    events = interaction_events_load(weights=config.event_weights, half_life_days=config.half_life_days)
    matrix = interactions_from_events(events)
    snapshot = matrix.snapshot()
    params_json = config.as_json()

    if not force and config.half_life_days is None:
        previous = (
            TrainingRun.objects.filter(algorithm=config.algorithm, status=RunStatus.SUCCEEDED, params=params_json)
            .order_by("-started_at", "-id")
            .first()
        )
        if (
            previous is not None
            and previous.data_snapshot.get("hash") == snapshot["hash"]
            and _same_items_kept(config, matrix.shape, int(matrix.matrix.nnz), previous)
        ):
            with transaction.atomic():
                run = TrainingRun.objects.create(
                    algorithm=config.algorithm,
                    params=params_json,
                    status=RunStatus.SKIPPED,
                    actor=actor,
                    activity_id=basis.activity_id,
                    data_snapshot=snapshot,
                    metrics=previous.metrics,
                    beats_baseline=previous.beats_baseline,
                    finished_at=timezone.now(),
                )
                audit_record(
                    actor=actor,
                    action="recommender.training_skipped",
                    purpose=basis.purpose,
                    legal_basis=basis.legal_basis,
                    activity_id=basis.activity_id,
                    object_type="TrainingRun",
                    object_id=run.pk,
                    counts=_snapshot_counts(snapshot),
                    details={"algorithm": config.algorithm, "same_data_as_run": previous.pk},
                )
            return run

    run = TrainingRun.objects.create(
        algorithm=config.algorithm,
        params=params_json,
        actor=actor,
        activity_id=basis.activity_id,
        data_snapshot=snapshot,
    )
    logger.info("recommend.training_started", extra={"fields": {"run": run.pk, **_snapshot_counts(snapshot)}})
    try:
        if matrix.matrix.nnz == 0:
            raise ValueError("no interactions to train on: no events with a product and a positive weight")
        # Refuse before the first fit when the model cannot fit the memory budget (MemoryBudgetExceeded).
        users, items = matrix.shape
        algorithm_create(config.algorithm, threads=threads, **config.params).memory_plan(
            users=users, items=items, nnz=int(matrix.matrix.nnz)
        )
        report = recommender_evaluate(config=config, events=events, threads=threads)
        model = model_create(
            config.algorithm, params=config.params, product_ids=matrix.product_ids, threads=threads
        ).fit(matrix.matrix)
        stored_name, size = artefact_save(
            name=f"{run.pk}-{config.algorithm}.npz", arrays=artefact_arrays(model, matrix)
        )
    except MemoryBudgetExceeded as exc:
        exc.run_id = run.pk
        TrainingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=timezone.now()
        )
        logger.warning("recommend.training_over_memory_budget", extra={"fields": {"run": run.pk}})
        raise
    except Exception as exc:
        TrainingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=timezone.now()
        )
        logger.exception("recommend.training_failed", extra={"fields": {"run": run.pk}})
        raise

    metrics = report.as_dict(config)
    metrics["memory"] = dict(model.fit_info)
    try:
        with transaction.atomic():
            record = RecommenderModel.objects.create(
                run=run,
                algorithm=config.algorithm,
                params=params_json,
                artefact=stored_name,
                artefact_bytes=size,
                consumers=snapshot["consumers"],
                products=snapshot["products"],
                ndcg=report.model.ndcg,
            )
            activated = report.beats_baseline
            if activated:
                RecommenderModel.objects.filter(algorithm=config.algorithm, is_active=True).update(is_active=False)
                RecommenderModel.objects.filter(pk=record.pk).update(is_active=True, activated_at=timezone.now())
            TrainingRun.objects.filter(pk=run.pk).update(
                status=RunStatus.SUCCEEDED,
                metrics=metrics,
                beats_baseline=report.beats_baseline,
                finished_at=timezone.now(),
            )
            audit_record(
                actor=actor,
                action="recommender.trained",
                purpose=basis.purpose,
                legal_basis=basis.legal_basis,
                activity_id=basis.activity_id,
                object_type="RecommenderModel",
                object_id=record.pk,
                counts=_snapshot_counts(snapshot),
                details={
                    "algorithm": config.algorithm,
                    "run": run.pk,
                    "activated": activated,
                    "data_hash": snapshot["hash"],
                    "model_ndcg": round(report.model.ndcg, 6),
                    "baseline_ndcg": round(report.baseline.ndcg, 6),
                    "model_precision": round(report.model.precision, 6),
                    "baseline_precision": round(report.baseline.precision, 6),
                    "baseline_algorithm": BASELINE,
                    "popular_ndcg": round(report.popular.ndcg, 6),
                    "evaluated_consumers": report.model.users,
                },
            )
    except Exception as exc:
        default_storage.delete(stored_name)
        TrainingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=timezone.now()
        )
        raise
    models_prune(algorithm=config.algorithm)
    logger.info(
        "recommend.training_finished",
        extra={"fields": {"run": run.pk, "model": record.pk, "activated": activated, "ndcg": report.model.ndcg}},
    )
    run.refresh_from_db()
    return run


def _same_items_kept(config: TrainingConfig, shape: tuple[int, int], nnz: int, previous: TrainingRun) -> bool:
    """Whether the memory budget lets the model keep the items the previous run kept (EASE caps its items by
    the budget: a budget changed since means a different model from the same data)."""
    kept_before = (previous.metrics or {}).get("memory", {}).get("items_kept")
    if kept_before is None:
        return True
    try:
        plan = algorithm_create(config.algorithm, **config.params).memory_plan(users=shape[0], items=shape[1], nnz=nnz)
    except MemoryBudgetExceeded:
        return True  # the previous model stands; training now would be refused
    return plan.get("items_kept") == kept_before


def models_prune(*, algorithm: str, keep: int | None = None) -> int:
    """Delete the artefacts of all but the newest `keep` inactive models of an algorithm (their registry rows,
    with metrics, stay). Old artefacts are consumer data nobody serves; keeping few also keeps erasure cheap."""
    keep = settings.RECOMMEND_KEEP_INACTIVE_MODELS if keep is None else keep
    stale = list(
        RecommenderModel.objects.filter(algorithm=algorithm, is_active=False)
        .exclude(artefact="")
        .order_by("-created_at", "-id")[keep:]
    )
    for record in stale:
        default_storage.delete(artefact_name(record))
        RecommenderModel.objects.filter(pk=record.pk).update(artefact="", artefact_bytes=0)
    return len(stale)


def _snapshot_counts(snapshot: Mapping[str, Any]) -> dict[str, int]:
    return {key: int(snapshot[key]) for key in ("consumers", "products", "interactions", "events")}


def recommend_for_consumers(
    *, merchant_id: int, consumer_ids: Sequence[int], n: int, exclude_purchased: bool = True
) -> dict[int, list[int]]:
    """Top-n product ids (best first) from one merchant's catalogue for every consumer in an audience.

    Vectorised and chunked: the serving model ranks known consumers in blocks,
    consumers it has not seen are folded in from their events where it can,
    and whoever still has fewer than n gets the merchant's popular products in
    their strongest interest category, then overall. Products the consumer
    bought from this merchant are left out when `exclude_purchased`.

    Raises ProcessingNotPermitted without an approved `recommendation` activity (personalising uses every
    consumer's data).
    """
    processing_basis_require(purpose=PURPOSE)
    _, model = serving()  # a missing or unreadable artefact degrades to popularity, as the endpoint does
    ranked = rank_for_consumers(
        merchant_id=merchant_id,
        consumer_ids=consumer_ids,
        n=n,
        model=model,
        exclude_purchased=exclude_purchased,
        chunk_size=batch_chunk_size(),
    )
    return ranked.product_ids


def model_forget_consumer(*, consumer_id: int) -> int:
    """Remove a consumer's row (factors, stored history) from every stored artefact. Returns models rewritten.

    Runs inside the caller's transaction: the new files are written first and
    the rows pointed at them; the old files are deleted only after commit, so a
    rollback leaves the registry consistent (and at worst an orphan file).
    """
    rewritten = 0
    with transaction.atomic():
        for record in RecommenderModel.objects.select_for_update().exclude(artefact="").order_by("pk"):
            old_name = artefact_name(record)
            if not default_storage.exists(old_name):
                continue
            reduced = arrays_without_consumer(artefact_read(old_name), consumer_id)
            if reduced is None:
                continue
            new_name, size = artefact_save(
                name=f"{record.run_id}-{record.algorithm}-v{record.artefact_version + 1}.npz", arrays=reduced
            )
            RecommenderModel.objects.filter(pk=record.pk).update(
                artefact=new_name,
                artefact_bytes=size,
                artefact_version=F("artefact_version") + 1,
                consumers=F("consumers") - 1,
            )
            transaction.on_commit(partial(default_storage.delete, old_name))
            rewritten += 1
    return rewritten


__all__ = [
    "BASELINE",
    "HoldoutReport",
    "TrainingConfig",
    "holdout_report",
    "model_create",
    "model_forget_consumer",
    "models_prune",
    "recommend_for_consumers",
    "recommender_evaluate",
    "recommender_train",
    "training_config",
]
