"""Journey messages on the webhook channel: the campaigns' signed POSTs (campaigns.webhook: signature, retries
with exponential backoff) and payload format (campaigns.dispatch.webhook_payload, `kind: "journey"`).

A send step of a journey whose channel is the webhook writes its message `pending`; after the step's batch
commits, `journey_webhook_dispatch` sends the journey's pending messages a bounded batch at a time:

1. claim them (FOR UPDATE SKIP LOCKED on PostgreSQL) with a lease: until a time, under a token of this claim. A
   leased message is not claimed by anyone else; one whose dispatch was killed mid-POST stays pending, and once the
   lease runs out the next dispatch claims it (the tick sweeps);
2. ask the messaging rule again (a consent withdrawn since the step ran withdraws the message, with the reason);
3. POST them in chunks of CAMPAIGN_WEBHOOK_BATCH_SIZE. Right before each POST the chunk's lease is renewed, only
   where it is still this claim's, for as long as the POST and its retries may take: a message whose lease ran out
   while earlier chunks were posted, and that another dispatch claimed, is left to that one, never posted twice;
4. record the results, again only where the lease is still this claim's: accepted messages are `sent`
   (delivered_at), refused ones `failed` with the error and the attempts on the message, the journey's last_error,
   and the report's per-step `failed` count. After a failed chunk the rest of the batch waits for the next dispatch.

Each message carries its id (`delivery_id`, the receiver's idempotency key) and `message_ref` for tracking.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from campaigns.deliveries import Catalogue
from campaigns.dispatch import (
    consumers_reachable,
    product_payload,
    webhook_batch_size,
    webhook_payload,
    withdrawal_reasons,
)
from campaigns.models import Channel
from campaigns.webhook import webhook_post, webhook_post_longest_s
from consumers.models import Consumer
from dbtools.backend import on_postgresql

from .definition import message_has_offer, variant_letter
from .models import Journey, JourneySend, JourneyVersion, SendStatus
from .tracking import journey_message_ref

logger = logging.getLogger("dmp.journeys")

WEBHOOK_CLAIM = 2_000  # the most messages one dispatch claims


def webhook_pending(*, journey_id: int | None = None, now: datetime) -> Q:
    """Pending webhook messages no dispatch holds (never claimed, or its lease ran out)."""
    condition = Q(status=SendStatus.PENDING, channel=Channel.WEBHOOK) & (
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )
    return condition if journey_id is None else condition & Q(journey_id=journey_id)


def _claim(journey_id: int, now: datetime, limit: int) -> tuple[str, list[int]]:
    """Lease up to `limit` unheld pending messages to a new claim: its token and the message ids."""
    token = uuid.uuid4().hex
    with transaction.atomic():
        rows = JourneySend.objects.filter(webhook_pending(journey_id=journey_id, now=now)).order_by("pk")
        if on_postgresql():
            rows = rows.select_for_update(skip_locked=True)
        ids = list(rows.values_list("pk", flat=True)[:limit])
        if ids:
            JourneySend.objects.filter(pk__in=ids).update(
                lease_until=now + timedelta(seconds=settings.JOURNEY_STEP_LEASE_S), lease_token=token
            )
    return token, ids


def _still_held(ids: list[int], token: str, until: datetime) -> set[int]:
    """The messages of `ids` the claim `token` still holds, their lease renewed to `until`. The others were claimed
    by another dispatch after this claim's lease ran out (that one posts them), or are no longer pending. Under the
    row locks (PostgreSQL) a concurrent claim either sees the renewed lease or has already changed the token."""
    with transaction.atomic():
        rows = JourneySend.objects.filter(pk__in=ids, lease_token=token, status=SendStatus.PENDING)
        if on_postgresql():
            rows = rows.select_for_update()
        held = set(rows.values_list("pk", flat=True))
        if held:
            JourneySend.objects.filter(pk__in=held).update(lease_until=until)
    return held


def _message(row: Mapping[str, Any], pseudonyms: dict[int, str], catalogue: Catalogue) -> dict:
    return {
        "delivery_id": row["pk"],
        "message_ref": journey_message_ref(row["pk"]),
        "consumer": pseudonyms.get(row["consumer_id"], ""),
        "title": row["title"],
        "body": row["body"],
        "coupon_code": row["coupon_code"],
        "products": product_payload(row["product_ids"], catalogue),
        "journey_id": row["journey_id"],
        "journey_version": row["enrolment__version__number"],
        "step": row["step"],
        "variant": None if row["variant"] is None else variant_letter(row["variant"]),
    }


def journey_webhook_dispatch(*, journey_id: int, now: datetime | None = None) -> dict[str, int]:
    """Send up to WEBHOOK_CLAIM of the journey's pending webhook messages; returns counts (and `more` when some
    are left for the next call)."""
    now = now or timezone.now()
    counts = {"sent": 0, "failed": 0, "withdrawn": 0, "more": 0}
    journey = Journey.objects.select_related("merchant").filter(pk=journey_id).first()
    if journey is None:
        return counts
    started = timezone.now()
    token, ids = _claim(journey_id, now, WEBHOOK_CLAIM)
    if not ids:
        return counts
    rows = list(
        JourneySend.objects.filter(pk__in=ids)
        .order_by("pk")
        .values(
            "pk",
            "consumer_id",
            "journey_id",
            "step",
            "variant",
            "title",
            "body",
            "coupon_code",
            "product_ids",
            "enrolment__version__number",
            "enrolment__version_id",
        )
    )
    # An offer is a coupon or a discount, of the step or of the consumer's variant (as when the message was
    # written): the coupon alone missed discount-only messages, sent after consent to offers was withdrawn.
    steps = dict(
        JourneyVersion.objects.filter(pk__in={r["enrolment__version_id"] for r in rows}).values_list("pk", "steps")
    )
    offers = {r["pk"]: message_has_offer(steps[r["enrolment__version_id"]][r["step"]], r["variant"]) for r in rows}
    withdrawn: dict[int, str] = {}  # message id -> why
    for has_offer in (False, True):
        part = [r for r in rows if offers[r["pk"]] == has_offer]
        consumers = [r["consumer_id"] for r in part]
        reachable = consumers_reachable(consumers, has_offer=has_offer)
        reasons = withdrawal_reasons(consumers, reachable, has_offer=has_offer)
        withdrawn.update({r["pk"]: reasons[r["consumer_id"]] for r in part if r["consumer_id"] in reasons})
    to_send = [r for r in rows if r["pk"] not in withdrawn]
    pseudonyms = dict(
        Consumer.objects.filter(pk__in={r["consumer_id"] for r in to_send}).values_list("pk", "pseudonym")
    )
    catalogue = Catalogue(journey.merchant_id)
    outcomes = []  # (message ids, result)
    chunk = webhook_batch_size()
    # A chunk's lease outlasts its POST with every retry; `now` moved on by the time spent since the claim.
    post_lease = timedelta(seconds=settings.JOURNEY_STEP_LEASE_S + webhook_post_longest_s())
    for start in range(0, len(to_send), chunk):
        candidates = [r["pk"] for r in to_send[start : start + chunk]]
        held = _still_held(candidates, token, now + (timezone.now() - started) + post_lease)
        part = [r for r in to_send[start : start + chunk] if r["pk"] in held]
        if not part:
            continue
        payload = webhook_payload(
            kind="journey",
            journey_id=journey.pk,
            merchant_id=journey.merchant_id,
            merchant_name=journey.merchant.name,
            messages=[_message(r, pseudonyms, catalogue) for r in part],
        )
        result = webhook_post(payload)
        outcomes.append(([r["pk"] for r in part], result))
        if not result.ok:
            break  # the service is failing: the rest waits for the next dispatch instead of failing too
    # Only what this claim still holds is recorded: a message another dispatch claimed is its to record.
    ours = JourneySend.objects.filter(lease_token=token, status=SendStatus.PENDING)
    released = {"lease_until": None, "lease_token": ""}
    with transaction.atomic():
        for reason in set(withdrawn.values()):
            counts["withdrawn"] += ours.filter(pk__in=[pk for pk, why in withdrawn.items() if why == reason]).update(
                status=SendStatus.WITHDRAWN, withdrawn_reason=reason[:200], **released
            )
        error = ""
        for message_ids, result in outcomes:
            claimed = ours.filter(pk__in=message_ids)
            if result.ok:
                counts["sent"] += claimed.update(
                    status=SendStatus.SENT,
                    delivered_at=timezone.now(),
                    attempts=F("attempts") + result.attempts,
                    last_error="",
                    **released,
                )
            else:
                error = result.error
                counts["failed"] += claimed.update(
                    status=SendStatus.FAILED,
                    last_error=result.error[:500],
                    attempts=F("attempts") + result.attempts,
                    **released,
                )
        handled = {pk for message_ids, _ in outcomes for pk in message_ids} | set(withdrawn)
        left = [pk for pk in ids if pk not in handled]
        # Not tried (a chunk before them failed), or taken by another dispatch: the ones still ours are free for
        # the next dispatch at once.
        if ours.filter(pk__in=left).update(**released):
            counts["more"] = 1
        if error:
            # Prose, never the exact count: a merchant sees numbers only as released figures (the report's `failed`).
            Journey.objects.filter(pk=journey.pk).update(
                last_error=(
                    "The operator's notification service did not accept some journey messages; the last failure "
                    f"was: {error}. They are marked failed and counted in the report's failed figures."
                )[:1000]
            )
    if len(ids) == WEBHOOK_CLAIM and not counts["more"]:
        counts["more"] = 1
    logger.info("journey.webhook_dispatched", extra={"fields": {"journey_id": journey.pk, **counts}})
    return counts


def journeys_with_pending_webhooks(*, now: datetime) -> list[int]:
    """Journeys with webhook messages waiting to be sent (for the tick's sweep)."""
    return sorted(
        set(JourneySend.objects.filter(webhook_pending(now=now)).values_list("journey_id", flat=True).distinct())
    )
