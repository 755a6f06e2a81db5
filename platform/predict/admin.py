"""Model cards in the Django admin, for privacy officers: readable tables, not JSON dumps. Read-only."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .models import ModelCard

METRIC_NAMES = {
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "brier": "Brier score",
    "positive_rate": "Share who did it",
    "mae": "Mean absolute error",
    "mean": "Mean outcome",
}


def _table(headers: list[str], rows: list[list]) -> SafeString:
    if not rows:
        return format_html("<p>{}</p>", "None.")
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


@admin.register(ModelCard)
class ModelCardAdmin(admin.ModelAdmin):
    list_display = ["family", "trained_at", "algorithm", "published", "headline", "psi"]
    list_filter = ["family", "published"]
    ordering = ["-trained_at"]
    fieldsets = [
        ("Model", {"fields": ["family", "kind", "algorithm", "published", "reason", "trained_at", "activity_id"]}),
        (
            "Data windows",
            {
                "fields": [
                    "as_of",
                    "train_cutoff",
                    "validation_cutoff",
                    "horizon_days",
                    "feature_window_days",
                    "train_rows",
                    "validation_rows",
                    "scored",
                    "groups_list",
                    "features_list",
                ]
            },
        ),
        ("Validation", {"fields": ["metrics_table", "candidates_table", "calibration_table", "importance_table"]}),
        ("Drift", {"fields": ["psi", "drift"]}),
        ("Fairness", {"fields": ["fairness_table"]}),
    ]
    readonly_fields = [
        "family",
        "kind",
        "algorithm",
        "published",
        "reason",
        "trained_at",
        "activity_id",
        "as_of",
        "train_cutoff",
        "validation_cutoff",
        "horizon_days",
        "feature_window_days",
        "train_rows",
        "validation_rows",
        "scored",
        "groups_list",
        "features_list",
        "metrics_table",
        "candidates_table",
        "calibration_table",
        "importance_table",
        "psi",
        "drift",
        "fairness_table",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Validation")
    def headline(self, card: ModelCard) -> str:
        if "roc_auc" in card.metrics:
            return f"ROC-AUC {card.metrics['roc_auc']:.3f} (baseline {card.baseline_metrics.get('roc_auc', 0):.3f})"
        if "mae" in card.metrics:
            return f"MAE {card.metrics['mae']:.3f} (baseline {card.baseline_metrics.get('mae', 0):.3f})"
        return "not validated"

    @admin.display(description="Stores or categories")
    def groups_list(self, card: ModelCard) -> str:
        return ", ".join(card.groups) or "—"

    @admin.display(description="Features")
    def features_list(self, card: ModelCard) -> str:
        return ", ".join(card.features) or "—"

    @admin.display(description="Metrics (held-out validation rows)")
    def metrics_table(self, card: ModelCard) -> SafeString:
        names = list(dict.fromkeys([*card.metrics, *card.baseline_metrics]))
        rows = [[METRIC_NAMES.get(n, n), card.metrics.get(n, "—"), card.baseline_metrics.get(n, "—")] for n in names]
        return _table(["Metric", "Model", "Recency/frequency baseline"], rows)

    @admin.display(description="Candidates (score on the choosing half of validation)")
    def candidates_table(self, card: ModelCard) -> SafeString:
        rows = [[name, score] for name, score in card.candidate_scores.items()]
        return _table(["Candidate", "ROC-AUC, or minus MAE"], rows)

    @admin.display(description="Calibration (reliability bins)")
    def calibration_table(self, card: ModelCard) -> SafeString:
        rows = [[f"{b['low']}–{b['high']}", b["count"], b["predicted"], b["observed"]] for b in card.calibration]
        return _table(["Predicted range", "Rows", "Mean predicted", "Observed"], rows)

    @admin.display(description="Feature importance (permutation, validation rows)")
    def importance_table(self, card: ModelCard) -> SafeString:
        rows = [[i["feature"], i["importance"], i["std"]] for i in card.importance[:15]]
        return _table(["Feature", "Drop in metric when shuffled", "Std"], rows)

    @admin.display(description="Drift against the last published run")
    def drift(self, card: ModelCard) -> str:
        if card.psi is None:
            return "No earlier published run to compare with."
        if card.psi < 0.1:
            return "Stable (PSI below 0.1)."
        if card.psi < 0.25:
            return "Moderate shift (PSI 0.1–0.25): worth a look."
        return "Large shift (PSI above 0.25): the population or the model changed markedly."

    @admin.display(description="Spread of each band over age ranges and countries (flagged: ratio outside [0.5, 2])")
    def fairness_table(self, card: ModelCard) -> SafeString:
        if not card.fairness:
            return format_html("<p>{}</p>", "Not computed (the model was not published).")
        return format_html_join(
            "", "{}", ((fairness_report_html(band, report),) for band, report in card.fairness.items())
        )


def fairness_report_html(heading: str, report: dict) -> SafeString:
    """One spread (predict.fairness.FairnessReport.as_dict()) as an officer's table: per dimension and group, the
    members, their share against the population's, the ratio, and a flag on large skews. Used for the model cards'
    bands here and for persuadable and lookalike segments in the segments admin."""
    rows = []
    for dimension, groups in report["dimensions"].items():
        for g in groups:
            flag = "⚠ skewed" if g["flagged"] else ""
            rows.append(
                [dimension, g["group"], g["members"], g["member_share"], g["population_share"], g["ratio"], flag]
            )
    flags = ", ".join(report["flags"]) or "none"
    return format_html(
        "<h4>{} — {} members; flagged: {}</h4>{}",
        heading,
        report["members"],
        flags,
        _table(["Dimension", "Group", "Members", "Share", "Population share", "Ratio", ""], rows),
    )
