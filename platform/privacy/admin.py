"""The privacy officers' admin: the register with approve/suspend and its record of processing, read-only
ledger and audit log, the data-subject request queue, risk flags (the blacklist) and counter statements."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .audit import audit_chain_verify, audit_record
from .messaging import minors_allowed
from .models import (
    ActivityStatus,
    AuditEntry,
    BudgetPeriod,
    ConsentRecord,
    ConsentState,
    CounterStatement,
    DataSubjectRequest,
    MessagingPolicy,
    PrivacyBudget,
    ProcessingActivity,
    ReleaseLedger,
    RiskFlag,
    RiskFlagStatus,
    StatementStatus,
    Suppression,
)
from .records import processing_record_export
from .risk_flags import RiskReviewError, counter_statement_dismiss, counter_statement_uphold, risk_flags_lift
from .selectors import actor_labels, budget_allowance, budget_remaining
from .services import activity_approve, activity_revert_to_draft, activity_suspend
from .subject_rights import (
    SubjectRequestError,
    open_requests,
    overdue_requests,
    section_counts,
    subject_request_preview,
    subject_request_process,
    subject_request_reject,
    subject_request_start,
)

# The audit actors' names for the list page being rendered, resolved in one query per kind (see actor_column).
_ACTOR_LABELS: ContextVar[dict[str, str] | None] = ContextVar("actor_labels", default=None)


def _with_actor_labels(changelist, field: str = "actor"):
    _ACTOR_LABELS.set(actor_labels({getattr(row, field) for row in changelist.result_list}))
    return changelist


def actor_name(actor: str) -> str:
    labels = _ACTOR_LABELS.get() or {}
    return labels[actor] if actor in labels else actor_labels([actor])[actor]


class ActivityForm(forms.ModelForm):
    """The register's form. Changing an approved or suspended activity sends it back to draft, which stops every
    job relying on it until an officer approves it again: the officer confirms that before anything is saved."""

    confirm_return_to_draft = forms.BooleanField(
        required=False,
        label="I understand that saving returns this activity to draft",
        help_text="Launches, sends and jobs that rely on it are refused until it is approved again.",
    )

    class Meta:
        model = ProcessingActivity
        fields = [
            "name",
            "purpose",
            "legal_basis",
            "description",
            "assessment",
            "disclosure_url",
            "counter_statement_channel",
            "data_categories",
            "recipients",
            "retention",
            "safeguards",
        ]

    def clean(self):
        cleaned = super().clean()
        changed = [name for name in self.changed_data if name != "confirm_return_to_draft"]
        stored = self.instance.status if self.instance.pk else ActivityStatus.DRAFT
        # "Save and approve" re-approves at once, so nothing is left in draft: no confirmation needed.
        approving = getattr(self, "approving", False)
        if changed and stored != ActivityStatus.DRAFT and not approving and not cleaned.get("confirm_return_to_draft"):
            self.add_error(
                "confirm_return_to_draft",
                f"This activity is {self.instance.get_status_display().lower()}. Saving these changes returns it to "
                "draft, and every launch, send and job relying on it is refused until it is approved again. Tick "
                "the box to save anyway.",
            )
        return cleaned


class ReadOnlyAdmin(admin.ModelAdmin):
    """Officers may look and filter, never add, change or delete."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ActionsOnlyAdmin(admin.ModelAdmin):
    """Records officers change only through their actions (services that check and audit): never added or
    deleted here."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(ProcessingActivity)
class ProcessingActivityAdmin(admin.ModelAdmin):
    list_display = ["name", "purpose", "legal_basis", "status", "approved_by", "approved_at"]
    list_filter = ["purpose", "legal_basis", "status"]
    search_fields = ["name", "description"]
    readonly_fields = ["status", "approved_by", "approved_at", "created_at", "updated_at"]
    form = ActivityForm
    actions = ["approve_selected", "suspend_selected", "export_record_csv", "export_record_json"]
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

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.approving = "_approve" in request.POST
        return form

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or obj.status == ActivityStatus.DRAFT:
            return fieldsets
        return [*fieldsets, ("Return to draft", {"fields": ["confirm_return_to_draft"]})]

    def save_model(self, request, obj, form, change):
        # Any edit of an approved (or suspended) activity sends it back for approval, through the audited service;
        # the form made the officer confirm it. `status` is read-only in the form, so obj.status is the stored one.
        changed = [name for name in form.changed_data if name != "confirm_return_to_draft"]
        if change and changed and obj.status != ActivityStatus.DRAFT:
            activity_revert_to_draft(activity=obj, officer=request.user)
            self.message_user(
                request,
                f"“{obj.name}” was changed and is back in draft: launches, sends and jobs relying on it are refused "
                "until it is approved again.",
                messages.WARNING,
            )
            return
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

    def get_urls(self):
        record = path(
            "record/",
            self.admin_site.admin_view(self.record_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_record",
        )
        return [record, *super().get_urls()]

    def _record_response(self, request, fmt: str, activities=None) -> HttpResponse:
        text = processing_record_export(fmt=fmt, actor=f"user:{request.user.pk}", activities=activities)
        content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
        response = HttpResponse(text, content_type=content_type)
        stamp = timezone.now().strftime("%Y%m%d")
        response["Content-Disposition"] = f'attachment; filename="record-of-processing-{stamp}.{fmt}"'
        return response

    def record_view(self, request):
        """The whole register as a record of processing activities, ?format=csv|json."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        fmt = request.GET.get("format", "csv")
        if fmt not in ("csv", "json"):
            fmt = "csv"
        return self._record_response(request, fmt)

    @admin.action(description="Export the selected as a record of processing (CSV)", permissions=["view"])
    def export_record_csv(self, request, queryset):
        return self._record_response(request, "csv", queryset)

    @admin.action(description="Export the selected as a record of processing (JSON)", permissions=["view"])
    def export_record_json(self, request, queryset):
        return self._record_response(request, "json", queryset)


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
    list_display = ["id", "created_at", "actor_column", "action", "merchant_id", "purpose", "legal_basis", "counts"]
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

    def get_changelist_instance(self, request):
        return _with_actor_labels(super().get_changelist_instance(request))

    @admin.display(description="actor", ordering="actor")
    def actor_column(self, obj: AuditEntry) -> str:
        return actor_name(obj.actor)

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "actor_column"]

    @admin.action(description="Verify the whole audit chain")
    def verify_chain(self, request, queryset):
        report = audit_chain_verify()
        if report.intact:
            self.message_user(request, f"Audit chain intact: {report.checked} entries verified.", messages.SUCCESS)
        else:
            self.message_user(request, f"{report.first_break.describe().capitalize()}.", messages.ERROR)


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 80}), required=True, strip=True)


