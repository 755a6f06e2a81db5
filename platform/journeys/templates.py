"""Ready-made journeys a merchant starts from (the portal's "create from a template" and POST journeys/ with
"template"): abandoned cart, win-back and post-purchase cross-sell."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from merchants.errors import Conflict, Invalid
from merchants.models import Merchant
from segments.models import Segment

from .models import Journey, TriggerKind
from .services import journey_create

LAPSING_SEGMENT_NAME = "Lapsing customers (win-back journey)"


@dataclass(frozen=True)
class Template:
    key: str
    name: str
    description: str


TEMPLATES = {
    t.key: t
    for t in (
        Template(
            "abandoned_cart",
            "Abandoned cart",
            "Carted, no purchase within 2 hours: a nudge with the carted product and recommendations; after 24 "
            "hours a reminder with an offer. A purchase ends it.",
        ),
        Template(
            "win_back",
            "Win-back",
            "Entering the lifecycle:lapsing segment: a we-miss-you message with recommendations, then an offer a "
            "week later if they have not bought.",
        ),
        Template(
            "post_purchase",
            "Post-purchase cross-sell",
            "Two days after a purchase: products that go with it.",
        ),
    )
}


def template_values(*, key: str, merchant: Merchant, actor: str) -> dict[str, Any]:
    if key == "abandoned_cart":
        return {
            "name": "Abandoned cart",
            "trigger_kind": TriggerKind.EVENT,
            "trigger_event": "carted()",
            "exit_condition": "purchased()",
            "reentry": "after_days",
            "reentry_days": 7,
            "steps": [
                {"type": "wait_for", "event": "purchased()", "timeout": "2h", "on_event": "exit"},
                {
                    "type": "send",
                    "title": "Still thinking about {carted_product}?",
                    "body": "It is waiting in your cart at {store_name}. You might also like {products}.",
                    "products": 3,
                },
                {"type": "wait", "duration": "22h"},
                {
                    "type": "send",
                    "title": "{offer} on your cart",
                    "body": "Complete your order of {carted_product} at {store_name} with {offer}.",
                    "coupon_code": "CART10",
                    "discount_percent": "10",
                    "products": 0,
                },
            ],
        }
    if key == "win_back":
        return {
            "name": "Win-back",
            "trigger_kind": TriggerKind.SEGMENT_ENTERED,
            "trigger_segment_id": _lapsing_segment(merchant=merchant, actor=actor).pk,
            "exit_condition": "purchased()",
            "reentry": "after_days",
            "reentry_days": 90,
            "steps": [
                {
                    "type": "send",
                    "title": "We miss you at {store_name}",
                    "body": "New picks for you: {products}.",
                    "products": 3,
                },
                {"type": "wait_for", "event": "purchased()", "timeout": "7d", "on_event": "exit"},
                {
                    "type": "send",
                    "title": "{offer}, just for you",
                    "body": "Come back to {store_name}: {offer}.",
                    "coupon_code": "COMEBACK15",
                    "discount_percent": "15",
                    "products": 0,
                },
            ],
        }
    if key == "post_purchase":
        return {
            "name": "Post-purchase cross-sell",
            "trigger_kind": TriggerKind.EVENT,
            "trigger_event": "purchased()",
            "reentry": "after_days",
            "reentry_days": 14,
            "steps": [
                {"type": "wait", "duration": "2d"},
                {
                    "type": "send",
                    "title": "Goes well with your order",
                    "body": "Picked for you at {store_name}: {products}.",
                    "products": 3,
                },
            ],
        }
    raise Invalid(f"template: one of {', '.join(TEMPLATES)} (found {key!r})", details={"field": "template"})


def _lapsing_segment(*, merchant: Merchant, actor: str) -> Segment:
    existing = Segment.objects.filter(merchant=merchant, name=LAPSING_SEGMENT_NAME).first()
    if existing is not None:
        return existing
    from segments.services import segment_create

    try:
        return segment_create(merchant=merchant, name=LAPSING_SEGMENT_NAME, actor=actor, expression="lifecycle:lapsing")
    except Conflict:
        return Segment.objects.get(merchant=merchant, name=LAPSING_SEGMENT_NAME)


def journey_from_template(*, merchant: Merchant, key: str, actor: str, name: str | None = None) -> Journey:
    values = template_values(key=key, merchant=merchant, actor=actor)
    if name:
        values["name"] = name
    return journey_create(merchant=merchant, actor=actor, **values)
