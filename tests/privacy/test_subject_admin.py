"""The officers' side: request queue, counter-statement review, blacklist, through the real admin pages."""

from datetime import timedelta

import pytest
from django.utils import timezone

from consumers.models import Consumer
from privacy.models import (
    AuditEntry,
    CounterStatement,
    DataSubjectRequest,
    Purpose,
    RequestStatus,
    RiskFlag,
    RiskReason,
    StatementStatus,
)
from privacy.risk_flags import RiskFinding, counter_statement_file, risk_flags_record
from privacy.services import processing_basis_require
from privacy.subject_rights import subject_request_submit
from tests.privacy.rights_data import make_consumer, make_event

REQUESTS = "/admin/privacy/datasubjectrequest/"
STATEMENTS = "/admin/privacy/counterstatement/"
FLAGS = "/admin/privacy/riskflag/"


@pytest.fixture
def officer_client(client, officer):
    client.force_login(officer)
    return client


def act(client, url, action, ids, **extra):
    return client.post(url, {"action": action, "_selected_action": [str(i) for i in ids], **extra})


def test_the_queue_lists_requests_and_filters_the_overdue(officer_client):
    fresh = subject_request_submit(kind="access", raw_identifier="a@example.test", actor="apikey:1")
    late = subject_request_submit(kind="erasure", raw_identifier="b@example.test", actor="apikey:1")
    DataSubjectRequest.objects.filter(pk=late.pk).update(due_at=timezone.now() - timedelta(days=1))

    page = officer_client.get(REQUESTS)
    assert page.status_code == 200
    assert f"{REQUESTS}{fresh.pk}/change/" in page.content.decode()
    overdue = officer_client.get(REQUESTS + "?due=overdue").content.decode()
    assert f"{REQUESTS}{late.pk}/change/" in overdue
    assert f"{REQUESTS}{fresh.pk}/change/" not in overdue
    assert officer_client.get(f"{REQUESTS}{late.pk}/change/").status_code == 200
    assert officer_client.get(f"{REQUESTS}add/").status_code == 403


def test_officer_processes_an_erasure_from_the_admin(officer_client, officer, merchant):
    consumer = make_consumer("c@example.test")
    make_event(consumer, merchant)
    request = subject_request_submit(kind="erasure", raw_identifier="c@example.test", actor="apikey:1")
    act(officer_client, REQUESTS, "start_selected", [request.pk])
    request.refresh_from_db()
    assert (request.status, request.handled_by) == (RequestStatus.IN_PROGRESS, officer)

    # First a confirmation page that says what will be erased; nothing is erased yet.
    confirmation = act(officer_client, REQUESTS, "process_selected", [request.pk])
    assert confirmation.status_code == 200
    page = confirmation.content.decode()
    assert "cannot be undone" in page
    assert "What will be erased" in page
    assert "consumers.events" in page
    request.refresh_from_db()
    assert request.status == RequestStatus.IN_PROGRESS
    assert Consumer.objects.filter(pk=consumer.pk).exists()

    response = act(officer_client, REQUESTS, "process_selected", [request.pk], confirmed="1")
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED
    assert request.result["removed"]["consumers"]["events"] == 1
    assert not Consumer.objects.filter(pk=consumer.pk).exists()
    detail = officer_client.get(f"{REQUESTS}{request.pk}/change/").content.decode()
    assert "Erased " in detail
    assert "Download the whole result" in detail


def test_rejecting_asks_for_a_reason_first(officer_client, officer):
    request = subject_request_submit(kind="access", raw_identifier="d@example.test", actor="apikey:1")
    form = act(officer_client, REQUESTS, "reject_selected", [request.pk])
    assert form.status_code == 200
    assert 'name="reason"' in form.content.decode()
    request.refresh_from_db()
    assert request.status == RequestStatus.RECEIVED

    empty = act(officer_client, REQUESTS, "reject_selected", [request.pk], apply="1", reason="  ")
    assert empty.status_code == 200
    request.refresh_from_db()
    assert request.status == RequestStatus.RECEIVED

    act(officer_client, REQUESTS, "reject_selected", [request.pk], apply="1", reason="Identity not verified.")
    request.refresh_from_db()
    assert (request.status, request.rejection_reason) == (RequestStatus.REJECTED, "Identity not verified.")
    assert AuditEntry.objects.filter(action="subject_request.rejected", actor=f"user:{officer.pk}").exists()
    # A closed request cannot be processed afterwards.
    confirmation = act(officer_client, REQUESTS, "process_selected", [request.pk])
    assert "Already rejected" in confirmation.content.decode()
    act(officer_client, REQUESTS, "process_selected", [request.pk], confirmed="1")
    request.refresh_from_db()
    assert request.status == RequestStatus.REJECTED


@pytest.fixture
def statement(approve_activity):
    approve_activity(Purpose.RISK_CONTROL)
    consumer = make_consumer("e@example.test")
    risk_flags_record(
        findings=[RiskFinding(consumer.pk, RiskReason.OFFER_MULTI_ACCOUNT, 4, {"accounts_redeeming_on_device": 4})],
        basis=processing_basis_require(purpose=Purpose.RISK_CONTROL),
        rule_version="test",
        actor="test",
        flag_ttl_days=90,
    )
    return counter_statement_file(pseudonym=consumer.pseudonym, statement="Shared phone.", flag_id=None, actor="t")


def test_officer_upholds_a_counter_statement_from_the_admin(officer_client, statement):
    assert officer_client.get(STATEMENTS).status_code == 200
    assert officer_client.get(f"{STATEMENTS}{statement.pk}/change/").status_code == 200
    act(officer_client, STATEMENTS, "uphold_selected", [statement.pk])
    statement.refresh_from_db()
    assert statement.status == StatementStatus.UPHELD
    assert not RiskFlag.objects.filter(status="active").exists()


def test_officer_dismisses_with_a_reason(officer_client, statement):
    assert act(officer_client, STATEMENTS, "dismiss_selected", [statement.pk]).status_code == 200
    act(officer_client, STATEMENTS, "dismiss_selected", [statement.pk], apply="1", reason="Evidence stands.")
    assert CounterStatement.objects.get().status == StatementStatus.DISMISSED
    assert RiskFlag.objects.filter(status="active").count() == 1


def test_the_blacklist_shows_active_flags_by_default(officer_client, statement):
    flag = RiskFlag.objects.get()
    assert f"{FLAGS}{flag.pk}/change/" in officer_client.get(FLAGS).content.decode()
    act(officer_client, FLAGS, "lift_selected", [flag.pk], apply="1", reason="Checked by phone.")
    assert f"{FLAGS}{flag.pk}/change/" not in officer_client.get(FLAGS).content.decode()
    assert f"{FLAGS}{flag.pk}/change/" in officer_client.get(FLAGS + "?flag_status=lifted").content.decode()


def test_officers_can_see_suppressions_but_not_change_them(officer_client, statement):
    assert officer_client.get("/admin/privacy/suppression/").status_code == 200
    assert officer_client.get("/admin/privacy/suppression/add/").status_code == 403