def reason_step(modeladmin, request, queryset, *, action: str, title: str, explanation: str, label: str):
    """An action's second page asking for a reason. Returns the reason once submitted, else the page."""
    if request.POST.get("apply"):
        form = ReasonForm(request.POST)
        if form.is_valid():
            return form.cleaned_data["reason"]
    else:
        form = ReasonForm()
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.model._meta,
        "title": title,
        "explanation": explanation,
        "queryset": queryset,
        "form": form,
        "action": action,
        "submit_label": label,
    }
    return TemplateResponse(request, "admin/privacy/action_reason.html", context)


def apply_to_each(
    modeladmin,
    request,
    items,
    apply: Callable[[Any], Any],
    *,
    refused: type[Exception],
    succeeded: Callable[[Any, Any], str],
) -> None:
    """An officer's action on each selected item, through its service.

    A refusal (`refused`, e.g. a request already closed) is a warning about that item and the others go on;
    `succeeded(item, result)` is the message for one that went through.
    """
    for item in items:
        try:
            result = apply(item)
        except refused as exc:
            modeladmin.message_user(request, str(exc), messages.WARNING)
        else:
            modeladmin.message_user(request, succeeded(item, result), messages.SUCCESS)


class OverdueFilter(admin.SimpleListFilter):
    title = "due date"
    parameter_name = "due"

    def lookups(self, request, model_admin):
        return [("overdue", "Overdue"), ("week", "Due within 7 days")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "overdue":
            return overdue_requests(queryset, now=now)
        if self.value() == "week":
            return open_requests(queryset).filter(due_at__gte=now, due_at__lt=now + timezone.timedelta(days=7))
        return queryset


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(ActionsOnlyAdmin):
    """The officers' queue. Requests arrive through the operator API; officers process or reject them."""

    list_display = ["id", "kind", "status", "received_at", "due_at", "deadline", "handled_by", "completed_at", "error"]
    list_filter = [OverdueFilter, "status", "kind"]
    date_hierarchy = "received_at"
    ordering = ["due_at"]
    actions = ["start_selected", "process_selected", "reject_selected"]
    fields = [
        "kind",
        "status",
        "received_at",
        "due_at",
        "started_at",
        "completed_at",
        "handled_by",
        "submitted_by_name",
        "rejection_reason",
        "error",
        "result_summary",
    ]
    readonly_fields = fields
    # The confirmation page previews each request by counting what is held about its subject: keep it bounded.
    preview_limit = 50

    def get_urls(self):
        download = self.admin_site.admin_view(self.result_download_view)
        return [
            path("<int:pk>/result.json", download, name="privacy_datasubjectrequest_result"),
            *super().get_urls(),
        ]

    def get_changelist_instance(self, request):
        return _with_actor_labels(super().get_changelist_instance(request), field="submitted_by")

    @admin.display(description="deadline", ordering="due_at")
    def deadline(self, obj: DataSubjectRequest):
        # Words, not a ✓/✗: a closed request has no deadline left, and an open one is either late or not yet due.
        if not obj.is_open:
            return "—"
        days = (obj.due_at - timezone.now()).total_seconds() / 86400
        if days < 0:
            late = max(1, int(-days))
            return format_html('<strong class="deadline-overdue">Overdue by {} day{}</strong>', late, "s"[late == 1 :])
        left = int(days)
        return "Due today" if left == 0 else f"Due in {left} day{'s'[left == 1 :]}"

    @admin.display(description="submitted by")
    def submitted_by_name(self, obj: DataSubjectRequest) -> str:
        return actor_name(obj.submitted_by)

    @admin.display(description="result")
    def result_summary(self, obj: DataSubjectRequest):
        """A readable summary of the result, and the whole document as a download (never a page-long dump)."""
        result = obj.result or {}
        if not result:
            return "No result yet."
        download = reverse("admin:privacy_datasubjectrequest_result", args=[obj.pk])
        if "redacted" in result:
            return "The access document was redacted: the subject was later erased."
        if obj.kind == "access":
            counts = section_counts(result.get("sections", {}))
            headline = (
                f"Access document generated {result.get('generated_at', '')[:16].replace('T', ' ')} UTC: "
                f"{sum(counts.values())} records in {len([n for n in counts.values() if n])} parts."
                if result.get("subject_known")
                else "The platform held nothing about this consumer; the document says so."
            )
        elif obj.kind == "erasure":
            counts = {
                f"{part}.{table}": n
                for part, tables in result.get("removed", {}).items()
                for table, n in tables.items()
            }
            headline = f"Erased {result.get('total_rows_removed', 0)} records."
        else:
            counts = {}
            headline = (
                "Direct-marketing consent withdrawn and every future message suppressed."
                if result.get("consent_withdrawn") or result.get("suppressed")
                else "The platform held nothing about this consumer."
            )
        rows = format_html_join(
            "", "<tr><td>{}</td><td class='numeric'>{}</td></tr>", sorted((k, n) for k, n in counts.items() if n)
        )
        table = format_html("<table class='result-summary'><tbody>{}</tbody></table>", rows) if counts else ""
        return format_html(
            '<p>{}</p>{}<p><a class="button" href="{}">Download the whole result (JSON)</a></p>',
            headline,
            table,
            download,
        )

    def result_download_view(self, request, pk: int):
        if not self.has_view_permission(request):
            raise PermissionDenied
        found = DataSubjectRequest.objects.filter(pk=pk).first()
        if found is None:
            raise Http404
        audit_record(
            actor=f"user:{request.user.pk}",
            action="subject_request.result_downloaded",
            object_type="DataSubjectRequest",
            object_id=found.pk,
            details={"kind": found.kind},
        )
        response = HttpResponse(
            json.dumps(found.result, indent=2, ensure_ascii=False), content_type="application/json; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="data-subject-request-{found.pk}-{found.kind}.json"'
        return response

    @admin.action(description="Mark the selected as in progress (taken on)", permissions=["change"])
    def start_selected(self, request, queryset):
        apply_to_each(
            self,
            request,
            queryset,
            lambda item: subject_request_start(request_id=item.pk, officer=request.user),
            refused=SubjectRequestError,
            succeeded=lambda item, _: f"Request {item.pk} is in progress.",
        )

    @admin.action(description="Process and complete the selected (access, erasure, objection)", permissions=["change"])
    def process_selected(self, request, queryset):
        if not request.POST.get("confirmed"):
            return self._process_confirmation(request, queryset)
        for item in queryset:
            try:
                done = subject_request_process(request_id=item.pk, officer=request.user)
            except SubjectRequestError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            except Exception:  # the request records what failed; nothing was changed
                item.refresh_from_db()
                self.message_user(request, f"Request {item.pk} was not completed: {item.error}", messages.ERROR)
            else:
                self.message_user(request, f"Request {done.pk} ({done.kind}) completed.", messages.SUCCESS)

    def _process_confirmation(self, request, queryset):
        """The page between choosing and processing: what each request will do, erasures counted record by record."""
        selected = list(queryset.order_by("due_at", "id")[: self.preview_limit + 1])
        if len(selected) > self.preview_limit:
            self.message_user(
                request,
                f"Select at most {self.preview_limit} requests at a time: each is previewed before it is processed.",
                messages.WARNING,
            )
            return None
        previews = [
            (item, subject_request_preview(request_id=item.pk, officer=request.user) if item.is_open else None)
            for item in selected
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Process data-subject requests?",
            "previews": previews,
            "erasures": sum(1 for item, preview in previews if preview and item.kind == "erasure"),
            "open_count": sum(1 for _, preview in previews if preview),
            "action": "process_selected",
        }
        return TemplateResponse(request, "admin/privacy/process_confirm.html", context)

    @admin.action(description="Reject the selected, with a reason", permissions=["change"])
    def reject_selected(self, request, queryset):
        reason = reason_step(
            self,
            request,
            queryset,
            action="reject_selected",
            title="Reject data-subject requests",
            explanation="Give the reason the consumer will be told (for example: identity could not be verified).",
            label="Reject",
        )
        if not isinstance(reason, str):
            return reason
        apply_to_each(
            self,
            request,
            queryset,
            lambda item: subject_request_reject(request_id=item.pk, officer=request.user, reason=reason),
            refused=SubjectRequestError,
            succeeded=lambda item, _: f"Request {item.pk} rejected.",
        )
        return None


class ActiveFlagFilter(admin.SimpleListFilter):
    """The blacklist is the active flags; officers see it by default."""

    title = "status"
    parameter_name = "flag_status"

    def lookups(self, request, model_admin):
        return [("active", "Active (blacklist)"), ("lifted", "Lifted"), ("all", "All")]

    def choices(self, changelist):
        value = self.value() or "active"
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        value = self.value() or "active"
        if value == "all":
            return queryset
        return queryset.filter(status=RiskFlagStatus.LIFTED if value == "lifted" else RiskFlagStatus.ACTIVE)


@admin.register(RiskFlag)
class RiskFlagAdmin(ActionsOnlyAdmin):
    list_display = ["id", "consumer_id", "reason", "score", "evidence", "status", "created_at", "last_seen_at"]
    list_filter = [ActiveFlagFilter, "reason", "rule_version"]
    date_hierarchy = "created_at"
    actions = ["lift_selected"]
    readonly_fields = [
        "consumer_id",
        "reason",
        "rule_version",
        "score",
        "evidence",
        "status",
        "activity_id",
        "created_at",
        "last_seen_at",
        "lifted_at",
        "lift_reason",
    ]
    fields = readonly_fields

    @admin.action(description="Lift the selected flags (and their offer suppressions)", permissions=["change"])
    def lift_selected(self, request, queryset):
        reason = reason_step(
            self,
            request,
            queryset,
            action="lift_selected",
            title="Lift risk flags",
            explanation="Why are these flags lifted? The same evidence will not raise them again.",
            label="Lift",
        )
        if not isinstance(reason, str):
            return reason
        counts = risk_flags_lift(flag_ids=[f.pk for f in queryset], officer=request.user, note=reason)
        self.message_user(
            request,
            f"{counts['flags_lifted']} flags and {counts['suppressions_lifted']} suppressions lifted.",
            messages.SUCCESS,
        )
        return None


@admin.register(CounterStatement)
class CounterStatementAdmin(ActionsOnlyAdmin):
    list_display = ["id", "status", "flag", "created_at", "reviewed_by", "reviewed_at"]
    list_filter = ["status"]
    date_hierarchy = "created_at"
    actions = ["uphold_selected", "dismiss_selected"]
    readonly_fields = [
        "consumer_id",
        "flag",
        "statement",
        "status",
        "submitted_by",
        "created_at",
        "reviewed_by",
        "reviewed_at",
        "review_note",
    ]
    fields = readonly_fields

    @admin.action(description="Uphold the selected (lift the flag and its suppression)", permissions=["change"])
    def uphold_selected(self, request, queryset):
        apply_to_each(
            self,
            request,
            queryset.filter(status=StatementStatus.RECEIVED),
            lambda item: counter_statement_uphold(statement_id=item.pk, officer=request.user),
            refused=RiskReviewError,
            succeeded=lambda item, counts: (
                f"Statement {item.pk} upheld: {counts['flags_lifted']} flags and "
                f"{counts['suppressions_lifted']} suppressions lifted."
            ),
        )

    @admin.action(description="Dismiss the selected, with a reason", permissions=["change"])
    def dismiss_selected(self, request, queryset):
        reason = reason_step(
            self,
            request,
            queryset,
            action="dismiss_selected",
            title="Dismiss counter statements",
            explanation="Give the reason the consumer will be told; the flags stay.",
            label="Dismiss",
        )
        if not isinstance(reason, str):
            return reason
        apply_to_each(
            self,
            request,
            queryset,
            lambda item: counter_statement_dismiss(statement_id=item.pk, officer=request.user, note=reason),
            refused=RiskReviewError,
            succeeded=lambda item, _: f"Statement {item.pk} dismissed.",
        )
        return None


@admin.register(Suppression)
class SuppressionAdmin(ReadOnlyAdmin):
    list_display = ["id", "consumer_id", "reason", "scope", "reference", "created_at", "lifted_at"]
    list_filter = ["reason", "scope", ("lifted_at", admin.EmptyFieldListFilter)]


# ------------------------------------------------------------------------------------------------ messaging policy


@admin.register(MessagingPolicy)
class MessagingPolicyAdmin(admin.ModelAdmin):
    """The officers' settings of "may this consumer be messaged now" (privacy/messaging.py): one row at most."""

    list_display = ("__str__", "minors_allowed", "in_force", "note", "updated_by", "updated_at")
    fields = ("minors_allowed", "note", "updated_by", "updated_at")
    readonly_fields = ("updated_by", "updated_at")

    @admin.display(description="minors may be messaged (in force)", boolean=True)
    def in_force(self, obj: MessagingPolicy) -> bool:
        return minors_allowed()

    def has_add_permission(self, request) -> bool:
        return super().has_add_permission(request) and not MessagingPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # set the field to empty instead: the environment default then applies, and it is audited

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)
        audit_record(
            actor=f"user:{request.user.pk}",
            action="messaging_policy.set",
            object_type="MessagingPolicy",
            object_id=obj.pk,
            details={"minors_allowed": obj.minors_allowed, "in_force": minors_allowed(), "note": obj.note},
        )


# ------------------------------------------------------------------------------------------------ privacy budget


@admin.register(PrivacyBudget)
class PrivacyBudgetAdmin(admin.ModelAdmin):
    """Officers set a merchant's allowance per period; merchants without a row have the documented default."""

    list_display = ("merchant", "allowance_rho", "spent_this_period", "remaining_this_period", "updated_at")
    search_fields = ("merchant__name", "merchant__slug")
    fields = ("merchant", "allowance_rho", "note", "updated_by", "updated_at")
    readonly_fields = ("updated_by", "updated_at")

    @admin.display(description="spent this period (ρ)")
    def spent_this_period(self, obj: PrivacyBudget) -> str:
        return f"{budget_remaining(merchant_id=obj.merchant_id).spent:.4f}"

    @admin.display(description="remaining (ρ)")
    def remaining_this_period(self, obj: PrivacyBudget) -> str:
        return f"{budget_remaining(merchant_id=obj.merchant_id).remaining:.4f}"

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)
        audit_record(
            actor=f"user:{request.user.pk}",
            action="privacy_budget.allowance_set",
            merchant_id=obj.merchant_id,
            object_type="PrivacyBudget",
            object_id=obj.pk,
            details={"allowance_rho": obj.allowance_rho, "note": obj.note},
        )


