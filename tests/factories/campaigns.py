"""Campaigns, made and launched through campaigns.services."""

from __future__ import annotations

from decimal import Decimal

import factory

from campaigns.models import Campaign
from campaigns.services import campaign_create, campaign_launch

from .segments import SegmentFactory


class CampaignFactory(factory.django.DjangoModelFactory):
    """A campaign made by `campaign_create` (a draft), including `include_segments` (made with SegmentFactory
    for the same merchant when not given); launch=True launches it with `campaign_launch`.
    """

    class Meta:
        model = Campaign

    merchant = factory.SubFactory("tests.factories.merchants.MerchantFactory")
    name = "Spring sale"
    title_template = "Hello from {store_name}"
    body_template = "Something new for you."
    personalised_products = 0
    control_share = Decimal("0.1")
    include_segments = factory.LazyAttribute(lambda o: [SegmentFactory(merchant=o.merchant)])
    exclude_segments = factory.LazyFunction(list)
    actor = "apikey:test"
    launch = False

    @classmethod
    def _create(cls, model_class, *args, merchant, actor, launch, include_segments, exclude_segments, **values):
        campaign = campaign_create(
            merchant=merchant,
            actor=actor,
            include_segment_ids=[s if isinstance(s, int) else s.pk for s in include_segments],
            exclude_segment_ids=[s if isinstance(s, int) else s.pk for s in exclude_segments],
            **values,
        )
        if launch:
            campaign = campaign_launch(campaign=campaign, actor=actor)
        return campaign


__all__ = ["CampaignFactory"]
