"""The operator's inbox: the messages a consumer may read now, taken (marked delivered) as they are read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from consumers.models import Product
from consumers.subject_data import consumer_id_for_pseudonym
from privacy.messaging import Decision, may_message

from .dispatch import withdrawal_message
from .models import (
    Campaign,
    Channel,
    Delivery,
    DeliveryStatus,
    Group,
)


@dataclass(frozen=True)
class InboxMessage:
    delivery_id: int  # a campaign delivery's id, or a journey message's id (kind says which)
    campaign_id: int | None
    store_name: str
    title: str
    body: str
    coupon_code: str
    products: list[dict]
    sent_at: datetime | None  # the delivery's dispatched_at: set whenever a delivery is marked dispatched
    kind: str = "campaign"  # or "journey"
    journey_id: int | None = None
    message_ref: str = ""  # a journey message's signed reference for tracking (campaign messages use delivery_id)


# Other senders of inbox messages (journeys) register here, so this layer never imports them. A source's `take`
# returns the consumer's unread messages from it, marked delivered, and withdraws those the rule now refuses:
# take(consumer_id=, allowed=(has_offer -> bool), why_not=(has_offer -> str), now=, limit=).
InboxTake = Callable[..., list[InboxMessage]]
INBOX_SOURCES: list[InboxTake] = []


def inbox_source_register(take: InboxTake) -> None:
    if take not in INBOX_SOURCES:
        INBOX_SOURCES.append(take)


@dataclass(frozen=True)
class _Reach:
    """The rule's decisions for this consumer now, for a message without and with an offer."""

    plain: Decision
    offer: Decision

    def decision(self, *, has_offer: bool) -> Decision:
        return self.offer if has_offer else self.plain

    def why_not(self, *, has_offer: bool) -> str:
        reason = withdrawal_message(self.decision(has_offer=has_offer).reason)
        return reason.replace("before dispatch", "before the message was read")


def _reach_now(consumer_id: int) -> _Reach:
    """May messages reach this consumer now (privacy.messaging's rule, per consumer)."""
    return _Reach(
        plain=may_message(consumer_id=consumer_id, with_offer=False),
        offer=may_message(consumer_id=consumer_id, with_offer=True),
    )


def inbox_messages_take(*, pseudonym: str, limit: int = 50) -> list[InboxMessage] | None:
    """The consumer's unread inbox messages, marked as delivered; None when the pseudonym is unknown.

    "May this consumer be messaged now" (privacy.messaging) is checked again here: a message published before a
    withdrawal, an objection or a change of the rule (e.g. minors) is withdrawn, not shown.
    Concurrent reads never return the same message twice (rows are locked, locked ones skipped).
    """
    consumer_id = consumer_id_for_pseudonym(pseudonym)
    if consumer_id is None:
        return None
    now = timezone.now()
    reach = _reach_now(consumer_id)
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                consumer_id=consumer_id,
                status=DeliveryStatus.DISPATCHED,
                delivered_at__isnull=True,
            )
            .filter(Q(campaign__channel=Channel.INBOX) | Q(group=Group.TEST))  # test sends land in the inbox
            .select_related("campaign", "campaign__merchant")
            .order_by("dispatched_at", "pk")[:limit]
        )
        shown = [d for d in rows if reach.decision(has_offer=d.campaign.has_offer).allowed]
        withdrawn = [d for d in rows if not reach.decision(has_offer=d.campaign.has_offer).allowed]
        Delivery.objects.filter(pk__in=[d.pk for d in shown]).update(delivered_at=now)
        for has_offer in (False, True):
            ids = [d.pk for d in withdrawn if d.campaign.has_offer == has_offer]
            if ids:
                Delivery.objects.filter(pk__in=ids).update(
                    status=DeliveryStatus.WITHDRAWN, last_error=reach.why_not(has_offer=has_offer)
                )
        if withdrawn:
            per_campaign: dict[int, int] = {}
            for delivery in (d for d in withdrawn if d.group != Group.TEST):  # test sends are never counted
                per_campaign[delivery.campaign_id] = per_campaign.get(delivery.campaign_id, 0) + 1
            for campaign_id, n in per_campaign.items():
                Campaign.objects.filter(pk=campaign_id).update(
                    withdrawn_count=F("withdrawn_count") + n, dispatched_count=F("dispatched_count") - n
                )
    titles = _product_details({pid for d in shown for pid in d.product_ids}, shown)
    messages = [
        InboxMessage(
            delivery_id=d.pk,
            campaign_id=d.campaign_id,
            store_name=d.campaign.merchant.name,
            title=d.title,
            body=d.body,
            coupon_code=d.campaign.coupon_code,
            products=[titles[pid] for pid in d.product_ids if pid in titles],
            sent_at=d.dispatched_at,
        )
        for d in shown
    ]
    for take in INBOX_SOURCES:
        if len(messages) >= limit:
            break
        messages += take(
            consumer_id=consumer_id,
            allowed=lambda has_offer: reach.decision(has_offer=has_offer).allowed,
            why_not=lambda has_offer: reach.why_not(has_offer=has_offer),
            now=now,
            limit=limit - len(messages),
        )
    return sorted(messages, key=lambda m: (m.sent_at or now, m.kind, m.delivery_id))


def _product_details(product_ids: set[int], deliveries: list[Delivery]) -> dict[int, dict]:
    merchants = {d.campaign.merchant_id for d in deliveries}
    rows = Product.objects.filter(pk__in=product_ids, merchant_id__in=merchants).values("pk", "sku", "title", "price")
    return {
        r["pk"]: {
            "id": r["pk"],
            "sku": r["sku"],
            "title": r["title"],
            "price": None if r["price"] is None else str(r["price"]),
        }
        for r in rows
    }
