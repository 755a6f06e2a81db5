"""Writes on journeys: create, edit (a new version when the steps change), activate, pause, delete."""

from __future__ import annotations

import logging
from datetime import datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from campaigns.models import Channel
from campaigns.webhook import channel_problem
from consumers.models import Event
from merchants.errors import Conflict, Invalid, NotFound
from merchants.models import Merchant
from merchants.quiet_hours import quiet_window_problems
from privacy.audit import audit_record
from segments.models import MembershipTransition, Segment

from .definition import action_parse, steps_validate
from .models import Journey, JourneyStatus, JourneyVersion, ReentryPolicy, TriggerKind

logger = logging.getLogger("dmp.journeys")

FIELDS = (
    "name",
    "trigger_kind",
    "trigger_segment_id",
    "trigger_event",
    "exit_condition",
    "holdout_share",
    "reentry",
    "reentry_days",
    "quiet_start",
    "quiet_end",
    "frequency_cap",
    "frequency_window_days",
    "attribution_window_days",
    "channel",
)


def _clean(*, merchant: Merchant, values: dict[str, Any]) -> dict[str, Any]:
    """Check the journey's own fields (not its steps); errors name the field."""
    name = values.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise Invalid("name: a name of 1 to 200 characters", details={"field": "name"})
    kind = values.get("trigger_kind")
    if kind not in TriggerKind.values:
        raise Invalid(f"trigger_kind: one of {', '.join(TriggerKind.values)}", details={"field": "trigger_kind"})
    if kind == TriggerKind.SEGMENT_ENTERED:
        segment_id = values.get("trigger_segment_id")
        if not isinstance(segment_id, int) or not Segment.objects.filter(pk=segment_id, merchant=merchant).exists():
            raise NotFound(
                f"trigger_segment_id: segment {segment_id} not found", details={"field": "trigger_segment_id"}
            )
        values["trigger_event"] = ""
    else:
        action_parse(values.get("trigger_event"), where="trigger_event", checked=True)
        values["trigger_segment_id"] = None
    if values.get("exit_condition"):
        action_parse(values["exit_condition"], where="exit_condition", checked=True)
    else:
        values["exit_condition"] = ""
    try:
        share = Decimal(str(values.get("holdout_share", "0.1")))
    except (InvalidOperation, ValueError):
        raise Invalid("holdout_share: a number from 0 to 0.5", details={"field": "holdout_share"}) from None
    if not Decimal(0) <= share <= Decimal("0.5"):
        raise Invalid("holdout_share: a number from 0 to 0.5", details={"field": "holdout_share"})
    values["holdout_share"] = share.quantize(Decimal("0.001"))
    reentry = values.get("reentry", ReentryPolicy.NEVER)
    if reentry not in ReentryPolicy.values:
        raise Invalid(f"reentry: one of {', '.join(ReentryPolicy.values)}", details={"field": "reentry"})
    days = values.get("reentry_days")
    if reentry == ReentryPolicy.AFTER_DAYS:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
            raise Invalid("reentry_days: a number of days from 1 to 3650", details={"field": "reentry_days"})
    else:
        values["reentry_days"] = None
    quiet_start, quiet_end = values.get("quiet_start"), values.get("quiet_end")
    if any(q is not None and not isinstance(q, time) for q in (quiet_start, quiet_end)):
        raise Invalid("quiet_start and quiet_end: times of day", details={"field": "quiet_start"})
    # The merchants' rule for a window (both or neither, not the same time), as for a merchant's own quiet hours.
    problem = quiet_window_problems(start=quiet_start, end=quiet_end)
    if problem:
        field = "quiet_end" if quiet_start is not None else "quiet_start"
        raise Invalid(f"{field}: {problem}", details={"field": field})
    cap = values.get("frequency_cap")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise Invalid("frequency_cap: a positive number, or none", details={"field": "frequency_cap"})
    for key, default in (("frequency_window_days", 7), ("attribution_window_days", 7)):
        value = values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 365:
            raise Invalid(f"{key}: a number of days from 1 to 365", details={"field": key})
        values[key] = value
    channel = values.get("channel") or Channel.INBOX
    if channel not in Channel.values:
        raise Invalid(f"channel: one of {', '.join(Channel.values)}", details={"field": "channel"})
    refused = channel_problem(channel)
    if refused:
        raise Invalid(f"channel: {refused}", details={"field": "channel"})
    values["channel"] = channel
    return {key: values.get(key) for key in FIELDS if key in values or key in ("trigger_segment_id",)}


def _version_add(journey: Journey, steps: list[dict]) -> JourneyVersion:
    number = (JourneyVersion.objects.filter(journey=journey).aggregate(n=Max("number"))["n"] or 0) + 1
    version = JourneyVersion.objects.create(journey=journey, number=number, steps=steps)
    journey.current_version = version
    journey.save(update_fields=["current_version", "updated_at"])
    return version


