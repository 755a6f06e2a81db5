"""Journeys in the Django admin: read-only for privacy officers and staff (merchants use the portal and API)."""

from __future__ import annotations

from django.contrib import admin

from privacy.admin import ReadOnlyAdmin

from .models import Journey, JourneyVersion


class VersionInline(admin.TabularInline):
    model = JourneyVersion
    extra = 0
    fields = ["number", "steps", "created_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Journey)
class JourneyAdmin(ReadOnlyAdmin):
    list_display = ["name", "merchant", "status", "trigger_kind", "trigger_event", "holdout_share", "activated_at"]
    list_filter = ["status", "trigger_kind"]
    search_fields = ["name", "merchant__name"]
    list_select_related = ["merchant"]
    inlines = [VersionInline]
