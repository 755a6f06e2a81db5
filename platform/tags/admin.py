"""Admin views of the tag catalogue, consumers' tags, stored bitmaps and tagging runs (all read-only:
tags are derived data, changed only by tagging runs and erasure)."""

from __future__ import annotations

from django.contrib import admin

from privacy.admin import ReadOnlyAdmin

from .models import ConsumerTag, StoredBitmap, Tag, TaggingRun


@admin.register(Tag)
class TagAdmin(ReadOnlyAdmin):
    list_display = ["family", "value", "label", "consumer_count", "rule_version", "updated_at"]
    list_filter = ["family", "rule_version"]
    search_fields = ["value", "label"]


@admin.register(ConsumerTag)
class ConsumerTagAdmin(ReadOnlyAdmin):
    list_display = ["consumer_id", "tag", "score", "assigned_at"]
    list_filter = ["tag__family"]
    list_select_related = ["tag"]
    raw_id_fields = ["consumer", "tag"]
    show_full_result_count = False  # millions of rows: no COUNT(*) on every page


@admin.register(StoredBitmap)
class StoredBitmapAdmin(ReadOnlyAdmin):
    list_display = ["key", "version", "cardinality", "source_mark", "updated_at"]
    search_fields = ["key"]
    exclude = ["data"]


@admin.register(TaggingRun)
class TaggingRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "status", "actor", "started_at", "finished_at", "as_of"]
    list_filter = ["status"]
    readonly_fields = [
        "actor",
        "families",
        "status",
        "as_of",
        "started_at",
        "finished_at",
        "counts",
        "activity_id",
        "error",
    ]