def journey_create(*, merchant: Merchant, actor: str, steps: Any, **values: Any) -> Journey:
    fields = _clean(merchant=merchant, values=dict(values))
    normalised = steps_validate(steps, merchant=merchant)
    with transaction.atomic():
        journey = Journey.objects.create(merchant=merchant, **fields)
        _version_add(journey, normalised)
    logger.info("journey.created", extra={"fields": {"journey_id": journey.pk, "merchant_id": merchant.pk}})
    return journey


def journey_update(
    *,
    journey: Journey,
    actor: str,
    steps: Any = None,
    expected_updated_at: datetime | None = None,
    **changes: Any,
) -> Journey:
    """Change fields and, when `steps` differ, add a version: new entrants take it, consumers in flight finish on
    the version they entered with. The trigger of an active journey cannot change (pause it first).

    `expected_updated_at` is the journey's `updated_at` as the editor read it: when the journey has been saved since
    (another edit, in another tab or by a colleague; an activation or a pause), the edit is refused and nothing is
    written, instead of silently putting back what the other edit changed. `updated_at` moves on every save of the
    journey, whatever it changes, so it also catches an edit of the settings alone (which adds no version)."""
    with transaction.atomic():
        journey = Journey.objects.select_for_update().get(pk=journey.pk)
        if expected_updated_at is not None and journey.updated_at != expected_updated_at:
            raise Conflict(
                "This journey was changed after you opened it (by someone else, or in another window); nothing was "
                "saved. Reload it to see the change, then make yours again.",
                code="edit_conflict",
                details={
                    "updated_at": journey.updated_at.isoformat(),
                    "version": journey.current_version.number if journey.current_version else None,
                },
            )
        current = {key: getattr(journey, key) for key in FIELDS}
        trigger_changed = any(
            key in changes and changes[key] != current[key]
            for key in ("trigger_kind", "trigger_segment_id", "trigger_event")
        )
        if trigger_changed and journey.status == JourneyStatus.ACTIVE:
            raise Conflict(
                "The trigger of an active journey cannot change: pause it first.",
                code="invalid_transition",
                details={"status": journey.status},
            )
        fields = _clean(merchant=journey.merchant, values={**current, **changes})
        for key, value in fields.items():
            setattr(journey, key, value)
        journey.save()
        if steps is not None:
            normalised = steps_validate(steps, merchant=journey.merchant)
            if journey.current_version is None or journey.current_version.steps != normalised:
                _version_add(journey, normalised)
    return journey


def journey_delete(*, journey: Journey, actor: str) -> None:
    if journey.status != JourneyStatus.DRAFT:
        raise Conflict(
            f"Only draft journeys can be deleted; this one is {journey.status}. Pause it instead.",
            code="invalid_transition",
            details={"status": journey.status},
        )
    journey.delete()


def journey_activate(*, journey: Journey, actor: str) -> Journey:
    """Start (or resume) a journey. A first activation reads triggers from now on: events and transitions already
    recorded are not replayed. A resume keeps the cursors, so what arrived while paused is read."""
    with transaction.atomic():
        journey = Journey.objects.select_for_update().get(pk=journey.pk)
        if journey.status == JourneyStatus.ACTIVE:
            raise Conflict("The journey is already active.", code="invalid_transition", details={"status": "active"})
        now = timezone.now()
        if journey.activated_at is None:
            journey.event_cursor = Event.objects.aggregate(n=Max("id"))["n"] or 0
            journey.transition_cursor = MembershipTransition.objects.aggregate(n=Max("id"))["n"] or 0
            journey.activated_at = now
        journey.status = JourneyStatus.ACTIVE
        journey.last_error = ""
        journey.save()
        audit_record(
            actor=actor,
            action="journey.activated",
            merchant_id=journey.merchant_id,
            object_type="journey",
            object_id=journey.pk,
            details={"version": journey.current_version.number if journey.current_version else None},
        )
    return journey


def journey_pause(*, journey: Journey, actor: str) -> Journey:
    """Stop entering and stepping: due steps wait (they are not dropped) until the journey is resumed."""
    with transaction.atomic():
        journey = Journey.objects.select_for_update().get(pk=journey.pk)
        if journey.status != JourneyStatus.ACTIVE:
            raise Conflict(
                f"Only an active journey can be paused; this one is {journey.status}.",
                code="invalid_transition",
                details={"status": journey.status},
            )
        journey.status = JourneyStatus.PAUSED
        journey.save(update_fields=["status", "updated_at"])
        audit_record(
            actor=actor,
            action="journey.paused",
            merchant_id=journey.merchant_id,
            object_type="journey",
            object_id=journey.pk,
        )
    return journey
