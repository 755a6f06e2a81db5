from datetime import timedelta

import pytest
from django.utils import timezone

from privacy.models import AuditEntry, DataSubjectRequest, RequestStatus
from privacy.pseudonyms import pseudonymise
from privacy.subject_rights import subject_request_process
from tests.privacy.rights_data import LogCollector, consumer_traces, make_consumer, make_event

RAW = "Grace.Hopper+dmp@Example.test"
URL = "/api/v1/privacy/requests"


def post(client, **body):
    return client.post(URL, body, format="json")


def test_operator_submits_a_request_and_the_raw_id_goes_no_further(operator_client, merchant):
    grace = make_consumer(RAW)
    make_event(grace, merchant)
    with LogCollector() as logs:
        response = post(operator_client, kind="access", consumer_id=RAW)
    assert response.status_code == 201
    body = response.json()
    assert body["kind"] == "access"
    assert body["status"] == "received"
    assert body["result"] is None
    received = timezone.datetime.fromisoformat(body["received_at"])
    assert timezone.datetime.fromisoformat(body["due_at"]) - received == timedelta(days=30)

    text = response.content.decode()
    for spelling in (RAW, RAW.lower(), grace.pseudonym):
        assert spelling not in text
        assert spelling.lower() not in logs.text().lower()
    request = DataSubjectRequest.objects.get(pk=body["id"])
    assert request.pseudonym == pseudonymise(RAW) == grace.pseudonym
    assert request.submitted_by.startswith("apikey:")
    # The raw identifier is in no table at all (the pseudonym is, until erasure: it is the request's subject).
    traces = consumer_traces(consumer_id=-1, pseudonym="\x00unused", raw_id=RAW)
    assert traces == []
    assert AuditEntry.objects.filter(action="subject_request.received", object_id=str(request.pk)).exists()


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "forget-me", "consumer_id": RAW},
        {"kind": "erasure", "consumer_id": RAW + "x" * 400},
        {"kind": "erasure", "consumer_id": [RAW]},
        {"kind": "erasure", "consumer_id": ""},
        {"kind": "erasure"},
    ],
)
def test_bad_requests_are_refused_without_echoing_the_identifier(operator_client, body):
    with LogCollector() as logs:
        response = post(operator_client, **body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert RAW not in response.content.decode()
    assert RAW not in logs.text()
    assert not DataSubjectRequest.objects.exists()


def test_the_error_names_the_field(operator_client):
    response = post(operator_client, kind="erasure", consumer_id="")
    assert "consumer_id" in response.json()["error"]["details"]
    response = post(operator_client, kind="nope", consumer_id="x")
    assert "kind" in response.json()["error"]["details"]


def test_only_operator_keys_may_submit_or_read(client, merchant_client, operator_client):
    assert post(merchant_client, kind="access", consumer_id=RAW).status_code == 403
    assert client.post(URL, {"kind": "access", "consumer_id": RAW}, content_type="application/json").status_code == 401
    created = post(operator_client, kind="access", consumer_id=RAW).json()
    assert merchant_client.get(f"{URL}/{created['id']}").status_code == 403


def test_a_second_open_request_of_the_same_kind_is_a_conflict(operator_client):
    first = post(operator_client, kind="erasure", consumer_id=RAW).json()
    again = post(operator_client, kind="erasure", consumer_id=f" {RAW.upper()} ")
    assert again.status_code == 409
    assert again.json()["error"]["details"] == {"existing_request": first["id"]}
    assert RAW not in again.content.decode()
    # A different kind for the same subject is its own request.
    assert post(operator_client, kind="access", consumer_id=RAW).status_code == 201


def test_reading_a_request_shows_its_result_once_completed(operator_client, officer, merchant):
    grace = make_consumer(RAW)
    make_event(grace, merchant)
    created = post(operator_client, kind="erasure", consumer_id=RAW).json()
    pending = operator_client.get(f"{URL}/{created['id']}").json()
    assert pending["status"] == "received" and pending["result"] is None

    subject_request_process(request_id=created["id"], officer=officer)
    done = operator_client.get(f"{URL}/{created['id']}")
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == RequestStatus.COMPLETED
    assert body["result"]["removed"]["consumers"]["events"] == 1
    assert body["result"]["removed"]["consumers"]["profile"] == 1
    assert grace.pseudonym not in done.content.decode()


def test_a_missing_request_is_404(operator_client):
    assert operator_client.get(f"{URL}/987654").status_code == 404


def test_objection_through_the_api_is_completed_in_the_response(operator_client):
    make_consumer(RAW)
    body = post(operator_client, kind="objection", consumer_id=RAW).json()
    assert body["status"] == "completed"
    assert body["result"]["suppressed"] is True


def test_the_due_date_follows_the_setting(operator_client, settings):
    settings.SUBJECT_REQUEST_DUE_DAYS = 10
    body = post(operator_client, kind="access", consumer_id=RAW).json()
    due = timezone.datetime.fromisoformat(body["due_at"]) - timezone.datetime.fromisoformat(body["received_at"])
    assert due == timedelta(days=10)


def test_the_endpoints_are_in_the_openapi_schema(client):
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    for path in (
        "/api/v1/privacy/requests",
        "/api/v1/privacy/requests/{id}",
        "/api/v1/privacy/counter-statements",
        "/api/v1/privacy/blacklist",
    ):
        assert path in schema["paths"], path
