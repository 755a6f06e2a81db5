"""What officers read in the admin: deadlines in words, names for actors, readable results, confirmed edits."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from merchants.models import ApiKey, ApiKeyKind
from privacy.audit import audit_record
from privacy.models import ActivityStatus, AuditEntry, DataSubjectRequest, ProcessingActivity, Purpose, RequestStatus
from privacy.subject_rights import subject_request_process, subject_request_submit
from tests.privacy.rights_data import make_consumer, make_event

REQUESTS = "/admin/privacy/datasubjectrequest/"
ACTIVITIES = "/admin/privacy/processingactivity/"
AUDIT = "/admin/privacy/auditentry/"


@pytest.fixture
def officer_client(client, officer):
    client.force_login(officer)
    return client


def test_the_deadline_column_says_overdue_only_for_late_open_requests(officer_client):
    fresh = subject_request_submit(kind="access", raw_identifier="a@example.test", actor="apikey:1")
    late = subject_request_submit(kind="erasure", raw_identifier="b@example.test", actor="apikey:1")
    DataSubjectRequest.objects.filter(pk=late.pk).update(due_at=timezone.now() - timedelta(days=3, hours=1))
    done = subject_request_submit(kind="access", raw_identifier="c@example.test", actor="apikey:1")
    DataSubjectRequest.objects.filter(pk=done.pk).update(
        status=RequestStatus.COMPLETED, due_at=timezone.now() - timedelta(days=9)
    )

    page = officer_client.get(REQUESTS).content.decode()
    assert "Overdue by 3 days" in page
    assert page.count("Overdue by") == 1  # the completed request is past its date but not overdue
    assert "Due in 29 days" in page or "Due in 30 days" in page
    assert "icon-no.svg" not in page  # no red ✗ for requests that are not late
    assert fresh.pk


def test_actors_are_shown_by_name(officer_client, officer, merchant):
    key = ApiKey.objects.create(
        kind=ApiKeyKind.MERCHANT, merchant=merchant, name="CRM sync", prefix="abc", key_digest="d" * 64
    )
    audit_record(actor=f"user:{officer.pk}", action="test.officer")
    audit_record(actor=f"apikey:{key.pk}", action="test.key")
    audit_record(actor="task:segments.refresh", action="test.task")

    page = officer_client.get(AUDIT).content.decode()
    assert f"{officer.username} (user {officer.pk})" in page
    assert f"API key “CRM sync” of {merchant.name}" in page
    assert "scheduled task segments.refresh" in page


def test_an_access_result_is_summarised_and_downloadable(officer_client, officer, merchant, approve_activity):
    consumer = make_consumer("d@example.test")
    for _ in range(3):
        make_event(consumer, merchant)
    request = subject_request_submit(kind="access", raw_identifier="d@example.test", actor="apikey:1")
    subject_request_process(request_id=request.pk, officer=officer)

    detail = officer_client.get(f"{REQUESTS}{request.pk}/change/").content.decode()
    assert "Access document generated" in detail
    assert "consumers.events" in detail
    assert "<pre>" not in detail  # not the whole document dumped into the page
    download = officer_client.get(f"{REQUESTS}{request.pk}/result.json")
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment;")
    assert json.loads(download.content)["request_id"] == request.pk
    assert AuditEntry.objects.filter(action="subject_request.result_downloaded", object_id=str(request.pk)).exists()
    assert officer_client.get(f"{REQUESTS}999999/result.json").status_code == 404


def test_the_download_is_for_officers_only(client, merchant_user):
    request = subject_request_submit(kind="access", raw_identifier="e@example.test", actor="apikey:1")
    client.force_login(merchant_user)
    response = client.get(f"{REQUESTS}{request.pk}/result.json")
    assert response.status_code in (302, 403)


def _approved(approve_activity) -> ProcessingActivity:
    activity = approve_activity(Purpose.TAGGING)
    assert activity.status == ActivityStatus.APPROVED
    return activity


def _form_data(activity: ProcessingActivity, **changes) -> dict:
    data = {
        field: getattr(activity, field)
        for field in (
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
        )
    }
    return {k: ("" if v is None else v) for k, v in {**data, **changes}.items()}


def test_editing_an_approved_activity_asks_first_and_says_so_after(officer_client, approve_activity):
    activity = _approved(approve_activity)
    url = f"{ACTIVITIES}{activity.pk}/change/"
    assert "I understand that saving returns this activity to draft" in officer_client.get(url).content.decode()

    refused = officer_client.post(url, _form_data(activity, description="Widened to the new app."))
    assert refused.status_code == 200
    assert "Tick the box to save anyway" in refused.content.decode()
    activity.refresh_from_db()
    assert activity.status == ActivityStatus.APPROVED  # nothing saved, launches still allowed

    saved = officer_client.post(
        url, _form_data(activity, description="Widened to the new app.", confirm_return_to_draft="on"), follow=True
    )
    activity.refresh_from_db()
    assert (activity.status, activity.description) == (ActivityStatus.DRAFT, "Widened to the new app.")
    assert "is back in draft" in saved.content.decode()


def test_saving_an_approved_activity_unchanged_needs_no_confirmation(officer_client, approve_activity):
    activity = _approved(approve_activity)
    response = officer_client.post(f"{ACTIVITIES}{activity.pk}/change/", _form_data(activity))
    assert response.status_code == 302
    activity.refresh_from_db()
    assert activity.status == ActivityStatus.APPROVED


# Derived records (read-only), and records officers change only through their actions.
RECORDS_NEVER_ADDED_OR_DELETED = [
    "campaigns/campaign",
    "campaigns/delivery",
    "campaigns/trackingevent",
    "journeys/journey",
    "tags/tag",
    "tags/consumertag",
    "tags/storedbitmap",
    "tags/taggingrun",
    "predict/modelcard",
    "privacy/auditentry",
    "privacy/datasubjectrequest",
    "privacy/riskflag",
    "privacy/counterstatement",
]


@pytest.mark.parametrize("record", RECORDS_NEVER_ADDED_OR_DELETED)
def test_records_can_be_looked_at_but_not_added_or_deleted_even_by_a_superuser(admin_client, record):
    listing = admin_client.get(f"/admin/{record}/")
    assert listing.status_code == 200
    assert b"delete_selected" not in listing.content
    assert admin_client.get(f"/admin/{record}/add/").status_code == 403
