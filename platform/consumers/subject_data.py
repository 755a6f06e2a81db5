"""What the consumers layer holds about one consumer, for access and erasure requests (layer 2).

Besides its own tables (the profile and the events), this handler answers for
the privacy tables keyed by consumer (consent ledger and current state,
suppressions, risk flags, counter statements): they hang off the Consumer row,
which this handler removes last, so it must count them before they cascade.
Section names in the access document and keys of the erasure counts are the
same, so the access document visibly covers everything the erasure removes.

It also registers the resolver privacy uses to turn a pseudonym into the
consumer's integer id, so privacy never looks at this app's models itself.
"""

from __future__ import annotations

from django.db.models import F

from privacy.models import ConsentRecord, ConsentState, CounterStatement, RiskFlag, Suppression
from privacy.subject_data import SubjectDataHandler, register, register_resolver

from .models import Consumer, Event, EventType

LAYER = 2

EVENT_TYPE_NAMES = dict(EventType.choices)


def consumer_id_for_pseudonym(pseudonym: str) -> int | None:
    if not pseudonym:
        return None
    return Consumer.objects.filter(pseudonym=pseudonym).values_list("pk", flat=True).first()


def _profile(consumer_id: int) -> dict | None:
    return (
        Consumer.objects.filter(pk=consumer_id)
        .values("pseudonym", "age_range", "country", "gender", "created_at", "updated_at")
        .first()
    )


def _events(consumer_id: int) -> list[dict]:
    rows = (
        Event.objects.filter(consumer_id=consumer_id)
        .order_by("occurred_at", "pk")
        .values(
            "occurred_at",
            "event_type",
            "quantity",
            "price",
            "discount",
            "order_ref",
            "device",
            merchant_name=F("merchant__name"),
            product_sku=F("product__sku"),
            product_title=F("product__title"),
        )
    )
    events = []
    for row in rows.iterator(chunk_size=5000):
        row["event_type"] = EVENT_TYPE_NAMES.get(row["event_type"], row["event_type"])
        events.append(row)
    return events


def access(consumer_id: int) -> dict:
    profile = _profile(consumer_id)
    return {
        "profile": [profile] if profile else [],
        "events": _events(consumer_id),
        "consent_history": list(
            ConsentRecord.objects.filter(consumer_id=consumer_id)
            .order_by("occurred_at", "pk")
            .values("purpose", "status", "kind", "source", "occurred_at", "recorded_at")
        ),
        "consent_current": list(
            ConsentState.objects.filter(consumer_id=consumer_id)
            .order_by("purpose")
            .values("purpose", "status", "kind", "occurred_at")
        ),
        "suppressions": list(
            Suppression.objects.filter(consumer_id=consumer_id)
            .order_by("created_at", "pk")
            .values("reason", "scope", "created_at", "lifted_at")
        ),
        "risk_flags": list(
            RiskFlag.objects.filter(consumer_id=consumer_id)
            .order_by("created_at", "pk")
            .values("pk", "reason", "evidence", "status", "created_at", "last_seen_at", "lifted_at", "lift_reason")
        ),
        "counter_statements": list(
            CounterStatement.objects.filter(consumer_id=consumer_id)
            .order_by("created_at", "pk")
            .values("pk", "flag_id", "statement", "status", "created_at", "reviewed_at", "review_note")
        ),
    }


def erase(consumer_id: int) -> dict[str, int]:
    """Remove the privacy rows, the events, then the consumer; counts under the access document's keys."""
    counts = {
        "counter_statements": CounterStatement.objects.filter(consumer_id=consumer_id).delete()[0],
        "suppressions": Suppression.objects.filter(consumer_id=consumer_id).delete()[0],
        "risk_flags": RiskFlag.objects.filter(consumer_id=consumer_id).delete()[0],
        "consent_current": ConsentState.objects.filter(consumer_id=consumer_id).delete()[0],
        "consent_history": ConsentRecord.objects.filter(consumer_id=consumer_id).delete()[0],
    }
    # A plain DELETE when nothing hangs off events (Django's fast delete); cascades counted otherwise.
    _, by_model = Event.objects.filter(consumer_id=consumer_id).delete()
    counts["events"] = by_model.pop(Event._meta.label, 0)
    cascaded = dict(by_model)
    _, by_model = Consumer.objects.filter(pk=consumer_id).delete()
    counts["profile"] = by_model.pop(Consumer._meta.label, 0)
    # Whatever else still hung off the consumer (a table no handler answered for) is named, not hidden.
    for label, n in [*cascaded.items(), *by_model.items()]:
        if n:
            counts[f"cascaded:{label}"] = counts.get(f"cascaded:{label}", 0) + n
    return counts


register(SubjectDataHandler(name="consumers", layer=LAYER, access=access, erase=erase))
register_resolver(consumer_id_for_pseudonym)
