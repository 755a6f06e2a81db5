"""A journey's definition: an ordered list of steps, checked before it is stored.

Steps (JSON objects, each with a "type"):

- ``{"type": "wait", "duration": "2h"}`` or ``{"type": "wait", "until": "09:00"}`` (the next 09:00 in the
  journey's time zone);
- ``{"type": "wait_for", "event": "purchased()", "timeout": "4h", "on_event": N, "on_timeout": M}``: wait until a
  matching event of this merchant arrives (time within the wait window) or the timeout passes;
- ``{"type": "branch", "condition": "interest:outdoor", "then": N, "else": M}``: the segment language, evaluated
  for the one consumer;
- ``{"type": "send", "title": "...", "body": "...", "coupon_code": "", "discount_percent": null,
  "products": 3}``: the campaigns' placeholders plus ``{carted_product}`` (the triggering event's product);
  with ``"variants": [{"title": …, "body": …, "coupon_code": …, "discount_percent": …, "weight": 50}, …]`` (2 to
  5) an A/B/n test: each consumer gets one variant (campaigns.assignment, keyed by journey, step and consumer); a
  variant's missing fields are the step's, weights are percentages summing to 100 (none given: equal shares);
- ``{"type": "exit"}``.

Targets (``on_event``, ``on_timeout``, ``then``, ``else``, ``next``) are a later step's index or "exit"; without one
a step goes on to the next in the list, and past the last step the journey completes. Jumps go forward only, so a
consumer visits a step at most once (what makes "one run per enrolment and step" a unique constraint).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from campaigns.assignment import variant_pick
from campaigns.messages import template_problems
from campaigns.models import MAX_VARIANTS, VARIANT_LETTERS
from merchants.errors import Invalid
from merchants.models import Merchant
from segments.evaluation import definition_resolve
from segments.language import ActionTerm, Node, SegmentSyntaxError, parse

MAX_STEPS = 50
EXIT = "exit"
STEP_TYPES = ("wait", "wait_for", "branch", "send", "exit")
CARTED_PRODUCT = "{carted_product}"
_DURATION = re.compile(r"^\s*(\d{1,5})\s*(m|h|d)\s*$")
_UNITS = {"m": 60, "h": 3600, "d": 86400}
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
MAX_DURATION = timedelta(days=90)
# The arguments a single event (a trigger, a wait's event, the exit) is matched by: engine.action_events filters the
# merchant's events by type, category and brand only, so the builder offers no others for those fields.
EVENT_ARGUMENTS = ("category", "brand")


def parse_duration(value: Any, *, where: str) -> timedelta:
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise Invalid(
            f"{where}: a duration is a number and a unit, e.g. 30m, 2h or 3d (found {value!r})",
            details={"field": where},
        )
    duration = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if duration <= timedelta(0) or duration > MAX_DURATION:
        raise Invalid(f"{where}: a duration is between 1m and 90d (found {value!r})", details={"field": where})
    return duration


def parse_time_of_day(value: Any, *, where: str) -> time:
    match = _TIME.match(value) if isinstance(value, str) else None
    if match is None:
        raise Invalid(f"{where}: a time of day is HH:MM, e.g. 09:00 (found {value!r})", details={"field": where})
    return time(int(match.group(1)), int(match.group(2)))


def action_parse(text: Any, *, where: str, checked: bool = False) -> ActionTerm:
    """One action of the segment language (carted(category="outdoor")), for triggers, waits and exits.

    checked: refuse arguments a single event is not matched by (EVENT_ARGUMENTS are); what a journey stores is
    parsed checked, so a trigger never silently matches more than its text says."""
    try:
        node = parse(text)
    except SegmentSyntaxError as exc:
        raise Invalid(
            f"{where}: {exc}", code="invalid_expression", details={"field": where, **exc.as_details()}
        ) from None
    if not isinstance(node, ActionTerm):
        raise Invalid(
            f'{where}: expected one action such as carted(category="outdoor") or purchased(), found {text!r}',
            code="invalid_expression",
            details={"field": where},
        )
    if node.within is not None or node.min_count != 1:
        raise Invalid(
            f"{where}: within= and min_count= do not apply to a single event (use a wait's timeout instead)",
            code="invalid_expression",
            details={"field": where},
        )
    unmatched = [name for name, _ in node.arg_pos if name not in EVENT_ARGUMENTS]
    if checked and unmatched:
        name = unmatched[0]
        raise Invalid(
            f"{where}: a single event is matched by {' and '.join(EVENT_ARGUMENTS)} only; {name}= does not apply "
            f"(at position {node.position_of(name)} of {text!r})",
            code="invalid_expression",
            details={"field": where, "argument": name, "position": node.position_of(name)},
        )
    return node


def condition_parse(text: Any, *, merchant: Merchant, where: str) -> Node:
    try:
        node = parse(text)
        definition_resolve(node, merchant=merchant, text=text)
    except SegmentSyntaxError as exc:
        raise Invalid(
            f"{where}: {exc}", code="invalid_expression", details={"field": where, **exc.as_details()}
        ) from None
    return node


@dataclass(frozen=True)
class StepView:
    """A step as the portal shows it: its number, kind, a one-line summary and where it goes."""

    index: int
    type: str
    summary: str
    condition: str = ""


def _target(step: dict, key: str, index: int, count: int, where: str) -> None:
    if key not in step or step[key] is None:
        return
    value = step[key]
    if value == EXIT:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not (index < value < count):
        raise Invalid(
            f'{where}.{key}: a target is a later step\'s index (after {index}, before {count}) or "exit", '
            f"found {value!r}",
            details={"field": f"{where}.{key}"},
        )


def steps_validate(steps: Any, *, merchant: Merchant) -> list[dict]:
    """Check a definition; return it normalised. Every error names the step (steps[2].timeout)."""
    if not isinstance(steps, list) or not steps:
        raise Invalid("steps: a journey needs a non-empty list of steps", details={"field": "steps"})
    if len(steps) > MAX_STEPS:
        raise Invalid(f"steps: at most {MAX_STEPS} steps", details={"field": "steps"})
    count = len(steps)
    out: list[dict] = []
    for index, step in enumerate(steps):
        where = f"steps[{index}]"
        if not isinstance(step, dict):
            raise Invalid(f"{where}: a step is an object with a type", details={"field": where})
        kind = step.get("type")
        if kind not in STEP_TYPES:
            raise Invalid(
                f"{where}.type: one of {', '.join(STEP_TYPES)} (found {kind!r})", details={"field": f"{where}.type"}
            )
        _target(step, "next", index, count, where)
        if kind == "wait":
            if ("duration" in step) == ("until" in step):
                raise Invalid(f"{where}: a wait has either a duration or an until time", details={"field": where})
            if "duration" in step:
                parse_duration(step["duration"], where=f"{where}.duration")
            else:
                parse_time_of_day(step["until"], where=f"{where}.until")
        elif kind == "wait_for":
            action_parse(step.get("event"), where=f"{where}.event", checked=True)
            parse_duration(step.get("timeout"), where=f"{where}.timeout")
            _target(step, "on_event", index, count, where)
            _target(step, "on_timeout", index, count, where)
        elif kind == "branch":
            condition_parse(step.get("condition"), merchant=merchant, where=f"{where}.condition")
            _target(step, "then", index, count, where)
            _target(step, "else", index, count, where)
        elif kind == "send":
            step = send_step_normalise(step, where)
        out.append(dict(step))
    return out


def send_discount(step: dict) -> Decimal | None:
    raw = step.get("discount_percent")
    return None if raw in (None, "") else Decimal(str(raw))


MESSAGE_FIELDS = ("title", "body", "coupon_code", "discount_percent")
VARIANT_FIELDS = (*MESSAGE_FIELDS, "weight")


def message_has_offer(step: dict, variant: int | None) -> bool:
    """Whether the message a send step sends as `variant` (None: the step's own) carries an offer: a coupon or a
    discount, the step's or the variant's. Consent to offers is asked for such a message, when written and when
    dispatched."""
    message = send_variants(step)[(variant or 1) - 1]
    return bool(message.get("coupon_code")) or send_discount(message) is not None


def send_variants(step: dict) -> list[dict]:
    """The messages of a send step, one per variant (position 1, 2, …): a variant's own fields over the step's.
    A step without variants has one message, the step's own."""
    base = {key: step[key] for key in MESSAGE_FIELDS if key in step}
    variants = step.get("variants") or []
    if not variants:
        return [base]
    return [{**base, **{k: v for k, v in variant.items() if k in VARIANT_FIELDS}} for variant in variants]


def variant_key(journey_id: int, step_index: int) -> int:
    """The assignment's key for one send step of one journey: a 64-bit number hashed from both, so a journey's
    test does not line up with a campaign's (whose key is its id) nor with another step's."""
    digest = hashlib.sha256(f"journey-variant:{journey_id}:{step_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def send_variant(
    step: dict, *, journey_id: int, step_index: int, consumer_id: int, winner: int | None = None
) -> int | None:
    """The variant (1-based position) this consumer gets at this step, or None for a step without variants.
    Deterministic in (journey, step, consumer) only, so a step re-run after a crash picks the same one; once the
    step has a winner (auto_winner), everyone gets it."""
    variants = step.get("variants") or []
    if not variants:
        return None
    if winner is not None and 1 <= winner <= len(variants):
        return winner
    return variant_pick(variant_key(journey_id, step_index), consumer_id, [v["weight"] for v in variants])


def variant_letter(position: int) -> str:
    return VARIANT_LETTERS[position - 1]


def _variants_validate(step: dict, where: str) -> list[dict] | None:
    """Check and normalise a step's variants (weights filled in); None when it has none."""
    variants = step.get("variants")
    if variants is None or variants == []:
        return None
    if not isinstance(variants, list) or not 2 <= len(variants) <= MAX_VARIANTS:
        raise Invalid(
            f"{where}.variants: a list of 2 to {MAX_VARIANTS} message variants (found "
            f"{len(variants) if isinstance(variants, list) else repr(variants)})",
            details={"field": f"{where}.variants"},
        )
    out = []
    for position, variant in enumerate(variants):
        at = f"{where}.variants[{position}]"
        if not isinstance(variant, dict):
            raise Invalid(f"{at}: a variant is an object with a title, a body and a weight", details={"field": at})
        unknown = sorted(set(variant) - set(VARIANT_FIELDS))
        if unknown:
            raise Invalid(
                f"{at}.{unknown[0]}: not a field of a variant ({', '.join(VARIANT_FIELDS)})",
                details={"field": f"{at}.{unknown[0]}"},
            )
        out.append(dict(variant))
    given = [v.get("weight") is not None for v in out]
    if any(given) and not all(given):
        raise Invalid(
            f"{where}.variants: give every variant a weight, or none (equal shares)",
            details={"field": f"{where}.variants"},
        )
    if not any(given):
        share, extra = divmod(100, len(out))
        for position, variant in enumerate(out):
            variant["weight"] = share + (1 if position < extra else 0)
    for position, variant in enumerate(out):
        weight = variant["weight"]
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 99:
            raise Invalid(
                f"{where}.variants[{position}].weight: a whole percentage from 1 to 99 (found {weight!r})",
                details={"field": f"{where}.variants[{position}].weight"},
            )
    total = sum(v["weight"] for v in out)
    if total != 100:
        raise Invalid(
            f"{where}.variants: the weights are percentages that sum to 100 (they sum to {total})",
            details={"field": f"{where}.variants"},
        )
    return out


def send_step_normalise(step: dict, where: str) -> dict:
    """Check a send step (and each of its variants); return it with the variants' weights filled in."""
    step = dict(step)
    products = _products_validate(step, where)
    variants = _variants_validate(step, where)
    if variants is None:
        step.pop("variants", None)
        _message_validate(step, products=products, where=where)
    else:
        step["variants"] = variants
        for position, message in enumerate(send_variants(step)):
            _message_validate(message, products=products, where=f"{where}.variants[{position}]")
    auto = step.get("auto_winner", False)
    if not isinstance(auto, bool):
        raise Invalid(f"{where}.auto_winner: true or false", details={"field": f"{where}.auto_winner"})
    if auto and variants is None:
        raise Invalid(f"{where}.auto_winner: needs two or more variants", details={"field": f"{where}.auto_winner"})
    return step


def _products_validate(step: dict, where: str) -> int:
    products = step.get("products", 3)
    if isinstance(products, bool) or not isinstance(products, int) or not 0 <= products <= 10:
        raise Invalid(f"{where}.products: a number from 0 to 10", details={"field": f"{where}.products"})
    return products


def _message_validate(message: dict, *, products: int, where: str) -> None:
    """One message of a send step (the step's own, or one variant over it): coupon, discount, title and body."""
    coupon = message.get("coupon_code", "")
    if not isinstance(coupon, str) or len(coupon) > 64:
        raise Invalid(f"{where}.coupon_code: text of at most 64 characters", details={"field": f"{where}.coupon_code"})
    try:
        discount = send_discount(message)
    except (InvalidOperation, ValueError):
        raise Invalid(f"{where}.discount_percent: a number", details={"field": f"{where}.discount_percent"}) from None
    if discount is not None and not Decimal("0") < discount <= Decimal("100"):
        raise Invalid(
            f"{where}.discount_percent: more than 0 and at most 100", details={"field": f"{where}.discount_percent"}
        )
    for key in ("title", "body"):
        text = message.get(key)
        if not isinstance(text, str) or not text.strip():
            raise Invalid(f"{where}.{key}: the message needs a {key}", details={"field": f"{where}.{key}"})
        problems = template_problems(
            text.replace(CARTED_PRODUCT, ""),
            personalised_products=products,
            coupon_code=coupon,
            discount_percent=discount,
        )
        if problems:
            raise Invalid(f"{where}.{key}: {problems[0]}", details={"field": f"{where}.{key}", "problems": problems})


def step_views(steps: list[dict]) -> list[StepView]:
    views = []
    for index, step in enumerate(steps):
        kind = step["type"]
        if kind == "wait":
            summary = f"Wait {step['duration']}" if "duration" in step else f"Wait until {step['until']} local time"
            views.append(StepView(index, kind, summary))
        elif kind == "wait_for":
            summary = f"Wait up to {step['timeout']} for the event"
            views.append(StepView(index, kind, summary, step["event"]))
        elif kind == "branch":
            views.append(StepView(index, kind, "Branch on a condition", step["condition"]))
        elif kind == "send":
            messages = send_variants(step)
            summary = f"Send: {messages[0]['title']}"
            if len(messages) > 1:
                summary += f" (A/B test of {len(messages)} variants)"
            views.append(StepView(index, kind, summary))
        else:
            views.append(StepView(index, kind, "Exit"))
    return views
