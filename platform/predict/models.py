"""Model cards: one per trained model, what officers read in the admin and merchants see summarised."""

from __future__ import annotations

from django.db import models


class ModelCard(models.Model):
    """A trained model behind one predicted-trait family: its data windows, features, validation, drift, fairness,
    and whether it was published (its bands written as tags) and why.

    Every figure here is about the model or about groups of consumers; nothing names or scores an individual.
    """

    family = models.CharField(max_length=32, db_index=True)
    kind = models.CharField(max_length=16, help_text="classification or regression")
    algorithm = models.CharField(max_length=40, blank=True, help_text="The candidate chosen on validation.")
    candidate_scores = models.JSONField(
        default=dict, blank=True, help_text="Each candidate's validation score (ROC-AUC, or minus MAE)."
    )
    trained_at = models.DateTimeField()
    as_of = models.DateTimeField(help_text="The moment the run's data ends (scoring features are measured here).")
    train_cutoff = models.DateTimeField(help_text="Training features use events up to here, labels after it.")
    validation_cutoff = models.DateTimeField(help_text="Validation features use events up to here, labels after it.")
    horizon_days = models.FloatField(help_text="How far after a cut-off the outcome is observed.")
    feature_window_days = models.FloatField()
    features = models.JSONField(default=list, blank=True)
    groups = models.JSONField(default=list, blank=True, help_text="Stores or categories modelled (pair families).")
    train_rows = models.IntegerField(default=0)
    validation_rows = models.IntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True, help_text="The chosen model on held-out validation rows.")
    baseline_metrics = models.JSONField(default=dict, blank=True, help_text="The simple baseline on the same rows.")
    calibration = models.JSONField(default=list, blank=True)
    importance = models.JSONField(default=list, blank=True)
    score_bins = models.JSONField(default=dict, blank=True, help_text="This run's score deciles (for drift).")
    psi = models.FloatField(null=True, blank=True, help_text="Population stability index against the last run.")
    scored = models.IntegerField(default=0, help_text="Units scored at as_of.")
    published = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    fairness = models.JSONField(default=dict, blank=True, help_text="Per band: spread over age ranges and countries.")
    activity_id = models.BigIntegerField(null=True, blank=True, help_text="The processing activity relied on.")

    class Meta:
        ordering = ["-trained_at", "family"]
        indexes = [models.Index(fields=["family", "trained_at"])]

    def __str__(self) -> str:
        state = "published" if self.published else "not published"
        return f"{self.family} model of {self.trained_at:%Y-%m-%d %H:%M} ({state})"
