"""A segment of those who clicked but did not buy (and other responses), from a campaign's results."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import CampaignStatus, Group, Phase, TrackingEvent, TrackingKind
from campaigns.responses import response_segment_create
from consumers.models import Product
from merchants.errors import Invalid, NotFound, Unprocessable
from privacy.models import Purpose
from segments.models import SegmentKind
from segments.services import segment_refresh_request
from tests.release_helpers import released_public

from .conftest import make_campaign, make_consumers
from .test_selectors import _deliveries, _purchase


@pytest.fixture
def finished(merchant, approve_activity):
    """A finished campaign: 300 received it, 200 held out. Of those who received it, 0-99 clicked (0-39 then
    bought) and 100-149 opened only; 40 of the held-out bought (they never clicked anything)."""
    approve_activity(Purpose.TAGGING)
    sent = timezone.now() - timedelta(days=3)
    campaign = make_campaign(merchant, status=CampaignStatus.COMPLETED, phase=Phase.DONE, attribution_window_days=7)
    product = Product.objects.create(merchant=merchant, sku="T1", title="Tent")
    ids = make_consumers(500)
    treatment = _deliveries(campaign, ids[:300], Group.TREATMENT, sent)
    control = _deliveries(campaign, ids[300:], Group.CONTROL, sent)
    for d in treatment[:150]:
        TrackingEvent.objects.create(delivery=d, kind=TrackingKind.OPENED, occurred_at=sent, idempotency_key="o")
    for d in treatment[:100]:
        TrackingEvent.objects.create(delivery=d, kind=TrackingKind.CLICKED, occurred_at=sent, idempotency_key="c")
    for d in treatment[:40]:
        _purchase(d.consumer_id, merchant, product, sent + timedelta(days=1))
    for d in control[:40]:
        _purchase(d.consumer_id, merchant, product, sent + timedelta(days=1))
    return campaign, [d.consumer_id for d in treatment]


def test_clicked_but_did_not_buy(finished, merchant):
    campaign, treated = finished
    segment = response_segment_create(
        campaign_id=campaign.pk, merchant_id=merchant.pk, response="clicked_not_bought", actor="test"
    )
    assert segment.kind == SegmentKind.RESPONSE
    assert segment.name == f"{campaign.name}: clicked but did not buy"
    snapshot = segment.snapshots.get()
    assert set(snapshot.members_bitmap()) == set(treated[40:100])  # clicked, and bought nothing in the window


def test_the_other_responses(finished, merchant):
    campaign, treated = finished
    opened = response_segment_create(
        campaign_id=campaign.pk, merchant_id=merchant.pk, response="opened_not_clicked", actor="test"
    )
    assert set(opened.snapshots.get().members_bitmap()) == set(treated[100:150])
    bought = response_segment_create(campaign_id=campaign.pk, merchant_id=merchant.pk, response="bought", actor="t")
    assert set(bought.snapshots.get().members_bitmap()) == set(treated[:40])  # the held-out buyers never count


def test_refused_for_another_merchants_campaign_an_unknown_response_and_a_draft(finished, merchant, other_merchant):
    campaign, _ = finished
    with pytest.raises(NotFound):
        response_segment_create(
            campaign_id=campaign.pk, merchant_id=other_merchant.pk, response="clicked_not_bought", actor="t"
        )
    with pytest.raises(Invalid):
        response_segment_create(campaign_id=campaign.pk, merchant_id=merchant.pk, response="everyone", actor="t")
    draft = make_campaign(merchant, name="Draft")
    with pytest.raises(Unprocessable):
        response_segment_create(campaign_id=draft.pk, merchant_id=merchant.pk, response="bought", actor="t")


def test_a_response_segment_is_a_fixed_group(finished, merchant, django_capture_on_commit_callbacks):
    campaign, _ = finished
    segment = response_segment_create(campaign_id=campaign.pk, merchant_id=merchant.pk, response="bought", actor="t")
    with django_capture_on_commit_callbacks(execute=True):
        segment_refresh_request(segment_id=segment.pk, actor="t")
    segment.refresh_from_db()
    assert "fixed group" in segment.last_error
    assert segment.snapshots.filter(status="ready").count() == 1  # the group itself is untouched


def test_the_api_makes_it_and_shows_only_the_released_size(finished, merchant, merchant_client, other_merchant_client):
    campaign, _ = finished
    url = f"/api/v1/campaigns/{campaign.pk}/segments"
    response = merchant_client.post(url, {"response": "clicked_not_bought"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kind"] == "response"
    assert body["size"] == released_public(f"segment:{body['id']}:size", 60)
    assert merchant_client.post(url, {"response": "clicked_not_bought"}, format="json").status_code == 409
    assert merchant_client.post(url, {"response": "nobody"}, format="json").status_code == 400
    assert other_merchant_client.post(url, {"response": "bought"}, format="json").status_code == 404


def test_the_report_page_makes_it(finished, merchant, merchant_user, client):
    campaign, _ = finished
    client.force_login(merchant_user)
    page = client.get(f"/campaigns/{campaign.pk}/report/")
    assert "Make a segment" in page.content.decode()
    made = client.post(f"/campaigns/{campaign.pk}/segments/", {"response": "clicked_not_bought"}, follow=True)
    assert made.status_code == 200
    assert "clicked but did not buy" in made.content.decode()
