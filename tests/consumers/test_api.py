"""POST /api/v1/ingest/events, /ingest/profiles and /consents: operator keys, JSON arrays and NDJSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from threading import Barrier, Thread
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.models import Consumer, Event
from consumers.profiles import profiles_ingest
from merchants.models import ApiKeyKind
from merchants.services import api_key_issue
from privacy.models import ConsentRecord, ConsentState
from privacy.pseudonyms import pseudonymise

EVENTS = "/api/v1/ingest/events"
PROFILES = "/api/v1/ingest/profiles"
CONSENTS = "/api/v1/consents"


def ndjson(rows) -> str:
    return "\n".join(json.dumps(r) for r in rows) + "\n"


def test_a_json_array_of_good_rows_is_written_and_reported(operator_client, event_row):
    rows = [event_row() for _ in range(5)]
    response = operator_client.post(EVENTS, rows, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["received"], body["accepted"], body["duplicates"], body["errors"]) == (5, 5, 0, [])
    assert Event.objects.count() == 5

    again = operator_client.post(EVENTS, rows, format="json")
    assert again.status_code == 200
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 5)


def test_ndjson_is_accepted_and_blank_lines_skipped(operator_client, event_row):
    rows = [event_row() for _ in range(3)]
    body = "\n" + ndjson(rows[:2]) + "\r\n\n" + json.dumps(rows[2]) + "\r\n"
    response = operator_client.post(EVENTS, body, content_type="application/x-ndjson")
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 3


def test_some_rows_rejected_is_a_422_naming_them_and_saying_what_was_written(operator_client, event_row):
    rows = [event_row(), event_row(event_type="shout"), event_row(), event_row(quantity=-1)]
    response = operator_client.post(EVENTS, rows, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "rows_rejected"
    assert error["message"].startswith("2 of 4 events were rejected and not written; 2 were written")
    assert error["details"]["errors"] == [
        {"row": 2, "field": "event_type", "reason": "must be one of view, click, cart, favourite, purchase, cancel"},
        {"row": 4, "field": "quantity", "reason": "must be at least 1 (send a cancel event for returns)"},
    ]
    assert error["details"]["accepted"] == 2
    assert Event.objects.count() == 2


def test_atomic_true_writes_nothing_on_any_error(operator_client, event_row):
    rows = [event_row(), event_row(), event_row(sku=None)]
    response = operator_client.post(f"{EVENTS}?atomic=true", rows, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert "nothing was written" in error["message"]
    assert error["details"]["rolled_back"] is True
    assert Event.objects.count() == Consumer.objects.count() == 0

    response = operator_client.post(f"{EVENTS}?atomic=true", rows[:2], format="json")
    assert response.status_code == 200 and response.json()["accepted"] == 2


def test_a_bad_atomic_flag_is_a_400(operator_client, event_row):
    response = operator_client.post(f"{EVENTS}?atomic=perhaps", [event_row()], format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    "body,where",
    [
        ('[{"event_id": "a",\n "sku": }]', "line 2, column 9"),
        ("[1, 2", "line 1, column 6"),
        ('{"event_id": "a"', "line 1, column 17"),
    ],
)
def test_malformed_json_is_a_400_naming_line_and_column(operator_client, body, where):
    response = operator_client.post(EVENTS, body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert where in error["message"]


def test_malformed_ndjson_names_the_line(operator_client, event_row):
    body = ndjson([event_row(), event_row()]) + '{"event_id": "x", oops}\n'
    response = operator_client.post(EVENTS, body, content_type="application/x-ndjson")
    assert response.status_code == 400
    assert "line 3, column 19" in response.json()["error"]["message"]
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    "body,content_type,message",
    [
        ("", "application/json", "The body is empty"),
        ('{"event_id": "a"}', "application/json", "Expected a JSON array of rows"),
        ("[" * 100_000 + "]" * 100_000, "application/json", "nested too deeply"),
        ("[" + "9" * 5000 + "]", "application/json", "out of range"),
        (b"[\xff\xfe]", "application/json", "not UTF-8"),
    ],
)
def test_unusable_bodies_are_400s(operator_client, body, content_type, message):
    response = operator_client.post(EVENTS, body, content_type=content_type)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_another_content_type_is_a_415(operator_client):
    response = operator_client.post(EVENTS, "a,b\n1,2", content_type="text/csv")
    assert response.status_code == 415


def test_more_rows_than_the_limit_is_a_413(operator_client, event_row, settings):
    settings.INGEST_MAX_ROWS_PER_REQUEST = 3
    rows = [event_row() for _ in range(4)]
    response = operator_client.post(EVENTS, rows, format="json")
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "At most 3 rows per request; split the batch."
    response = operator_client.post(EVENTS, ndjson(rows), content_type="application/x-ndjson")
    assert response.status_code == 413
    assert operator_client.post(EVENTS, rows[:3], format="json").status_code == 200


def test_a_body_over_the_byte_limit_is_a_413(operator_client, event_row, settings):
    settings.INGEST_MAX_BODY_BYTES = 1000
    response = operator_client.post(EVENTS, [event_row() for _ in range(20)], format="json")
    assert response.status_code == 413
    assert "larger than 1,000 bytes" in response.json()["error"]["message"]
    assert Event.objects.count() == 0


def test_the_default_limit_is_fifty_thousand_rows(operator_client):
    response = operator_client.post(EVENTS, "[" + ",".join(["{}"] * 50_001) + "]", content_type="application/json")
    assert response.status_code == 413
    assert "50,000" in response.json()["error"]["message"]


def test_ingestion_needs_an_operator_key(client, merchant_client, event_row):
    response = merchant_client.post(EVENTS, [event_row()], format="json")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "This endpoint needs an operator API key."
    assert client.post(EVENTS, "[]", content_type="application/json").status_code == 401
    assert merchant_client.post(CONSENTS, [], format="json").status_code == 403
    assert merchant_client.post(PROFILES, [], format="json").status_code == 403
    assert Event.objects.count() == 0


def test_profiles_endpoint(operator_client):
    rows = [
        {"consumer_id": "pa@example.com", "age": 27, "country": "Malaysia", "gender": "m"},
        {"consumer_id": "pb@example.com", "country": "Narnia"},
    ]
    response = operator_client.post(PROFILES, rows, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"] == [
        {"row": 2, "field": "country", "reason": "is not a recognised country code or name"}
    ]
    consumer = Consumer.objects.get()
    assert (consumer.age_range, consumer.country, consumer.gender) == ("25-34", "MY", "m")


def test_consents_endpoint(operator_client):
    row = {
        "consumer_id": "+65 8123 4567",
        "purpose": "direct_marketing",
        "status": "granted",
        "kind": "express",
        "source": "app:settings:v3",
        "occurred_at": "2024-05-01T12:30:00Z",
    }
    response = operator_client.post(CONSENTS, ndjson([row]), content_type="application/x-ndjson")
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 1
    assert ConsentRecord.objects.get().status == "granted"


# Concurrent first consents: the figure for the hardening issue. Rounds × clients × consumers requests' rows.
RACE_ROUNDS, RACE_CLIENTS, RACE_CONSUMERS = 4, 8, 40


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_consents_lose_no_decision_and_never_fail(live_server):
    """Several clients send first consents for the same consumers at the same moment, over real HTTP.

    Each client's request carries every consumer's decision at its own time (client i at minute i, granted and
    withdrawn alternating), so the decision at the latest minute must be the state, whatever order the server
    commits them in; every request is accepted whole, and each consumer ends with exactly one state row.
    """
    key = api_key_issue(kind=ApiKeyKind.OPERATOR, name="race").raw_key
    base = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    statuses: list[int] = []
    sent = 0

    def body(round_no: int, client: int) -> bytes:
        rows = [
            {
                "consumer_id": f"race-{round_no}-{n}@example.com",
                "purpose": "direct_marketing",
                "status": "granted" if client % 2 == 0 else "withdrawn",
                "kind": "express",
                "source": f"app:client-{client}",
                "occurred_at": (base + timedelta(minutes=client)).isoformat(),
            }
            for n in range(RACE_CONSUMERS)
        ]
        return ndjson(rows).encode()

    for round_no in range(RACE_ROUNDS):
        # The consumers are known already (their profiles came first), as on a live marketplace: only their
        # consent state is new, so nothing but the state row itself orders the concurrent requests.
        profiles = [{"consumer_id": f"race-{round_no}-{n}@example.com", "country": "SG"} for n in range(RACE_CONSUMERS)]
        assert profiles_ingest(rows=profiles, actor="test").accepted == RACE_CONSUMERS
        start = Barrier(RACE_CLIENTS)

        def send(client: int, payload: bytes, start: Barrier = start) -> None:
            request = Request(  # noqa: S310 - the test's own live server
                live_server.url + CONSENTS,
                data=payload,
                method="POST",
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
            )
            start.wait()
            try:
                with urlopen(request, timeout=60) as response:  # noqa: S310
                    statuses.append(response.status)
            except HTTPError as exc:
                statuses.append(exc.code)

        payloads = [body(round_no, client) for client in range(RACE_CLIENTS)]
        threads = [Thread(target=send, args=(c, payloads[c])) for c in range(RACE_CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent += RACE_CLIENTS * RACE_CONSUMERS

    failures = [s for s in statuses if s >= 500]
    print(f"concurrent first consents sent: {sent}, requests: {len(statuses)}, 5xx: {len(failures)}")
    assert len(statuses) == RACE_ROUNDS * RACE_CLIENTS
    assert failures == [], f"{len(failures)} of {len(statuses)} concurrent consent requests failed with a 5xx"
    assert statuses == [200] * len(statuses)
    last = RACE_CLIENTS - 1
    winner = "granted" if last % 2 == 0 else "withdrawn"
    for round_no in range(RACE_ROUNDS):
        pseudonyms = [pseudonymise(f"race-{round_no}-{n}@example.com") for n in range(RACE_CONSUMERS)]
        states = list(
            ConsentState.objects.filter(consumer__pseudonym__in=pseudonyms).values_list(
                "consumer__pseudonym", "status", "occurred_at"
            )
        )
        assert len(states) == RACE_CONSUMERS, "exactly one state per consumer"
        assert {(status, at) for _, status, at in states} == {(winner, base + timedelta(minutes=last))}
        assert ConsentRecord.objects.filter(consumer__pseudonym__in=pseudonyms).count() == RACE_CONSUMERS * RACE_CLIENTS


OVERLAP_ROUNDS, OVERLAP_CLIENTS, OVERLAP_CONSUMERS = 2, 3, 1500
OBJECTIONS = "/api/v1/privacy/requests"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_large_consent_batches_and_an_objection_never_deadlock(live_server):
    """Batches of over 1,000 decisions over the same consumers in opposite orders, and an objection, at once.

    A batch this large is recorded in several parts inside one transaction. Each request must take its locks
    (consent states, then the audit log) in one order whatever the order of its rows, or two batches, or a
    batch and an objection, wait on each other in a cycle and the database fails one of them. Every request
    must succeed, each consumer ends with one state, and the latest decision wins: the last client's for
    everyone but the objecting consumer, whose withdrawal is the most recent of all.
    """
    key = api_key_issue(kind=ApiKeyKind.OPERATOR, name="overlap").raw_key
    base = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    statuses: list[int] = []
    objections: list[dict] = []
    sent = 0

    def consumer(round_no: int, n: int) -> str:
        return f"overlap-{round_no}-{n}@example.com"

    def body(round_no: int, client: int) -> bytes:
        order = range(OVERLAP_CONSUMERS) if client % 2 == 0 else reversed(range(OVERLAP_CONSUMERS))
        rows = [
            {
                "consumer_id": consumer(round_no, n),
                "purpose": "direct_marketing",
                "status": "granted" if client % 2 == 0 else "withdrawn",
                "kind": "express",
                "source": f"app:client-{client}",
                "occurred_at": (base + timedelta(minutes=client)).isoformat(),
            }
            for n in order
        ]
        return ndjson(rows).encode()

    def objector(round_no: int) -> int:
        return OVERLAP_CONSUMERS - 300  # in the second part of an ascending batch, the first of a descending one

    for round_no in range(OVERLAP_ROUNDS):
        profiles = [{"consumer_id": consumer(round_no, n), "country": "SG"} for n in range(OVERLAP_CONSUMERS)]
        assert profiles_ingest(rows=profiles, actor="test").accepted == OVERLAP_CONSUMERS
        payloads = [body(round_no, client) for client in range(OVERLAP_CLIENTS)]
        start = Barrier(OVERLAP_CLIENTS + 1)

        def post(path: str, payload: bytes, content_type: str, start: Barrier = start) -> tuple[int, bytes]:
            request = Request(  # noqa: S310 - the test's own live server
                live_server.url + path,
                data=payload,
                method="POST",
                headers={"Authorization": f"Bearer {key}", "Content-Type": content_type},
            )
            start.wait()
            try:
                with urlopen(request, timeout=120) as response:  # noqa: S310
                    return response.status, response.read()
            except HTTPError as exc:
                return exc.code, exc.read()

        def send(payload: bytes) -> None:
            statuses.append(post(CONSENTS, payload, "application/x-ndjson")[0])

        def object_(round_no: int = round_no) -> None:
            payload = json.dumps({"kind": "objection", "consumer_id": consumer(round_no, objector(round_no))})
            code, content = post(OBJECTIONS, payload.encode(), "application/json")
            statuses.append(code)
            objections.append(json.loads(content) if code < 500 else {})

        threads = [Thread(target=send, args=(payload,)) for payload in payloads] + [Thread(target=object_)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent += OVERLAP_CLIENTS

    failures = [s for s in statuses if s >= 500]
    print(f"large overlapping consent batches sent: {sent}, requests: {len(statuses)}, 5xx: {len(failures)}")
    assert len(statuses) == OVERLAP_ROUNDS * (OVERLAP_CLIENTS + 1)
    assert failures == [], f"{len(failures)} of {len(statuses)} concurrent requests failed with a 5xx"
    assert sorted(statuses) == sorted([200] * sent + [201] * OVERLAP_ROUNDS)
    # A failed objection is kept open with an error and answered 201: it must have been carried out at once.
    assert [o.get("status") for o in objections] == ["completed"] * OVERLAP_ROUNDS
    last = OVERLAP_CLIENTS - 1
    winner = "granted" if last % 2 == 0 else "withdrawn"
    for round_no in range(OVERLAP_ROUNDS):
        pseudonyms = [pseudonymise(consumer(round_no, n)) for n in range(OVERLAP_CONSUMERS)]
        objecting = pseudonymise(consumer(round_no, objector(round_no)))
        states = {
            pseudonym: (status, at)
            for pseudonym, status, at in ConsentState.objects.filter(consumer__pseudonym__in=pseudonyms).values_list(
                "consumer__pseudonym", "status", "occurred_at"
            )
        }
        assert ConsentState.objects.filter(consumer__pseudonym__in=pseudonyms).count() == OVERLAP_CONSUMERS
        assert len(states) == OVERLAP_CONSUMERS, "exactly one state per consumer"
        objected_status, objected_at = states.pop(objecting)
        assert objected_status == "withdrawn" and objected_at > base + timedelta(minutes=last)
        assert set(states.values()) == {(winner, base + timedelta(minutes=last))}
        records = ConsentRecord.objects.filter(consumer__pseudonym__in=pseudonyms).count()
        assert records == OVERLAP_CONSUMERS * OVERLAP_CLIENTS + 1


def test_the_schema_documents_the_endpoints(client):
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    for path in (EVENTS, PROFILES, CONSENTS):
        operation = paths[path]["post"]
        assert set(operation["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
        assert {"200", "400", "413", "422"} <= set(operation["responses"])


# ------------------------------------------------------------------ fuzzing: never a 500

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["acme", "view", "purchase", "2024-05-01T12:30:00Z", "", " ", "\x00", "\ud800", "1e400"]),
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
)
FIELDS = [
    "event_id",
    "consumer_id",
    "merchant",
    "sku",
    "event_type",
    "occurred_at",
    "quantity",
    "price",
    "discount",
    "title",
    "category_path",
    "brand",
    "order_id",
    "device_id",
]
fuzz_rows = st.lists(
    st.one_of(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS)), json_values), max_size=6
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=fuzz_rows, atomic=st.booleans())
def test_fuzzed_event_rows_never_cause_a_500(operator_client, merchant, rows, atomic):
    body = json.dumps(rows)
    response = operator_client.post(f"{EVENTS}?atomic={str(atomic).lower()}", body, content_type="application/json")
    assert response.status_code in (200, 422), response.content


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.dictionaries(
            st.sampled_from(["consumer_id", "age", "birth_date", "country", "address", "gender"]), json_values
        ),
        max_size=5,
    )
)
def test_fuzzed_profile_rows_never_cause_a_500(operator_client, rows):
    response = operator_client.post(PROFILES, json.dumps(rows), content_type="application/json")
    assert response.status_code in (200, 422), response.content


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.dictionaries(
            st.sampled_from(["consumer_id", "purpose", "status", "kind", "source", "occurred_at"]), json_values
        ),
        max_size=5,
    )
)
def test_fuzzed_consent_rows_never_cause_a_500(operator_client, rows):
    response = operator_client.post(CONSENTS, json.dumps(rows), content_type="application/json")
    assert response.status_code in (200, 422), response.content


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200), ndjson_body=st.booleans())
def test_fuzzed_bodies_never_cause_a_500(operator_client, body, ndjson_body):
    content_type = "application/x-ndjson" if ndjson_body else "application/json"
    response = operator_client.post(EVENTS, body, content_type=content_type)
    assert response.status_code in (200, 400, 422), response.content
