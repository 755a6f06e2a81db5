"""Digits that are not ASCII ("²" passes str.isdigit, and int() refuses it) in ids and numbers typed into forms and
query strings: a clear refusal or the default, never a 500."""

from __future__ import annotations

from tests.campaigns.test_forecast import _scheduled_draft, _segment
from tests.campaigns.test_uplift import _completed_campaign_with_a_planted_effect


def test_a_superscript_is_not_a_campaign_id_anywhere(merchant, all_purposes_approved, portal_client, merchant_client):
    draft = _scheduled_draft(merchant, _segment(merchant, "audience", []))
    assert portal_client.get(f"/campaigns/{draft.pk}/", {"like": "²"}).status_code == 400  # as the card
    assert portal_client.get(f"/campaigns/{draft.pk}/forecast/", {"like": "²"}).status_code == 400  # as the API
    assert merchant_client.get(f"/api/v1/campaigns/{draft.pk}/forecast", {"like": "²"}).status_code == 400


def test_a_superscript_amount_of_persuadables_is_refused_in_words(merchant, all_purposes_approved, portal_client):
    campaign, _, _ = _completed_campaign_with_a_planted_effect(merchant, name="Spring sale")
    url = f"/campaigns/{campaign.pk}/persuadables/"
    refused = portal_client.post(url, {"name": "Nope", "by": "share", "amount": "²"}, follow=True)
    assert refused.status_code == 200 and "a whole percent from 1 to 100" in refused.content.decode()
