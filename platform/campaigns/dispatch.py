"""Dispatch: send the written messages batch by batch (inbox or the operator's webhook), re-checking per batch
"may this consumer be messaged now" (privacy.messaging: consent, suppressions, minors) so a withdrawal stops a
message that was not sent yet."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from privacy.messaging import Reason, messageable_consumer_ids, messaging_refusals

from .audience import consumers_in
from .basis import ActivationRefused
from .deliveries import Catalogue, RunContext, Superseded, batch_size, lock_campaign_for_batch
from .models import (
    Campaign,
    CampaignStatus,
    Channel,
    Delivery,
    DeliveryStatus,
    Phase,
)
from .webhook import WebhookResult, webhook_post

ERROR_CONSENT_WITHDRAWN = "not sent: the consumer's direct-marketing consent was withdrawn before dispatch"
ERROR_SUPPRESSED = "not sent: the consumer was suppressed (objection, risk flag or blacklist) before dispatch"
ERROR_MINOR = "not sent: the consumer is under 18 and direct marketing to minors is not allowed"


def webhook_batch_size() -> int:
    return max(1, settings.CAMPAIGN_WEBHOOK_BATCH_SIZE)


def consumers_reachable(consumer_ids: Sequence[int], *, has_offer: bool) -> set[int]:
    """Of these consumers, those a message may reach right now (privacy.messaging's rule, in SQL)."""
    if not consumer_ids:
        return set()
    allowed = messageable_consumer_ids(with_offer=has_offer, within=consumers_in(consumer_ids))
    return set(allowed) & set(consumer_ids)


WITHDRAWAL_REASONS = {
    Reason.ERASED: ERROR_CONSENT_WITHDRAWN,
    Reason.NO_EXPRESS_CONSENT: ERROR_CONSENT_WITHDRAWN,
    Reason.OBJECTION: ERROR_SUPPRESSED,
    Reason.SUPPRESSED: ERROR_SUPPRESSED,
    Reason.OFFER_SUPPRESSED: ERROR_SUPPRESSED,
    Reason.MINOR: ERROR_MINOR,
}


def withdrawal_message(reason: str) -> str:
    """The delivery's last_error for a refusal of privacy.messaging's rule."""
    return WITHDRAWAL_REASONS.get(reason, ERROR_SUPPRESSED)


def withdrawal_reasons(consumer_ids: Sequence[int], reachable: set[int], *, has_offer: bool) -> dict[int, str]:
    """Why each unreachable consumer is withdrawn (the rule's reason: consent first, since the law asks for it)."""
    unreachable = [cid for cid in consumer_ids if cid not in reachable]
    if not unreachable:
        return {}
    refusals = messaging_refusals(unreachable, with_offer=has_offer)
    return {cid: withdrawal_message(refusals.get(cid, Reason.CHANGED)) for cid in unreachable}


def product_payload(product_ids: list[int], catalogue: Catalogue) -> list[dict]:
    catalogue.load(set(product_ids))
    result = []
    for pid in product_ids:
        info = catalogue.products.get(pid)
        if info is not None:
            result.append({"id": pid, "title": info.title, "price": None if info.price is None else str(info.price)})
    return result


def deliveries_dispatch_batch(*, ctx: RunContext, run_token: int) -> bool:
    """Send the next batch of pending messages. Returns False when every delivery has been dispatched.

    Consent and suppressions are re-checked per batch, so a withdrawal recorded after activation
    stops that consumer's message (status withdrawn).
    """
    campaign = ctx.campaign
    fields = ["id", "consumer_id", "status"]
    if campaign.channel == Channel.WEBHOOK:
        fields += ["title", "body", "product_ids", "consumer__pseudonym"]
    rows = list(
        Delivery.objects.filter(campaign_id=campaign.pk, consumer_id__gt=campaign.dispatch_cursor)
        .order_by("consumer_id")
        .values(*fields)[: batch_size()]
    )
    if not rows:
        return False
    first_id, last_id = campaign.dispatch_cursor, rows[-1]["consumer_id"]
    pending = [r for r in rows if r["status"] == DeliveryStatus.PENDING]
    reachable = consumers_reachable([r["consumer_id"] for r in pending], has_offer=campaign.has_offer)
    withdrawn_reason = withdrawal_reasons([r["consumer_id"] for r in pending], reachable, has_offer=campaign.has_offer)
    to_send = [r for r in pending if r["consumer_id"] in reachable]

    # Requests made: (first and last consumer id of the slice sent, webhook result; None for the inbox).
    # The batch's rows are every delivery with first_id < consumer_id <= last_id, so once the
    # unreachable ones are withdrawn, "pending in a consumer-id range" is exactly the slice sent.
    outcomes: list[tuple[int, int, WebhookResult | None]] = []
    stop_reason = ""
    if campaign.channel == Channel.INBOX:
        outcomes.append((first_id + 1, last_id, None))  # publishing to the inbox is the status change itself
    else:
        _ensure_still_running(campaign.pk, run_token)
        chunk = webhook_batch_size()
        for start in range(0, len(to_send), chunk):
            part = to_send[start : start + chunk]
            result = webhook_post(_webhook_payload(campaign, part, ctx.renderer.catalogue))
            outcomes.append((part[0]["consumer_id"], part[-1]["consumer_id"], result))
            if not result.ok:
                stop_reason = (
                    f"The operator's notification service did not accept the messages: {result.error}. "
                    "The remaining messages were not sent."
                )
                break

    now = timezone.now()
    with transaction.atomic():
        lock_campaign_for_batch(
            campaign.pk, run_token, dispatch_cursor=campaign.dispatch_cursor, phase=Phase.DISPATCHING
        )
        pending_now = Delivery.objects.filter(campaign_id=campaign.pk, status=DeliveryStatus.PENDING)
        dispatched = failed = withdrawn = 0
        for reason in set(withdrawn_reason.values()):
            consumers = [cid for cid, why in withdrawn_reason.items() if why == reason]
            withdrawn += pending_now.filter(consumer_id__in=consumers).update(
                status=DeliveryStatus.WITHDRAWN, last_error=reason
            )
        for lo, hi, outcome in outcomes:
            sent = pending_now.filter(consumer_id__gte=lo, consumer_id__lte=hi)
            if outcome is None:
                dispatched += sent.update(status=DeliveryStatus.DISPATCHED, dispatched_at=now)
            elif outcome.ok:
                dispatched += sent.update(
                    status=DeliveryStatus.DISPATCHED,
                    dispatched_at=now,
                    delivered_at=now,
                    attempts=F("attempts") + outcome.attempts,
                )
            else:
                failed += sent.update(
                    status=DeliveryStatus.FAILED,
                    last_error=outcome.error[:500],
                    attempts=F("attempts") + outcome.attempts,
                )
        Campaign.objects.filter(pk=campaign.pk).update(
            dispatched_count=F("dispatched_count") + dispatched,
            withdrawn_count=F("withdrawn_count") + withdrawn,
            failed_count=F("failed_count") + failed,
            dispatch_cursor=last_id,
            heartbeat_at=now,
            updated_at=now,
        )
    campaign.dispatch_cursor = last_id
    if stop_reason:
        raise ActivationRefused(stop_reason, code="webhook_failed")
    return True


def webhook_payload(*, kind: str, merchant_id: int, merchant_name: str, messages: list[dict], **sender) -> dict:
    """The body of one webhook POST, for every sender: `kind` ("campaign" or "journey"), the sender's ids
    (campaign_id, or journey_id), the merchant, when, and the messages (each with its delivery_id, the receiver's
    idempotency key, the consumer's pseudonym, title, body, coupon code and products)."""
    return {
        "kind": kind,
        **sender,
        "merchant": {"id": merchant_id, "name": merchant_name},
        "sent_at": timezone.now().isoformat(),
        "messages": messages,
    }


def _webhook_payload(campaign: Campaign, rows: list[dict], catalogue: Catalogue) -> dict:
    return webhook_payload(
        kind="campaign",
        campaign_id=campaign.pk,
        merchant_id=campaign.merchant_id,
        merchant_name=campaign.merchant.name,
        messages=[
            {
                "delivery_id": r["id"],
                "consumer": r["consumer__pseudonym"],
                "title": r["title"],
                "body": r["body"],
                "coupon_code": campaign.coupon_code,
                "products": product_payload(r["product_ids"], catalogue),
            }
            for r in rows
        ],
    )


def _ensure_still_running(campaign_id: int, run_token: int) -> None:
    """Right before sending to the outside world: stop if the campaign was cancelled meanwhile."""
    status, token = Campaign.objects.filter(pk=campaign_id).values_list("status", "run_token").get()
    if status != CampaignStatus.RUNNING or token != run_token:
        raise Superseded
