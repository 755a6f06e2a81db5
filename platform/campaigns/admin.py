"""Campaigns in the Django admin: read-only for privacy officers and staff (merchants use the portal and API)."""

from __future__ import annotations

from django.contrib import admin

from privacy.admin import ReadOnlyAdmin

from .models import Campaign, Delivery, TrackingEvent


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "merchant",
        "status",
        "phase",
        "channel",
        "audience_count",
        "written_count",
        "dispatched_count",
        "withdrawn_count",
        "failed_count",
        "launched_at",
    ]
    list_filter = ["status", "channel", "schedule_kind"]
    search_fields = ["name", "merchant__name"]
    list_select_related = ["merchant"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "campaign", "group", "status", "attempts", "created_at", "dispatched_at", "delivered_at"]
    list_filter = ["status", "group"]
    raw_id_fields = ["campaign", "consumer"]
    list_select_related = ["campaign"]
    show_full_result_count = False  # counting millions of rows on every page view is slow


@admin.register(TrackingEvent)
class TrackingEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "delivery", "kind", "order_value", "occurred_at", "recorded_at"]
    list_filter = ["kind"]
    raw_id_fields = ["delivery"]
    show_full_result_count = False
