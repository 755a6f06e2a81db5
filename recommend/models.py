"""The model registry: every training run, and the models that came out of them.

A TrainingRun records one attempt: algorithm, parameters, the data snapshot it
saw (counts, the events high-water mark and a content hash), the hold-out
metrics of the model and of the popularity baseline on the same split, and
how it ended. A successful run produces a RecommenderModel whose artefact
(factors or a similarity/weight matrix, plus the id maps) is an .npz file in
Django's file storage. A model becomes active only when it beat the baseline;
at most one model per algorithm is active, and serving uses the active model
with the best hold-out nDCG.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Algorithm(models.TextChoices):
    ALS = "als", "Alternating least squares (implicit)"
    IALS = "ials", "iALS (frequency-scaled regularisation, Rendle et al. 2021)"
    BPR = "bpr", "Bayesian personalised ranking (implicit)"
    ITEM_KNN = "item_knn", "Item-item nearest neighbours (implicit, cosine or BM25)"
    EASE = "ease", "EASE (closed-form item autoencoder)"
    POPULAR = "popular", "Global popularity"
    CATEGORY_POPULAR = "category_popular", "Popular in the consumer's categories (the baseline to beat)"


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped (data unchanged since the last run)"


class TrainingRun(models.Model):
    algorithm = models.CharField(max_length=16, choices=Algorithm.choices)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    actor = models.CharField(max_length=100, help_text="who started it: schedule, command or api key")
    activity_id = models.IntegerField(null=True, blank=True, help_text="the approved processing activity it ran under")
    data_snapshot = models.JSONField(
        default=dict, blank=True, help_text="consumers, products, interactions, events high-water mark, hash"
    )
    metrics = models.JSONField(
        default=dict, blank=True, help_text="hold-out protocol and metrics of the model and of the popularity baseline"
    )
    beats_baseline = models.BooleanField(null=True, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["algorithm", "status", "-started_at"])]

    def __str__(self) -> str:
        return f"training run {self.pk} ({self.algorithm}, {self.status})"


class RecommenderModel(models.Model):
    run = models.OneToOneField(TrainingRun, on_delete=models.PROTECT, related_name="model")
    algorithm = models.CharField(max_length=16, choices=Algorithm.choices)
    params = models.JSONField(default=dict, blank=True)
    artefact = models.FileField(upload_to="recommend/models/", max_length=300)
    artefact_bytes = models.BigIntegerField(default=0)
    # Bumped when the artefact is rewritten in place (a consumer's erasure), so per-process caches reload.
    artefact_version = models.PositiveIntegerField(default=1)
    consumers = models.IntegerField(default=0)
    products = models.IntegerField(default=0)
    ndcg = models.FloatField(default=0.0, help_text="hold-out nDCG@k, used to pick the serving model")
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["algorithm"], condition=Q(is_active=True), name="recommend_one_active_model_per_algorithm"
            )
        ]

    def __str__(self) -> str:
        state = "active" if self.is_active else "inactive"
        return f"{self.algorithm} model {self.pk} ({state})"

    @property
    def has_consumer_factors(self) -> bool:
        return self.algorithm in (Algorithm.ALS, Algorithm.IALS, Algorithm.BPR)
