"""A test send (a write, beside services.py): the campaign's message, as a chosen sample consumer would get it, to
the operator's test inbox only.

The test inbox is a consumer the operator names by pseudonym (CAMPAIGN_TEST_INBOX_PSEUDONYM). The send is one
delivery of group "test" to that consumer under the usual UNIQUE (campaign, consumer) constraint (sending again
replaces the unread test message), checked against privacy.messaging's rule like every send, audited, and never
counted: reports, KPIs, frequency caps and exports count only the treatment and control groups, and tracking
refuses test deliveries.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from consumers.subject_data import consumer_id_for_pseudonym
from merchants.errors import Conflict
from privacy.audit import audit_record
from privacy.messaging import messaging_refusals
from privacy.models import Purpose

from .dispatch import withdrawal_message
from .models import Campaign, Delivery, DeliveryStatus, Group
from .preview import message_preview


def campaign_test_send(*, campaign: Campaign, actor: str, sample: int = 1) -> Delivery:
    pseudonym = settings.CAMPAIGN_TEST_INBOX_PSEUDONYM
    consumer_id = consumer_id_for_pseudonym(pseudonym)
    if consumer_id is None:
        raise Conflict(
            "Test sends are not set up on this platform: the operator has not named a test inbox.",
            code="test_inbox_missing",
        )
    refusal = messaging_refusals([consumer_id], with_offer=campaign.has_offer).get(consumer_id)
    if refusal is not None:
        reason = withdrawal_message(refusal).removeprefix("not sent: ").replace("the consumer", "the test inbox")
        raise Conflict(f"The test message was not sent: {reason}.", code="test_inbox_refused")
    preview = message_preview(
        merchant_id=campaign.merchant_id,
        store_name=campaign.merchant.name,
        title_template=campaign.title_template,
        body_template=campaign.body_template,
        coupon_code=campaign.coupon_code,
        discount_percent=campaign.discount_percent,
        personalised_products=campaign.personalised_products,
        segment_ids=list(campaign.include_segments.values_list("pk", flat=True)),
        sample=sample,
    )
    now = timezone.now()
    with transaction.atomic():
        existing = Delivery.objects.select_for_update().filter(campaign=campaign, consumer_id=consumer_id).first()
        if existing is not None and existing.group != Group.TEST:
            raise Conflict(
                "The test inbox is part of this campaign's audience, so it already gets the real message.",
                code="test_inbox_in_audience",
            )
        delivery, _ = Delivery.objects.update_or_create(
            campaign=campaign,
            consumer_id=consumer_id,
            defaults={
                "group": Group.TEST,
                "status": DeliveryStatus.DISPATCHED,
                "title": preview.message.title[:400],
                "body": preview.message.body,
                "product_ids": [],
                "created_at": now,
                "dispatched_at": now,
                "delivered_at": None,
            },
        )
        audit_record(
            actor=actor,
            action="campaign.test_sent",
            merchant_id=campaign.merchant_id,
            purpose=Purpose.DIRECT_MARKETING,
            object_type="Campaign",
            object_id=campaign.pk,
            counts={"deliveries": 1},
            details={"to": "operator test inbox", "sample": preview.sample},
        )
    return delivery
