"""Segments in the Django admin: read mostly; custom refresh schedules are edited as periodic tasks."""

from __future__ import annotations

from django.contrib import admin, messages

from .models import Segment, SegmentSnapshot
from .services import segment_refresh_request

SNAPSHOT_FIELDS = ("version", "status", "size", "entered", "exited", "computed_at", "duration_ms", "method", "error")


class SnapshotInline(admin.TabularInline):
    model = SegmentSnapshot
    extra = 0
    can_delete = False
    ordering = ["-id"]
    fields = SNAPSHOT_FIELDS
    readonly_fields = SNAPSHOT_FIELDS
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).defer("members")


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    list_display = ["name", "merchant", "kind", "scope", "refresh_policy", "status", "version", "last_refreshed_at"]
    list_filter = ["kind", "scope", "refresh_policy", "status", "merchant"]
    search_fields = ["name", "merchant__slug"]
    readonly_fields = [
        "merchant",
        "kind",
        "definition",
        "definition_json",
        "seed",
        "lookalike_spec",
        "scope",
        "refresh_policy",
        "schedule",
        "pending_version",
        "version",
        "status",
        "last_error",
        "last_error_at",
        "stream_error",
        "stream_error_at",
        "last_refreshed_at",
        "created_by",
        "created_at",
        "updated_at",
    ]
    fields = ["name", "description", *readonly_fields]
    inlines = [SnapshotInline]
    actions = ["refresh_now"]

    def has_add_permission(self, request) -> bool:
        return False  # segments are made by merchants (API, portal), where definitions are checked

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # and deleted there too, where a segment a campaign or another segment uses is refused

    @admin.action(description="Refresh the selected segments")
    def refresh_now(self, request, queryset):
        for segment_id in queryset.values_list("pk", flat=True):
            segment_refresh_request(segment_id=segment_id, actor=f"user:{request.user.pk}")
        messages.info(request, f"Queued {queryset.count()} refreshes.")
