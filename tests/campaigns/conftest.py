"""Campaign test helpers: consumers with and without consent, campaigns in any state, a full activation run."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from pyroaring import BitMap

from campaigns.activation import StepOutcome, campaign_activation_step, campaign_run_begin
from campaigns.audience import SegmentMembers, audience_resolve, campaign_audience_freeze
from campaigns.basis import direct_marketing_basis
from campaigns.models import Campaign, CampaignStatus, Delivery, Group
from privacy.models import ConsentKind, ConsentStatus, Purpose
from tests.factories import ProductFactory, SegmentFactory, TaggingRunFactory, consents_record_for, consumers_ingest
from tests.webhook_receiver import receiver  # noqa: F401 - the local webhook server fixture


def make_consumers(n: int, *, start: int = 0) -> list[int]:
    """n consumers ingested under raw ids numbered from `start`; returns their ids, in id order."""
    consumers = consumers_ingest([f"campaign-shopper-{start + i}@example.org" for i in range(n)])
    return sorted(consumer.pk for consumer in consumers)


def record_consent(consumer_ids, *, status=ConsentStatus.GRANTED, kind=ConsentKind.EXPRESS, when=None) -> None:
    consents_record_for(consumer_ids, purpose=Purpose.DIRECT_MARKETING, status=status, kind=kind, when=when)


def withdraw_consent(consumer_ids) -> None:
    record_consent(consumer_ids, status=ConsentStatus.WITHDRAWN, when=timezone.now() + timedelta(seconds=1))


def make_campaign(merchant, **fields) -> Campaign:
    defaults = dict(
        name="Spring sale",
        title_template="Hello from {store_name}",
        body_template="Something new for you.",
        personalised_products=0,
        control_share=Decimal("0.1"),
        status=CampaignStatus.SCHEDULED,
        launched_by="apikey:test",
        launched_at=timezone.now(),
    )
    return Campaign.objects.create(merchant=merchant, **{**defaults, **fields})


def members_given(members, exclude=None):
    """A members source for campaign_activation_step: fixed bitmaps instead of refreshed segments."""

    def source(*, campaign, actor):
        include = [SegmentMembers(1, BitMap(members), "a" * 64)]
        excluded = [SegmentMembers(2, BitMap(exclude), "b" * 64)] if exclude else []
        return include, excluded

    return source


def run_activation(campaign: Campaign, members, *, exclude=None, budget_s: float = 60.0) -> Campaign:
    """Activate a campaign to the end, on an audience given as member bitmaps (no segment refresh)."""
    token = campaign_run_begin(campaign_id=campaign.pk)
    assert token is not None
    run_steps(campaign, token, budget_s=budget_s, source=members_given(members, exclude))
    campaign.refresh_from_db()
    return campaign


def freeze_audience(campaign: Campaign, members, *, exclude=None) -> None:
    """Resolve and freeze the audience only (the first part of the first step)."""
    campaign.refresh_from_db()
    include, excluded = members_given(members, exclude)(campaign=campaign, actor="test")
    resolution = audience_resolve(campaign=campaign, include=include, exclude=excluded, now=timezone.now())
    campaign_audience_freeze(
        campaign_id=campaign.pk, resolution=resolution, basis=direct_marketing_basis(), actor="apikey:test"
    )


def run_steps(
    campaign: Campaign, token: int, *, budget_s: float = 60.0, max_steps: int = 1000, source=None
) -> StepOutcome:
    extra = {"members_source": source} if source else {}
    for _ in range(max_steps):
        outcome = campaign_activation_step(campaign_id=campaign.pk, run_token=token, time_budget_s=budget_s, **extra)
        if outcome != StepOutcome.MORE:
            return outcome
    raise AssertionError("activation did not finish")


@pytest.fixture
def dm_approved(approve_activity):
    return approve_activity(Purpose.DIRECT_MARKETING)


@pytest.fixture
def consented_consumers(db):
    """200 consumers with express opt-in consent (twice MIN_AUDIENCE)."""
    ids = make_consumers(200)
    record_consent(ids)
    return ids


@pytest.fixture
def catalogue(merchant, other_merchant):
    """Five products of the merchant and one of another merchant."""
    own = [
        ProductFactory(merchant=merchant, sku=f"SKU-{i}", title=f"Tent {i}", price=Decimal(f"{10 + i}.50"))
        for i in range(1, 6)
    ]
    foreign = ProductFactory(merchant=other_merchant, sku="X-1", title="Lipstick", price=Decimal("9.99"))
    return own, foreign


@pytest.fixture(autouse=True)
def _fresh_bitmap_caches():
    """Per-process bitmap caches are keyed by version, and every test database starts versions afresh."""
    from tags.bitmaps import bitmap_cache_clear

    bitmap_cache_clear()
    try:
        from segments.evaluation import behaviour_cache_invalidate, snapshot_cache_clear
    except ImportError:
        return
    snapshot_cache_clear()
    behaviour_cache_invalidate()


class SegmentWorld:
    """Consumers tagged country:SG (by default 200) and country:MY (100); the first `consented` of them have
    express opt-in consent (by default 250: all of SG, half of MY).

    Tags come from a tagging run (rows and bitmaps as tagging leaves them); segments are made through
    segments.services.
    """

    def __init__(self, merchant, *, sg: int = 200, my: int = 100, consented: int = 250):
        self.merchant = merchant
        self.ids = make_consumers(sg + my, start=50_000)
        record_consent(self.ids[:consented])
        TaggingRunFactory(
            tags={("country", "SG"): self.ids[:sg], ("country", "MY"): self.ids[sg:]},
            keep=True,
            label=lambda family, value: value,
            definition=lambda family, value: f"Lives in {value}.",
        )

    def segment(self, name: str, expression: str, *, merchant=None, refresh: bool = True):
        return SegmentFactory(merchant=merchant or self.merchant, name=name, expression=expression, refresh=refresh)


@pytest.fixture
def world(merchant, all_purposes_approved):
    return SegmentWorld(merchant)


@pytest.fixture
def sent_campaign(merchant, dm_approved, consented_consumers):
    """A campaign activated and dispatched to the consented consumers (inbox channel)."""
    return run_activation(make_campaign(merchant, body_template="Your picks"), consented_consumers)


def treated(campaign):
    return Delivery.objects.filter(campaign=campaign, group=Group.TREATMENT).select_related("consumer").order_by("pk")
