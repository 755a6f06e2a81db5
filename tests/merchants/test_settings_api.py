"""GET/PATCH /api/v1/merchant/settings: a campaign tool reads and sets the calling merchant's quiet hours, under the
same rule as the portal's Settings page (both or neither, not the same time), and only its own merchant's."""

from __future__ import annotations

import json
from datetime import time

import pytest
from django.test import Client

from merchants.models import Merchant
from tests.factories import member_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/merchant/settings"


def _stored(merchant: Merchant) -> tuple[time | None, time | None]:
    merchant.refresh_from_db()
    return merchant.quiet_start, merchant.quiet_end


def test_a_merchant_reads_its_settings(merchant_client, merchant):
    Merchant.objects.filter(pk=merchant.pk).update(quiet_start=time(21, 30), quiet_end=time(8))
    response = merchant_client.get(URL)
    assert response.status_code == 200, response.content
    assert response.json() == {
        "slug": "acme",
        "name": "Acme Outdoor",
        "time_zone": merchant.time_zone,
        "currency": merchant.currency,
        "quiet_start": "21:30:00",
        "quiet_end": "08:00:00",
    }


def test_a_merchant_sets_moves_and_clears_its_quiet_hours(merchant_client, merchant):
    response = merchant_client.patch(URL, {"quiet_start": "22:00", "quiet_end": "07:30"}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["quiet_start"], response.json()["quiet_end"]) == ("22:00:00", "07:30:00")
    assert _stored(merchant) == (time(22), time(7, 30))
    # A field left out keeps its value: one end of the window moves.
    response = merchant_client.patch(URL, {"quiet_end": "06:45:00"}, format="json")
    assert response.status_code == 200, response.content
    assert _stored(merchant) == (time(22), time(6, 45))
    assert merchant_client.get(URL).json()["quiet_end"] == "06:45:00"
    response = merchant_client.patch(URL, {"quiet_start": None, "quiet_end": None}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["quiet_start"] is None
    assert _stored(merchant) == (None, None)


@pytest.mark.parametrize(
    ("stored", "body", "field", "words"),
    [
        ((None, None), {"quiet_start": "22:00"}, "quiet_end", "both the start and the end"),
        ((None, None), {"quiet_start": "22:00", "quiet_end": None}, "quiet_end", "both the start and the end"),
        ((None, None), {"quiet_end": "08:00"}, "quiet_start", "both the start and the end"),
        ((time(21), time(8)), {"quiet_start": None}, "quiet_start", "both the start and the end"),
        ((None, None), {"quiet_start": "09:00", "quiet_end": "09:00:00"}, "quiet_end", "same time"),
        ((time(21), time(8)), {"quiet_end": "21:00"}, "quiet_end", "same time"),
    ],
)
def test_half_a_window_or_an_empty_one_is_a_400_naming_the_field_and_nothing_is_written(
    merchant_client, merchant, stored, body, field, words
):
    Merchant.objects.filter(pk=merchant.pk).update(quiet_start=stored[0], quiet_end=stored[1])
    response = merchant_client.patch(URL, body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["details"] == {"field": field}
    assert words in error["message"]
    assert _stored(merchant) == stored


@pytest.mark.parametrize(
    "value", ["late", "25:00", "21:00+08:00", "21:00Z", "2100", "21", "", 2100, True, ["21:00"], {"h": 21}]
)
def test_a_time_that_is_not_hh_mm_is_a_400_naming_the_field(merchant_client, merchant, value):
    response = merchant_client.patch(URL, {"quiet_start": value, "quiet_end": "08:00"}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and list(error["details"]) == ["quiet_start"]
    assert "HH:MM" in error["details"]["quiet_start"][0]
    assert _stored(merchant) == (None, None)


def test_the_time_zone_and_currency_are_the_operators_and_an_unknown_field_is_no_silent_no_op(
    merchant_client, merchant
):
    zone = merchant.time_zone
    body = {"quiet_start": "22:00", "quiet_end": "07:00", "time_zone": "Europe/Paris"}
    response = merchant_client.patch(URL, body, format="json")
    assert response.status_code == 400 and "time_zone" in response.json()["error"]["details"]
    response = merchant_client.patch(URL, {"quiet_from": "22:00"}, format="json")
    assert response.status_code == 400
    assert "quiet_from" not in response.content.decode()  # no error repeats what it was sent
    assert "quiet_start and quiet_end" in response.json()["error"]["details"]["non_field_errors"][0]
    merchant.refresh_from_db()
    assert (merchant.time_zone, merchant.quiet_hours) == (zone, None)
    for body in ("[1, 2]", '"x"', "null"):
        response = merchant_client.generic("PATCH", URL, body, content_type="application/json")
        assert response.status_code == 400, (body, response.content)


def test_each_key_reaches_only_its_own_merchant(merchant_client, other_merchant_client, merchant, other_merchant):
    other_merchant_client.patch(URL, {"quiet_start": "20:00", "quiet_end": "09:00"}, format="json")
    assert _stored(other_merchant) == (time(20), time(9))
    assert _stored(merchant) == (None, None)
    assert merchant_client.get(URL).json()["quiet_start"] is None
    assert other_merchant_client.get(URL).json()["slug"] == other_merchant.slug


def test_an_operator_key_and_no_key_are_refused(operator_client, client, merchant):
    for response in (
        operator_client.get(URL),
        operator_client.patch(URL, {"quiet_start": "22:00", "quiet_end": "07:00"}, format="json"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["message"] == "This endpoint needs a merchant API key."
    assert client.get(URL).status_code == 401
    assert _stored(merchant) == (None, None)


def test_the_portal_and_the_api_agree(merchant_client, merchant):
    user = member_create(merchant=merchant, role="marketer", username="m", password="marketer-pass-123")
    portal = Client()
    portal.force_login(user)
    # What the portal saves, the API reads.
    portal.post("/settings/", {"quiet_start": "22:15", "quiet_end": "06:00"})
    assert merchant_client.get(URL).json()["quiet_start"] == "22:15:00"
    # What the API saves, the portal shows.
    merchant_client.patch(URL, {"quiet_start": "23:00", "quiet_end": "07:00"}, format="json")
    page = portal.get("/settings/").content.decode()
    assert 'value="23:00"' in page and 'value="07:00"' in page
    # And both refuse the same windows with the same words.
    for body in ({"quiet_start": "22:00", "quiet_end": ""}, {"quiet_start": "09:00", "quiet_end": "09:00"}):
        portal_page = portal.post("/settings/", body).content.decode()
        api_body = {k: v or None for k, v in body.items()}
        message = merchant_client.patch(URL, api_body, format="json").json()["error"]["message"]
        assert message.replace("'", "&#x27;") in portal_page
    assert _stored(merchant) == (time(23), time(7))


def test_the_reference_documents_both_operations_with_examples(client):
    schema = json.loads(client.get("/api/v1/schema/?format=json").content)
    operations = schema["paths"]["/api/v1/merchant/settings"]
    assert set(operations) >= {"get", "patch"}
    examples = operations["patch"]["requestBody"]["content"]["application/json"]["examples"]
    assert {"quiet_start": "21:00", "quiet_end": "08:00"} in [e["value"] for e in examples.values()]
    assert "400" in operations["patch"]["responses"]
