"""Errors on operator endpoints never repeat what they were sent (issue 11, item 9).

The operator's systems send raw identifiers (e-mail addresses, phone numbers); a mistake in a field, say an
e-mail address sent as a consent's `kind`, must not come back in the error, where it would land in the
operator's logs. Every field of every operator endpoint gets each identifier, bare and wrapped in other
JSON types, and the response must not contain it.
"""

from __future__ import annotations

import json

import pytest

EMAIL = "jane.doe+dmp@example.com"
PHONE = "+65 9123 4567"
IDENTIFIERS = [EMAIL, PHONE]

EVENT = {
    "event_id": "evt-1",
    "consumer_id": "someone@example.org",
    "merchant": "acme",
    "sku": "SKU-1",
    "event_type": "view",
    "occurred_at": "2024-05-01T12:30:00Z",
    "quantity": 1,
    "price": "19.90",
    "discount": "0",
    "title": "Tent",
    "category_path": "outdoor/tents",
    "brand": "Trailhead",
    "order_id": "o-1",
    "device_id": "d-1",
}
PROFILE = {
    "consumer_id": "someone@example.org",
    "age": 31,
    "birth_date": "1990-01-01",
    "country": "SG",
    "address": "1 Main Street, Singapore",
    "gender": "f",
}
CONSENT = {
    "consumer_id": "someone@example.org",
    "purpose": "direct_marketing",
    "status": "granted",
    "kind": "express",
    "source": "app:settings:v3",
    "occurred_at": "2024-05-01T12:30:00Z",
}
SUBJECT_REQUEST = {"kind": "access", "consumer_id": "someone@example.org"}
COUNTER_STATEMENT = {"consumer_id": "someone@example.org", "statement": "That was not me.", "flag": 1}
TRACKING_EVENT = {
    "delivery_id": 1,
    "kind": "opened",
    "occurred_at": "2024-05-01T12:30:00Z",
    "order_value": "10.00",
    "idempotency_key": "k-1",
}

# (path, the body's shape, a valid row or object): "rows" bodies are arrays of rows, "object" a single object,
# "tracking" an object holding an array of events.
BODIES = [
    ("/api/v1/ingest/events", "rows", EVENT),
    ("/api/v1/ingest/profiles", "rows", PROFILE),
    ("/api/v1/consents", "rows", CONSENT),
    ("/api/v1/privacy/requests", "object", SUBJECT_REQUEST),
    ("/api/v1/privacy/counter-statements", "object", COUNTER_STATEMENT),
    ("/api/v1/tracking/", "tracking", TRACKING_EVENT),
]


def wrapped(value: str) -> list:
    """The identifier as it might arrive in a field: bare, padded, in a list, in an object, with a NUL."""
    return [value, f"  {value}  ", [value], {"value": value}, value + "\x00", value.upper()]


def cases():
    for path, shape, valid in BODIES:
        for field in valid:
            yield pytest.param(path, shape, valid, field, id=f"{path}-{field}")


def body_for(shape: str, valid: dict, field: str, value) -> object:
    item = {**valid, field: value}
    if shape == "rows":
        return [item]
    if shape == "tracking":
        return {"events": [item]}
    return item


def assert_not_echoed(response, identifier: str) -> None:
    assert response.status_code < 500, response.content[:300]
    text = response.content.decode("utf-8", errors="replace")
    for form in {identifier, identifier.upper(), identifier.lower(), json.dumps(identifier)[1:-1]}:
        assert form not in text, f"echoed {form!r}: {text[:300]}"
    assert identifier.split("@")[0] not in text


@pytest.fixture
def seeded(merchant, all_purposes_approved):
    return merchant


# One test per endpoint and field; inside it every identifier in every wrapping (12 requests), so the world is
# built once per field rather than once per request.
@pytest.mark.parametrize(("path", "shape", "valid", "field"), list(cases()))
def test_no_operator_error_repeats_a_field_value(operator_client, seeded, path, shape, valid, field):
    for identifier in IDENTIFIERS:
        for n, value in enumerate(wrapped(identifier)):
            response = operator_client.post(path, body_for(shape, valid, field, value), format="json")
            try:
                assert_not_echoed(response, identifier)
            except AssertionError as exc:
                raise AssertionError(f"{path} {field} wrapping {n}: {exc}") from None


@pytest.mark.parametrize("identifier", IDENTIFIERS)
@pytest.mark.parametrize(
    "path",
    ["/api/v1/ingest/events", "/api/v1/consents", "/api/v1/privacy/requests", "/api/v1/tracking/"],
)
def test_a_body_that_is_the_identifier_itself_is_not_repeated(operator_client, seeded, path, identifier):
    for body in (identifier, json.dumps(identifier), json.dumps({identifier: identifier}), '{"x": "' + identifier):
        response = operator_client.post(path, body, content_type="application/json")
        assert_not_echoed(response, identifier)
    response = operator_client.post(path, identifier + "\n", content_type="application/x-ndjson")
    assert_not_echoed(response, identifier)


@pytest.mark.parametrize("identifier", IDENTIFIERS)
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/privacy/blacklist", ["limit", "offset"]),
        ("/api/v1/recommendations/{id}", ["merchant", "n"]),
        ("/api/v1/inbox/{id}", []),
        ("/api/v1/privacy/requests/{id}", []),
        ("/api/v1/privacy/counter-statements/{id}", []),
        ("/api/v1/ingest/events", ["atomic"]),
    ],
)
def test_no_operator_error_repeats_a_path_or_query_value(operator_client, seeded, path, params, identifier):
    from urllib.parse import quote

    url = path.replace("{id}", quote(identifier, safe=""))
    for param in params or [None]:
        query = {param: identifier} if param else {}
        if path.startswith("/api/v1/recommendations") and param != "merchant":
            query["merchant"] = seeded.slug
        method = operator_client.post if path.endswith("events") else operator_client.get
        response = method(url, query) if method is operator_client.get else method(f"{url}?atomic={quote(identifier)}")
        assert_not_echoed(response, identifier)


def test_a_choice_error_still_says_what_is_allowed(operator_client, seeded):
    response = operator_client.post("/api/v1/privacy/requests", {"kind": EMAIL, "consumer_id": "x"}, format="json")
    assert response.status_code == 400
    message = response.json()["error"]["details"]["kind"][0]
    assert "access" in message and "erasure" in message
