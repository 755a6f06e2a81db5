"""The privacy officers' admin: the register with approve/suspend, read-only ledger and audit log."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .audit import audit_chain_verify
from .models import AuditEntry, ConsentRecord, ConsentState, ProcessingActivity
from .services import activity_approve, activity_suspend


class ReadOnlyAdmin(admin.ModelAdmin):
    """Officers may look and filter, never add, change or delete."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ProcessingActivity)
class ProcessingActivityAdmin(admin.ModelAdmin):
    list_display = ["name", "purpose", "legal_basis", "status", "approved_by", "approved_at"]
    list_filter = ["purpose", "legal_basis", "status"]
    search_fields = ["name", "description"]
    readonly_fields = ["status", "approved_by", "approved_at", "created_at", "updated_at"]
    actions = ["approve_selected", "suspend_selected"]
    # Adds "Save and approve" and "Suspend" buttons; the rules' errors then show next to their fields.
    change_form_template = "admin/privacy/processingactivity/change_form.html"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "purpose",
                    "legal_basis",
                    "description",
                    "status",
                    "approved_by",
                    "approved_at",
                ]
            },
        ),
        (
            "Assessment and disclosure",
            {"fields": ["assessment", "disclosure_url", "counter_statement_channel"]},
        ),
        ("Record of processing", {"fields": ["data_categories", "recipients", "retention", "safeguards"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def save_model(self, request, obj, form, change):
        # Any edit of an approved activity sends it back for approval.
        if change and form.changed_data:
            obj.status = "draft"
            obj.approved_by = None
            obj.approved_at = None
        super().save_model(request, obj, form, change)

    def response_change(self, request, obj):
        if "_approve" in request.POST or "_suspend" in request.POST:
            if not self.has_change_permission(request, obj):
                raise PermissionDenied
            if "_suspend" in request.POST:
                activity_suspend(activity=obj, officer=request.user)
                self.message_user(request, f"“{obj.name}” suspended; jobs relying on it now refuse.", messages.WARNING)
            else:
                # The form already enforced the register's rules field by field, so approval cannot fail here.
                activity_approve(activity=obj, officer=request.user)
                self.message_user(request, f"“{obj.name}” approved.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:privacy_processingactivity_changelist"))
        return super().response_change(request, obj)

    @admin.action(description="Approve the selected activities", permissions=["change"])
    def approve_selected(self, request, queryset):
        for activity in queryset:
            try:
                activity_approve(activity=activity, officer=request.user)
            except ValidationError as exc:
                problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
                self.message_user(request, f"“{activity.name}” was not approved: {problems}", messages.ERROR)
            else:
                self.message_user(request, f"“{activity.name}” approved.", messages.SUCCESS)

    @admin.action(description="Suspend the selected activities", permissions=["change"])
    def suspend_selected(self, request, queryset):
        for activity in queryset:
            activity_suspend(activity=activity, officer=request.user)
        self.message_user(request, f"{queryset.count()} activities suspended; jobs relying on them now refuse.")


@admin.register(ConsentRecord)
class ConsentRecordAdmin(ReadOnlyAdmin):
    list_display = ["id", "consumer_id", "purpose", "status", "kind", "source", "occurred_at", "recorded_at"]
    list_filter = ["purpose", "status", "kind"]
    date_hierarchy = "occurred_at"


@admin.register(ConsentState)
class ConsentStateAdmin(ReadOnlyAdmin):
    list_display = ["consumer_id", "purpose", "status", "kind", "occurred_at"]
    list_filter = ["purpose", "status", "kind"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "actor", "action", "merchant_id", "purpose", "legal_basis", "counts"]
    list_filter = ["action", "purpose", "legal_basis"]
    search_fields = ["action", "actor", "object_id"]
    date_hierarchy = "created_at"
    actions = ["verify_chain"]
    change_list_template = "admin/privacy/auditentry/change_list.html"  # adds a "Verify the chain" button

    def get_urls(self):
        verify = self.admin_site.admin_view(require_POST(self.verify_chain_view))
        return [path("verify/", verify, name="privacy_auditentry_verify"), *super().get_urls()]

    def verify_chain_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        self.verify_chain(request, self.get_queryset(request).none())
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
            target = reverse("admin:privacy_auditentry_changelist")
        return HttpResponseRedirect(target)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Verify the whole audit chain")
    def verify_chain(self, request, queryset):
        report = audit_chain_verify()
        if report.intact:
            self.message_user(request, f"Audit chain intact: {report.checked} entries verified.", messages.SUCCESS)
        else:
            brk = report.first_break
            self.message_user(request, f"Audit chain broken at entry {brk.entry_id}: {brk.reason}.", messages.ERROR)
