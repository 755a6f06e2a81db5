"""The registry in the Django admin: read-only history of training runs and models."""

from __future__ import annotations

from django.contrib import admin

from .models import RecommenderModel, TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "algorithm", "status", "beats_baseline", "actor", "started_at", "finished_at")
    list_filter = ("algorithm", "status", "beats_baseline")
    readonly_fields = [f.name for f in TrainingRun._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RecommenderModel)
class RecommenderModelAdmin(admin.ModelAdmin):
    list_display = ("id", "algorithm", "is_active", "ndcg", "consumers", "products", "artefact_bytes", "created_at")
    list_filter = ("algorithm", "is_active")
    readonly_fields = [f.name for f in RecommenderModel._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
