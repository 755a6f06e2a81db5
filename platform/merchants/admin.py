from django.contrib import admin

from .models import ApiKey, Membership, Merchant


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "time_zone", "currency", "quiet_hours_display", "created_at"]
    fields = ["slug", "name", "time_zone", "currency", "quiet_start", "quiet_end"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]

    @admin.display(description="Quiet hours")
    def quiet_hours_display(self, merchant: Merchant) -> str:
        window = merchant.quiet_hours
        return window.describe() if window else "none (the platform's apply)"


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "merchant", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["kind", "merchant"]
    readonly_fields = ["prefix", "key_digest", "created_at", "last_used_at", "created_by"]
    fields = [
        "name",
        "kind",
        "merchant",
        "prefix",
        "key_digest",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]

    def has_add_permission(self, request) -> bool:
        # Keys are issued with `manage.py create_api_key` or in the portal, where the raw key is shown once.
        return False
