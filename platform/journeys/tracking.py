"""Tracking of journey messages: opens, clicks and conversions the operator reports through the campaigns'
tracking endpoint (`POST tracking/`), naming a journey message by its signed reference.

A reference is "journey:<message id>:<signature>" (django.core.signing, keyed by SECRET_KEY with its own salt):
the inbox and the webhook hand it out, the operator sends it back. A reference the platform did not sign (forged,
or issued by another installation) is refused with a 400 naming the event, like a message that was never sent.
Registered with campaigns.tracking's source registry in JourneysConfig.ready (campaigns never imports journeys).
"""

from __future__ import annotations

from django.core import signing

from campaigns.tracking import TrackingInput, TrackingSource, tracking_source_register

from .models import JourneySend, JourneyTrackingEvent, SendStatus

REF_PREFIX = "journey"
_SIGNER = signing.Signer(salt="journeys.message-ref")


def journey_message_ref(send_id: int) -> str:
    return _SIGNER.sign(f"{REF_PREFIX}:{send_id}")


def journey_message_id(message_ref: str) -> int | None:
    """The message id a reference names, or None when the platform did not issue it."""
    try:
        value = _SIGNER.unsign(message_ref)
    except signing.BadSignature:
        return None
    prefix, _, raw = value.partition(":")
    return int(raw) if prefix == REF_PREFIX and raw.isdigit() else None


def _problems(events: list[TrackingInput]) -> dict[int, str]:
    ids = {i: journey_message_id(e.message_ref) for i, e in enumerate(events)}
    statuses = dict(
        JourneySend.objects.filter(pk__in={v for v in ids.values() if v is not None}).values_list("pk", "status")
    )
    problems = {}
    for index, event in enumerate(events):
        send_id = ids[index]
        if send_id is None:
            problems[index] = "Not a message reference the platform issued (its signature does not match)."
        elif send_id not in statuses:
            problems[index] = "This journey message no longer exists."
        elif statuses[send_id] != SendStatus.SENT:
            problems[index] = (
                f"This journey message was never sent (it is {statuses[send_id]}), so it cannot be {event.kind}."
            )
    return problems


def _record(events: list[TrackingInput]) -> int:
    """Write the (valid) events once each: keyed by (message, idempotency key or kind)."""
    wanted: dict[tuple[int, str], TrackingInput] = {}
    for event in events:
        send_id = journey_message_id(event.message_ref)
        if send_id is not None:
            wanted.setdefault((send_id, event.idempotency_key or event.kind), event)
    if not wanted:
        return 0
    existing = set(
        JourneyTrackingEvent.objects.filter(
            send_id__in={s for s, _ in wanted}, idempotency_key__in={k for _, k in wanted}
        ).values_list("send_id", "idempotency_key")
    )
    new = [
        JourneyTrackingEvent(
            send_id=send_id,
            kind=event.kind,
            order_value=event.order_value,
            occurred_at=event.occurred_at,
            idempotency_key=key,
        )
        for (send_id, key), event in wanted.items()
        if (send_id, key) not in existing
    ]
    JourneyTrackingEvent.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


def register() -> None:
    tracking_source_register(TrackingSource(prefix=REF_PREFIX, problems=_problems, record=_record))
