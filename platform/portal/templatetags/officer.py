"""What a privacy officer needs to act on, for the admin's front page."""

from __future__ import annotations

from dataclasses import dataclass, field

from django import template
from django.db.models import Count
from django.urls import NoReverseMatch, reverse

from privacy.models import (
    ActivityStatus,
    AuditEntry,
    CounterStatement,
    ProcessingActivity,
    StatementStatus,
)
from privacy.subject_rights import open_requests, overdue_requests

register = template.Library()


@dataclass
class QueueLine:
    label: str
    count: int
    url: str
    urgent: bool = False


@dataclass
class OfficerSummary:
    awaiting_approval: int
    approved: int
    suspended: int
    audit_entries: int
    register_url: str
    drafts_url: str
    audit_url: str
    verify_url: str
    queues: list[QueueLine] = field(default_factory=list)


def _admin_url(name: str, query: str = "") -> str:
    try:
        return reverse(f"admin:{name}") + query
    except NoReverseMatch:
        return ""


@register.simple_tag(takes_context=True)
def officer_summary(context) -> OfficerSummary | None:
    user = context["request"].user
    if not user.has_perm("privacy.view_processingactivity"):
        return None
    by_status = dict.fromkeys(ActivityStatus.values, 0)
    by_status.update(ProcessingActivity.objects.values_list("status").annotate(n=Count("id")).order_by())
    summary = OfficerSummary(
        awaiting_approval=by_status[ActivityStatus.DRAFT],
        approved=by_status[ActivityStatus.APPROVED],
        suspended=by_status[ActivityStatus.SUSPENDED],
        audit_entries=AuditEntry.objects.count() if user.has_perm("privacy.view_auditentry") else 0,
        register_url=_admin_url("privacy_processingactivity_changelist"),
        drafts_url=_admin_url("privacy_processingactivity_changelist", "?status__exact=draft"),
        audit_url=_admin_url("privacy_auditentry_changelist") if user.has_perm("privacy.view_auditentry") else "",
        verify_url=_admin_url("privacy_auditentry_verify") if user.has_perm("privacy.view_auditentry") else "",
    )
    if user.has_perm("privacy.view_datasubjectrequest"):
        overdue = overdue_requests().count()
        summary.queues.append(
            QueueLine(
                label="data-subject requests open" + (f", {overdue} overdue" if overdue else ""),
                count=open_requests().count(),
                url=_admin_url("privacy_datasubjectrequest_changelist", "?status__in=received,in_progress"),
                urgent=overdue > 0,
            )
        )
    if user.has_perm("privacy.view_counterstatement"):
        waiting = CounterStatement.objects.filter(status=StatementStatus.RECEIVED).count()
        summary.queues.append(
            QueueLine(
                label="counter statements awaiting review",
                count=waiting,
                url=_admin_url("privacy_counterstatement_changelist", f"?status__exact={StatementStatus.RECEIVED}"),
                urgent=waiting > 0,
            )
        )
    return summary
