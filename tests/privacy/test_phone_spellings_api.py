"""Issue 11, item 5: one person, several spellings of their phone number, one consumer.

Before, "+65 9000 1234" and "65 9000 1234" were two consumers, so an objection sent in one spelling left the other
with marketing consent.
"""

from __future__ import annotations

import pytest

from consumers.models import Consumer
from privacy.models import ConsentState, ConsentStatus, Purpose, Suppression
from privacy.pseudonyms import pseudonymise
from privacy.selectors import direct_marketing_opt_in_consumer_ids, suppressed_consumer_ids

SPELLINGS = ["+65 9000 1234", "0065 9000 1234", "65 9000 1234"]


def consent(client, consumer_id: str, occurred_at: str, status: str = "granted"):
    row = {
        "consumer_id": consumer_id,
        "purpose": "direct_marketing",
        "status": status,
        "kind": "express",
        "source": "app:settings",
        "occurred_at": occurred_at,
    }
    return client.post("/api/v1/consents", [row], format="json")


@pytest.mark.parametrize("objection_spelling", SPELLINGS)
def test_an_objection_in_one_spelling_removes_marketing_consent_for_every_other(operator_client, objection_spelling):
    for n, spelling in enumerate(SPELLINGS):
        response = consent(operator_client, spelling, f"2024-05-0{n + 1}T12:00:00Z")
        assert response.status_code == 200, response.content
        assert response.json()["accepted"] == 1
    consumer = Consumer.objects.get()  # three spellings, one consumer
    assert consumer.pseudonym == pseudonymise("+6590001234")
    assert set(direct_marketing_opt_in_consumer_ids()) == {consumer.pk}

    response = operator_client.post(
        "/api/v1/privacy/requests", {"kind": "objection", "consumer_id": objection_spelling}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["result"]["consent_withdrawn"] is True

    assert set(direct_marketing_opt_in_consumer_ids()) == set()
    state = ConsentState.objects.get(consumer=consumer, purpose=Purpose.DIRECT_MARKETING)
    assert state.status == ConsentStatus.WITHDRAWN
    assert Suppression.objects.filter(consumer=consumer, lifted_at__isnull=True).count() == 1
    assert consumer.pk in set(suppressed_consumer_ids(has_offer=False))
    assert Consumer.objects.count() == 1


def test_an_unparseable_phone_number_is_a_row_error_that_never_echoes_it(operator_client):
    response = consent(operator_client, "1000 123", "2024-05-01T12:00:00Z")
    assert response.status_code == 422
    errors = response.json()["error"]["details"]["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [(1, "consumer_id")]
    assert "phone number" in errors[0]["reason"] and "user:" in errors[0]["reason"]
    assert "1000" not in response.content.decode()
    assert not Consumer.objects.exists()


def test_a_privacy_request_with_an_unparseable_phone_number_is_a_400_that_never_echoes_it(operator_client):
    response = operator_client.post(
        "/api/v1/privacy/requests", {"kind": "objection", "consumer_id": "+65 1234"}, format="json"
    )
    assert response.status_code == 400
    assert "phone number" in response.content.decode()
    assert "1234" not in response.content.decode()
