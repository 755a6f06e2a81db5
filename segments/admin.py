"""Segments in the Django admin: read mostly; custom refresh schedules are edited as periodic tasks."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.safestring import SafeString

from predict.admin import fairness_report_html
from predict.fairness import HIGH_RATIO, LOW_RATIO, spread

from .evaluation import SnapshotUnreadable
from .models import Segment, SegmentKind, SegmentSnapshot
from .selectors import segment_latest_snapshot, snapshot_members
from .services import segment_refresh_request

# Audiences chosen by a model rather than by a rule the merchant wrote: officers check how their members spread
# over age ranges and countries against the population (predict.fairness), as for predicted traits' bands.
MODELLED_KINDS = (SegmentKind.PERSUADABLE, SegmentKind.LOOKALIKE)

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
        "fairness_table",
    ]
    fields = ["name", "description", *readonly_fields]
    inlines = [SnapshotInline]
    actions = ["refresh_now"]

    def has_add_permission(self, request) -> bool:
        return False  # segments are made by merchants (API, portal), where definitions are checked

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # and deleted there too, where a segment a campaign or another segment uses is refused

    @admin.action(description="Refresh the selected segments", permissions=["change"])
    def refresh_now(self, request, queryset):
        for segment_id in queryset.values_list("pk", flat=True):
            segment_refresh_request(segment_id=segment_id, actor=f"user:{request.user.pk}")
        messages.info(request, f"Queued {queryset.count()} refreshes.")

    @admin.display(
        description=f"Spread over age ranges and countries (flagged: ratio outside [{LOW_RATIO}, {HIGH_RATIO:g}])"
    )
    def fairness_table(self, segment: Segment) -> SafeString:
        """Computed on view from the latest snapshot: one pass of bitmap intersections over the age-range and
        country tags (milliseconds per segment, see docs/predictions.md), so it always matches the members the
        segment has now and costs nothing on refresh. Exact counts: officers only, never a merchant page."""
        if segment.kind not in MODELLED_KINDS:
            return format_html("<p>{}</p>", "Shown for persuadable and lookalike segments (chosen by a model).")
        snapshot = segment_latest_snapshot(segment_id=segment.pk)
        if snapshot is None:
            return format_html("<p>{}</p>", "Not computed yet.")
        try:
            members = snapshot_members(snapshot)
        except SnapshotUnreadable as exc:  # logged for the operator where it was found
            return format_html("<p>{}</p>", exc.message)
        report = spread(members).as_dict()
        return fairness_report_html(f"{segment.get_kind_display()} (snapshot v{snapshot.version})", report)