@admin.register(BudgetPeriod)
class BudgetPeriodAdmin(ReadOnlyAdmin):
    """Each merchant's spending per period: new distinct releases and the ρ they cost (repeats are free)."""

    list_display = ("merchant", "period_start", "spent_rho", "releases", "allowance", "updated_at")
    list_filter = ("period_start",)
    search_fields = ("merchant__name", "merchant__slug")

    @admin.display(description="allowance (ρ)")
    def allowance(self, obj: BudgetPeriod) -> float:
        return budget_allowance(merchant_id=obj.merchant_id)


@admin.register(ReleaseLedger)
class ReleaseLedgerAdmin(ReadOnlyAdmin):
    """Every distinct release given to a merchant: what it cost and the noisy value released (officers only)."""

    list_display = ("released_at", "merchant", "precision", "measure", "rho", "value")
    list_filter = ("precision", "measure", "period_start")
    search_fields = ("merchant__name", "merchant__slug")


# --------------------------------------------------------------------------- sign-in lockouts (django-axes)

from axes.models import AccessAttempt, AccessFailureLog  # noqa: E402  (axes is installed after this app)

from .logins import LoginUnlockError, login_unlock  # noqa: E402


@admin.register(AccessAttempt)
class LoginLockoutAdmin(ReadOnlyAdmin):
    """Failed sign-ins per username and address; officers unlock with an audited action, never by deleting rows."""

    list_display = ["username", "ip_address", "failures_since_start", "attempt_time", "locked"]
    list_filter = ["attempt_time"]
    search_fields = ["username", "ip_address"]
    fields = ["username", "ip_address", "user_agent", "path_info", "failures_since_start", "attempt_time"]
    actions = ["unlock_selected"]

    @admin.display(boolean=True, description="locked")
    def locked(self, obj: AccessAttempt) -> bool:
        from django.conf import settings

        return obj.failures_since_start >= settings.AXES_FAILURE_LIMIT

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        if not request.user.has_perm("axes.delete_accessattempt"):
            actions.pop("unlock_selected", None)
        return actions

    @admin.action(description="Unlock the selected sign-ins (audited)")
    def unlock_selected(self, request, queryset):
        if not request.user.has_perm("axes.delete_accessattempt"):
            raise PermissionDenied
        removed = 0
        for username, address in set(queryset.values_list("username", "ip_address")):
            try:
                removed += login_unlock(username=username or "", ip_address=address, actor=f"user:{request.user.pk}")
            except LoginUnlockError:
                continue
        self.message_user(request, f"Unlocked: {removed} lockout record(s) removed.", messages.SUCCESS)


@admin.register(AccessFailureLog)
class LoginFailureLogAdmin(ReadOnlyAdmin):
    list_display = ["username", "ip_address", "attempt_time", "locked_out"]
    list_filter = ["locked_out", "attempt_time"]
    search_fields = ["username", "ip_address"]
