"""Uplift models: meta-learners, Qini and uplift@k, and targeting persuadables against targeting by propensity."""

from __future__ import annotations

import numpy as np
import pytest

from campaigns.uplift import (
    UpliftModel,
    incremental_at,
    planted_campaign,
    qini_coefficient,
    qini_curve,
    split_holdout,
    uplift_at_k,
    uplift_evaluate,
)


def test_uplift_at_k_and_the_qini_curve_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    treatment = np.array([1, 0, 1, 0, 1, 0], bool)
    converted = np.array([1, 0, 1, 1, 0, 0])
    # Top half: treated rows 0 and 2 both converted, control row 1 did not: 1.0 - 0.0.
    assert uplift_at_k(scores, treatment, converted, 0.5) == pytest.approx(1.0)
    assert incremental_at(scores, treatment, converted, 0.5) == pytest.approx(3.0)
    x, q = qini_curve(scores, treatment, converted)
    assert x.tolist() == [0, 1, 2, 3, 4, 5, 6]
    # After 4 rows: 2 treated conversions, 1 control conversion x (2 treated / 2 control).
    assert q[4] == pytest.approx(1.0)
    assert q[-1] == pytest.approx(2 - 1 * 3 / 3)


def test_a_perfect_ranking_has_a_positive_qini_and_its_reverse_a_negative_one():
    data = planted_campaign(n=6_000, seed=3)
    assert qini_coefficient(data.true_uplift, data.treatment, data.converted) > 0
    assert qini_coefficient(-data.true_uplift, data.treatment, data.converted) < 0


@pytest.mark.parametrize("learner", ["t", "x"])
def test_targeting_persuadables_earns_more_than_targeting_by_propensity(learner):
    """Planted heterogeneous effect: loyal buyers convert most but are barely moved; the persuadables are."""
    data = planted_campaign(n=16_000, seed=11)
    held = split_holdout(data.treatment.size, fraction=0.4, seed=1)
    model = UpliftModel(learner=learner).fit(data.features[~held], data.treatment[~held], data.converted[~held])
    result = uplift_evaluate(model, data.features[held], data.treatment[held], data.converted[held])
    assert result.incremental_top_20 > 1.5 * max(result.incremental_top_20_by_propensity, 1.0)
    assert result.qini > 0
    assert result.uplift_at_20 > 0.05


def test_a_campaign_with_too_small_an_arm_is_refused():
    data = planted_campaign(n=400, treatment_share=0.95, seed=2)
    with pytest.raises(ValueError, match="at least 50 treatment and 50 control"):
        UpliftModel().fit(data.features, data.treatment, data.converted)


# --- from a completed campaign in the database to a persuadable segment ------------------------------------


