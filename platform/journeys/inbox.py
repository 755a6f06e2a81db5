"""Journey messages in the operator's inbox, served by campaigns.inbox through its source registry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import transaction

from campaigns.inbox import InboxMessage
from campaigns.models import Channel
from consumers.models import Product

from .models import JourneySend, SendStatus
from .tracking import journey_message_ref


def journey_inbox_take(
    *,
    consumer_id: int,
    allowed: Callable[[bool], bool],
    why_not: Callable[[bool], str],
    now: datetime,
    limit: int,
) -> list[InboxMessage]:
    """The consumer's unread journey messages, marked delivered. The messaging rule is asked again as they are
    read: one written before a withdrawal or an objection is withdrawn, never shown. Rows are locked and locked
    ones skipped, so two concurrent reads never show the same message."""
    if limit <= 0:
        return []
    with transaction.atomic():
        rows = list(
            JourneySend.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(consumer_id=consumer_id, status=SendStatus.SENT, channel=Channel.INBOX, delivered_at__isnull=True)
            .select_related("journey__merchant")
            .order_by("created_at", "pk")[:limit]
        )
        shown = [s for s in rows if allowed(bool(s.coupon_code))]
        for has_offer in (False, True):
            refused = [s.pk for s in rows if s not in shown and bool(s.coupon_code) == has_offer]
            if refused:
                JourneySend.objects.filter(pk__in=refused).update(
                    status=SendStatus.WITHDRAWN, withdrawn_reason=why_not(has_offer)[:200]
                )
        JourneySend.objects.filter(pk__in=[s.pk for s in shown]).update(delivered_at=now)
    wanted = {pid for s in shown for pid in s.product_ids}
    catalogue = list(Product.objects.filter(pk__in=wanted).values("pk", "sku", "title", "price", "merchant_id"))
    owner = {p["pk"]: p["merchant_id"] for p in catalogue}
    products = {
        p["pk"]: {
            "id": p["pk"],
            "sku": p["sku"],
            "title": p["title"],
            "price": None if p["price"] is None else str(p["price"]),
        }
        for p in catalogue
    }
    # Only the sending journey's own store's products are ever shown, whatever a message row names.
    return [
        InboxMessage(
            delivery_id=s.pk,
            campaign_id=None,
            store_name=s.journey.merchant.name,
            title=s.title,
            body=s.body,
            coupon_code=s.coupon_code,
            products=[
                products[pid] for pid in s.product_ids if pid in products and owner[pid] == s.journey.merchant_id
            ],
            sent_at=s.created_at,
            kind="journey",
            journey_id=s.journey_id,
            message_ref=journey_message_ref(s.pk),
        )
        for s in shown
    ]