def _completed_campaign_with_a_planted_effect(merchant, n=600, seed=5, start=0, name="Spring sale", treated_share=0.7):
    """Consumers who browsed this merchant before respond to the message (60 % against 5 %); earlier buyers buy
    again whatever the arm (50 %); the rest rarely buy; `treated_share` of them are messaged. Returns the campaign
    and the two groups' ids."""
    from datetime import timedelta

    from django.utils import timezone

    from campaigns.models import CampaignStatus, Delivery, DeliveryStatus, Group
    from consumers.models import Event, EventType
    from tests.factories import ProductFactory, bitmaps_refresh

    from .conftest import make_campaign, make_consumers

    rng = np.random.default_rng(seed)
    product = ProductFactory(merchant=merchant)
    ids = make_consumers(n, start=start)
    started = timezone.now() - timedelta(days=20)
    campaign = make_campaign(
        merchant, name=name, status=CampaignStatus.COMPLETED, started_at=started, completed_at=started
    )
    browsers, buyers = set(ids[: n // 2]), set(ids[n // 2 : n // 2 + n // 4])
    events, deliveries = [], []
    for i, consumer_id in enumerate(ids):
        treated = rng.random() < treated_share
        deliveries.append(
            Delivery(
                campaign=campaign,
                consumer_id=consumer_id,
                group=Group.TREATMENT if treated else Group.CONTROL,
                status=DeliveryStatus.DISPATCHED if treated else DeliveryStatus.PENDING,
                created_at=started,
                dispatched_at=started if treated else None,
            )
        )
        before = started - timedelta(days=10)
        if consumer_id in browsers:
            events += [(consumer_id, EventType.VIEW, before)] * 3
        if consumer_id in buyers:
            events += [(consumer_id, EventType.PURCHASE, before)]
        rate = (0.6 if treated else 0.05) if consumer_id in browsers else 0.5 if consumer_id in buyers else 0.02
        if rng.random() < rate:
            events.append((consumer_id, EventType.PURCHASE, started + timedelta(days=1)))
    Delivery.objects.bulk_create(deliveries)
    Event.objects.bulk_create(
        [
            Event(
                source_key=f"uplift-{start}-{k}",
                consumer_id=c,
                merchant=merchant,
                product=product,
                event_type=t,
                occurred_at=when,
            )
            for k, (c, t, when) in enumerate(events)
        ]
    )
    bitmaps_refresh()
    return campaign, browsers, buyers


def test_persuadables_of_a_completed_campaign_are_the_consumers_it_moved(merchant, all_purposes_approved):
    from campaigns.uplift import persuadables_create
    from segments.models import SegmentKind
    from segments.selectors import segment_latest_snapshot, snapshot_members

    campaign, browsers, buyers = _completed_campaign_with_a_planted_effect(merchant)
    segment = persuadables_create(
        campaign_id=campaign.pk, merchant_id=merchant.pk, name="Persuadables", size=150, actor="test"
    )
    assert segment.kind == SegmentKind.PERSUADABLE
    assert segment.lookalike_spec["campaign"] == campaign.pk and segment.lookalike_spec["holdout"]["rows"] > 0
    members = set(snapshot_members(segment_latest_snapshot(segment_id=segment.pk)))
    assert 100 <= len(members) <= 150
    assert len(members & browsers) >= 0.9 * len(members)  # the persuadables
    assert not members & buyers  # loyal buyers buy anyway: targeting them gains nothing


def test_persuadables_need_the_merchants_own_completed_campaign(merchant, other_merchant, all_purposes_approved):
    from campaigns.models import CampaignStatus
    from campaigns.uplift import persuadables_create
    from merchants.errors import NotFound, Unprocessable

    from .conftest import make_campaign

    foreign = make_campaign(other_merchant, status=CampaignStatus.COMPLETED)
    with pytest.raises(NotFound):
        persuadables_create(campaign_id=foreign.pk, merchant_id=merchant.pk, name="x", size=150, actor="test")
    running = make_campaign(merchant, status=CampaignStatus.RUNNING)
    with pytest.raises(Unprocessable, match="completed campaign"):
        persuadables_create(campaign_id=running.pk, merchant_id=merchant.pk, name="x", size=150, actor="test")
    completed = make_campaign(merchant, status=CampaignStatus.COMPLETED)
    with pytest.raises(Unprocessable, match="cannot train an uplift model"):
        persuadables_create(campaign_id=completed.pk, merchant_id=merchant.pk, name="x", size=150, actor="test")


def test_the_forecast_endpoint_releases_the_expected_incremental_conversions(
    merchant, other_merchant, all_purposes_approved, merchant_client, other_merchant_client
):
    from campaigns.models import CampaignStatus
    from campaigns.uplift import campaign_forecast_exact
    from segments.models import Segment
    from segments.services import segment_members_write
    from tests.release_helpers import released_public

    from .conftest import make_campaign

    like, browsers, buyers = _completed_campaign_with_a_planted_effect(merchant)
    draft = make_campaign(merchant, status=CampaignStatus.DRAFT, name="Next sale")
    url = f"/api/v1/campaigns/{draft.pk}/forecast"
    per_consumer: dict[bool, float] = {}
    for members, expect_gain in ((browsers, True), (buyers, False)):
        segment = Segment.objects.create(
            merchant=merchant, name=f"audience {expect_gain}", definition="persuadables", created_by="test"
        )
        segment_members_write(
            segment_id=segment.pk, members=sorted(members), method="test", definition="test", actor="test"
        )
        draft.include_segments.set([segment])
        response = merchant_client.get(url)
        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["like_campaign_id"] == like.pk and body["confidence"] == 0.95
        assert body["audience"] == released_public(f"campaign:{draft.pk}:forecast:audience", len(members))
        exact = campaign_forecast_exact(campaign=draft)
        for key, (subject, count) in zip(
            ("audience", "incremental_conversions", "incremental_low", "incremental_high"),
            exact.figures(draft.pk),
            strict=True,
        ):
            assert body[key] == released_public(subject, count)
        assert exact.low <= exact.incremental <= exact.high
        per_consumer[expect_gain] = exact.incremental / exact.audience
    # The browsers are moved by the message; the loyal buyers buy anyway.
    assert per_consumer[True] > 0.2
    assert per_consumer[False] < 0.5 * per_consumer[True]
    assert other_merchant_client.get(url).status_code == 404
    lonely = make_campaign(other_merchant, status=CampaignStatus.DRAFT)
    response = other_merchant_client.get(f"/api/v1/campaigns/{lonely.pk}/forecast")
    assert response.status_code == 422
    assert "Not enough past campaigns to forecast" in response.json()["error"]["message"]


def test_the_forecast_needs_an_audience_insights_basis(merchant, merchant_client, approve_activity):
    from campaigns.models import CampaignStatus
    from privacy.models import Purpose

    from .conftest import make_campaign

    approve_activity(Purpose.DIRECT_MARKETING)  # a basis for another purpose does not count
    draft = make_campaign(merchant, status=CampaignStatus.DRAFT)
    response = merchant_client.get(f"/api/v1/campaigns/{draft.pk}/forecast")
    assert response.status_code == 422 and "processing activity" in response.json()["error"]["message"]


def test_the_api_offers_persuadables_for_a_campaign_like_this_one(
    merchant, merchant_client, other_merchant_client, all_purposes_approved
):
    from tests.release_helpers import released_public

    campaign, _browsers, _buyers = _completed_campaign_with_a_planted_effect(merchant)
    url = f"/api/v1/campaigns/{campaign.pk}/persuadables"
    response = merchant_client.post(url, {"name": "Persuadables", "size": 150}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kind"] == "persuadable"
    from segments.models import Segment

    exact = Segment.objects.get(pk=body["id"]).snapshots.get().size
    assert body["size"] == released_public(f"segment:{body['id']}:size", exact)  # never the exact size
    # The recipe, not the exact hold-out figures it was evaluated on (those are released only with noise), here
    # and when the segment is read again.
    again = merchant_client.get(f"/api/v1/segments/{body['id']}").json()
    for shown in (body["lookalike"], again["lookalike"]):
        assert shown == {"campaign": campaign.pk, "size": 150, "share": None, "learner": shown["learner"]}
    assert merchant_client.post(url, {"name": "Too few", "size": 5}, format="json").status_code == 422
    assert merchant_client.post(url, {"name": "Persuadables", "size": 150}, format="json").status_code == 409
    assert other_merchant_client.post(url, {"name": "Mine", "size": 150}, format="json").status_code == 404
