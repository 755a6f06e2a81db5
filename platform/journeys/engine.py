"""The journey engine: triggers in, due steps claimed in bounded batches, each step run once (docs/journeys.md).

- `triggers_ingest` reads a journey's new trigger rows by id cursor (events of the merchant that match the trigger
  action, or `entered` membership transitions of the trigger segment) and enrols consumers, cursor and enrolments
  in one transaction.
- `due_claim` selects due enrolments (FOR UPDATE SKIP LOCKED on PostgreSQL) and leases them for
  JOURNEY_STEP_LEASE_S by moving next_run_at forward, so a step a killed worker never finished is claimed again.
- `enrolments_step` runs the steps of a batch, each enrolment in its own transaction: lock the row, check it is still
  at the step it was claimed at, run instant steps (branch, send, exit) until a wait blocks, and write the step runs,
  the message and the new position together. The unique (enrolment, step) constraints make a replay write nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, Q, QuerySet
from django.utils import timezone

from campaigns.audience import cap_counter_register, frequency_capped_consumers
from campaigns.deliveries import Catalogue
from campaigns.messages import CompiledTemplate, campaign_constants
from campaigns.models import Channel
from consumers.models import Event, Product
from dbtools.backend import on_postgresql
from merchants.quiet_hours import QuietHours
from merchants.quiet_hours import quiet_until as quiet_hours_until
from privacy.audit import audit_record
from privacy.messaging import may_message, messageable_consumer_ids
from privacy.services import ProcessingBasis, ProcessingNotPermitted, processing_basis_require
from recommend.services import recommend_for_consumers
from segments.evaluation import ACTION_EVENT_TYPES, definition_resolve, sql_queryset
from segments.language import ActionTerm, parse
from segments.models import MembershipTransition, TransitionKind
from segments.targeting import product_condition

from .definition import (
    CARTED_PRODUCT,
    EXIT,
    action_parse,
    message_has_offer,
    parse_duration,
    parse_time_of_day,
    send_discount,
    send_variant,
    send_variants,
)
from .models import (
    COUNTED_BY_CAPS,
    EnrolmentState,
    Journey,
    JourneyEnrolment,
    JourneySend,
    JourneyStatus,
    JourneyStepRun,
    JourneyStepWinner,
    JourneyVersion,
    ReentryPolicy,
    SendStatus,
    StepOutcome,
    TriggerKind,
)

logger = logging.getLogger("dmp.journeys")
ACTOR = "system:journeys"
MAX_STEPS_PER_RUN = 60  # more than a definition can hold: a run always ends at a wait or the end
MAX_PRODUCTS = 10  # the most products a send step may show (journeys.definition)


# ------------------------------------------------------------------------------------------------ helpers


def holdout(journey_id: int, consumer_id: int, share: float) -> bool:
    """Deterministic, keyed: HMAC-SHA256(SECRET_KEY, "journey-holdout:<journey>:<consumer>") as a fraction < share.
    The same consumer is held out of the same journey on every entry; nobody without the key can predict it."""
    if share <= 0:
        return False
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"journey-holdout:{journey_id}:{consumer_id}".encode(), hashlib.sha256
    ).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def local_zone() -> ZoneInfo:
    return ZoneInfo(settings.JOURNEY_TIME_ZONE or "UTC")


def platform_quiet_hours() -> QuietHours | None:
    """The platform's JOURNEY_QUIET_HOURS ("21:00-08:00"; empty: none) in JOURNEY_TIME_ZONE. Every send step asks:
    the window is parsed once per process for each text of the two settings (a changed setting is read anew)."""
    return _platform_quiet_hours(settings.JOURNEY_QUIET_HOURS or "", settings.JOURNEY_TIME_ZONE or "UTC")


@lru_cache(maxsize=8)
def _platform_quiet_hours(raw: str, zone: str) -> QuietHours | None:
    raw = raw.strip()
    if not raw:
        return None
    start, end = raw.split("-")
    return QuietHours(  # frozen: one instance is safely shared by every caller
        parse_time_of_day(start.strip(), where="JOURNEY_QUIET_HOURS"),
        parse_time_of_day(end.strip(), where="JOURNEY_QUIET_HOURS"),
        ZoneInfo(zone),
    )


def quiet_hours(journey: Journey) -> list[QuietHours | None]:
    """Every quiet window a journey's message must respect: the platform's, the merchant's (in its own time zone)
    and the journey's own (in JOURNEY_TIME_ZONE). Each adds to the others; none replaces another."""
    own = None
    if journey.quiet_start is not None and journey.quiet_end is not None:
        own = QuietHours(journey.quiet_start, journey.quiet_end, local_zone())
    return [platform_quiet_hours(), journey.merchant.quiet_hours, own]


def quiet_until(journey: Journey, now: datetime) -> datetime | None:
    """When a send due at `now` may go (the end of the combined quiet period), or None outside every window."""
    return quiet_hours_until(quiet_hours(journey), now)


def next_local_time(after: datetime, at: time) -> datetime:
    local = after.astimezone(local_zone())
    candidate = local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate += timedelta(days=1)
    return candidate.astimezone(UTC)


def action_events(term: ActionTerm, *, merchant_id: int) -> QuerySet[Event]:
    """Events of this merchant that match one action (type, category, brand)."""
    events = Event.objects.filter(merchant_id=merchant_id, event_type=ACTION_EVENT_TYPES[term.action])
    if term.category is not None or term.brand is not None:
        events = events.filter(product_condition(category=term.category, brand=term.brand, prefix="product__"))
    return events


# ------------------------------------------------------------------------------------------------ triggers


@dataclass(frozen=True)
class Entry:
    consumer_id: int
    at: datetime
    product_id: int | None = None
    ref: int | None = None  # the trigger row's id (event or membership transition)


MAX_CHECKPOINTS = 200  # a bound on Journey.trigger_checkpoints, whatever the tick rate


def _reread_floors(journey: Journey, now: datetime) -> tuple[int, int]:
    """The (event, transition) ids a tick re-reads from: where the cursors stood JOURNEY_TRIGGER_REREAD_SECONDS ago.

    On PostgreSQL an id is taken when a row is inserted, not when its transaction commits, so a row with a lower id
    can become visible after the cursor passed it. Every row committed within the window after the tick that passed
    its id lies between that floor and the cursor, and is read again; the trigger row ids stored on enrolments
    (unique per journey) keep a re-read row from enrolling anyone twice."""
    cutoff = (now - timedelta(seconds=settings.JOURNEY_TRIGGER_REREAD_SECONDS)).timestamp()
    checkpoints = journey.trigger_checkpoints or []
    floor = (journey.event_cursor, journey.transition_cursor)
    if checkpoints:
        floor = (int(checkpoints[0][1]), int(checkpoints[0][2]))  # younger than the window: from the oldest known
    for stamp, event_cursor, transition_cursor in checkpoints:
        if stamp <= cutoff:
            floor = (int(event_cursor), int(transition_cursor))
    return floor


def _checkpoints_after(journey: Journey, now: datetime) -> list[list[float | int]]:
    """The checkpoints with this tick's starting cursors added, pruned to the window (and the newest one before it,
    which is the floor)."""
    cutoff = (now - timedelta(seconds=settings.JOURNEY_TRIGGER_REREAD_SECONDS)).timestamp()
    checkpoints = [
        *(journey.trigger_checkpoints or []),
        [now.timestamp(), journey.event_cursor, journey.transition_cursor],
    ]
    older = [c for c in checkpoints if c[0] <= cutoff]
    kept = [c for c in checkpoints if c[0] > cutoff]
    return ([older[-1]] if older else []) + kept[-MAX_CHECKPOINTS:]


def _trigger_rows(journey: Journey, limit: int, now: datetime) -> tuple[list[Entry], int]:
    """The trigger rows after the journey's cursor, plus those behind it within the re-read window that enrolled
    nobody yet, and the new cursor (the last id read)."""
    event_floor, transition_floor = _reread_floors(journey, now)
    if journey.trigger_kind == TriggerKind.EVENT:
        term = action_parse(journey.trigger_event, where="trigger_event")
        upper = Event.objects.aggregate(n=Max("id"))["n"] or 0
        matching = action_events(term, merchant_id=journey.merchant_id).order_by("id")
        columns = ("id", "consumer_id", "occurred_at", "product_id")
        rows = list(matching.filter(id__gt=journey.event_cursor, id__lte=upper).values_list(*columns)[:limit])
        cursor = rows[-1][0] if len(rows) == limit else max(upper, journey.event_cursor)
        behind = list(
            matching.filter(id__gt=event_floor, id__lte=journey.event_cursor)
            .exclude(
                id__in=JourneyEnrolment.objects.filter(journey_id=journey.pk, trigger_event_id__isnull=False).values(
                    "trigger_event_id"
                )
            )
            .values_list(*columns)[:limit]
        )
        since = journey.activated_at
        # Events that happened before the journey was first activated do not enrol anyone (a late import of old
        # carts must not start today's reminders).
        entries = [Entry(c, at, p, pk) for pk, c, at, p in behind + rows if since is None or at >= since]
        return entries, cursor
    upper = MembershipTransition.objects.aggregate(n=Max("id"))["n"] or 0
    entered = MembershipTransition.objects.filter(
        segment_id=journey.trigger_segment_id or 0, kind=TransitionKind.ENTERED
    ).order_by("id")
    transition_columns = ("id", "consumer_id", "at")
    transitions = list(
        entered.filter(id__gt=journey.transition_cursor, id__lte=upper).values_list(*transition_columns)[:limit]
    )
    cursor = transitions[-1][0] if len(transitions) == limit else max(upper, journey.transition_cursor)
    behind = list(
        entered.filter(id__gt=transition_floor, id__lte=journey.transition_cursor)
        .exclude(
            id__in=JourneyEnrolment.objects.filter(journey_id=journey.pk, trigger_transition_id__isnull=False).values(
                "trigger_transition_id"
            )
        )
        .values_list(*transition_columns)[:limit]
    )
    return [Entry(c, at, ref=pk) for pk, c, at in behind + transitions], cursor


@dataclass(frozen=True)
class Previous:
    """A consumer's earlier entries into a journey: how many, when the last began and when the last one ended."""

    entries: int
    last_entered: datetime
    last_finished: datetime | None
    active: bool


def _reentry_admits(journey: Journey, previous: Previous, row: Entry) -> bool:
    """Whether a trigger row starts a new entry for a consumer who entered before: one rule for the rows read for the
    first time and those re-read behind the cursor, judged by when the row happened, so the answer does not depend
    on when it is read. Never while an entry is active; with `never`, never again; with `after_days` N, a row that
    happened N days after the last entry began and after every entry had ended. A row that happened while the
    consumer was in the journey was skipped when first read (an active entry), and stays skipped when it is read
    again after that entry ended."""
    if previous.active or journey.reentry == ReentryPolicy.NEVER:
        return False
    if previous.last_finished is not None and row.at < previous.last_finished:
        return False
    return row.at >= previous.last_entered + timedelta(days=journey.reentry_days or 0)


def triggers_ingest(*, journey_id: int, now: datetime | None = None, limit: int = 10_000) -> dict[str, int]:
    """Enrol the consumers of the journey's next trigger rows (bounded by `limit`); returns counts."""
    now = now or timezone.now()
    counts = {"read": 0, "enrolled": 0, "held_out": 0, "skipped": 0}
    with transaction.atomic():
        journey = (
            Journey.objects.select_for_update(of=("self",))
            .select_related("current_version")
            .filter(pk=journey_id, status=JourneyStatus.ACTIVE)
            .first()
        )
        if journey is None or journey.current_version is None:
            return counts
        entries, cursor = _trigger_rows(journey, limit, now)
        counts["read"] = len(entries)
        by_consumer: dict[int, list[Entry]] = {}
        for row in entries:  # in row id order
            by_consumer.setdefault(row.consumer_id, []).append(row)
        previous: dict[int, Previous] = {}
        if by_consumer:
            for cid, n, last, finished, active in (
                JourneyEnrolment.objects.filter(journey_id=journey.pk, consumer_id__in=list(by_consumer))
                .values("consumer_id")
                .annotate(
                    n=Max("entry_no"),
                    last=Max("entered_at"),
                    finished=Max("finished_at"),
                    active=Count("id", filter=Q(state=EnrolmentState.ACTIVE)),
                )
                .values_list("consumer_id", "n", "last", "finished", "active")
            ):
                previous[cid] = Previous(n, last, finished, bool(active))
        share = float(journey.holdout_share)
        new = []
        for cid, candidates in by_consumer.items():
            entry_no = 1
            entry = candidates[0]
            if cid in previous:
                # The first row the re-entry policy admits (a re-read row behind the cursor may be too early while
                # a newer one is not).
                eligible = [c for c in candidates if _reentry_admits(journey, previous[cid], c)]
                if not eligible:
                    counts["skipped"] += 1
                    continue
                entry = eligible[0]
                entry_no = previous[cid].entries + 1
            held = holdout(journey.pk, cid, share)
            counts["held_out" if held else "enrolled"] += 1
            new.append(
                JourneyEnrolment(
                    journey_id=journey.pk,
                    version_id=journey.current_version.pk,
                    consumer_id=cid,
                    entry_no=entry_no,
                    state=EnrolmentState.HELD_OUT if held else EnrolmentState.ACTIVE,
                    step=0,
                    next_run_at=None if held else now,
                    entered_at=now,
                    step_started_at=now,
                    trigger_product_id=entry.product_id,
                    trigger_event_id=entry.ref if journey.trigger_kind == TriggerKind.EVENT else None,
                    trigger_transition_id=entry.ref if journey.trigger_kind == TriggerKind.SEGMENT_ENTERED else None,
                    finished_at=now if held else None,
                )
            )
        JourneyEnrolment.objects.bulk_create(new, ignore_conflicts=True, batch_size=2000)
        Journey.objects.filter(pk=journey.pk).update(
            event_cursor=cursor if journey.trigger_kind == TriggerKind.EVENT else F("event_cursor"),
            transition_cursor=cursor if journey.trigger_kind == TriggerKind.SEGMENT_ENTERED else F("transition_cursor"),
            trigger_checkpoints=_checkpoints_after(journey, now),
        )
        if new:
            audit_record(
                actor=ACTOR,
                action="journey.enrolled",
                merchant_id=journey.merchant_id,
                object_type="journey",
                object_id=journey.pk,
                counts={"enrolled": counts["enrolled"], "held_out": counts["held_out"]},
                details={"version": journey.current_version.number},
            )
    return counts


# ------------------------------------------------------------------------------------------------ claiming


def due_claim(*, now: datetime | None = None, limit: int) -> list[tuple[int, int]]:
    """Claim up to `limit` due enrolments of active journeys: (id, step) pairs, leased for JOURNEY_STEP_LEASE_S."""
    now = now or timezone.now()
    with transaction.atomic():
        due = JourneyEnrolment.objects.filter(
            state=EnrolmentState.ACTIVE, next_run_at__lte=now, journey__status=JourneyStatus.ACTIVE
        ).order_by("next_run_at")
        if on_postgresql():
            due = due.select_for_update(skip_locked=True, of=("self",))
        rows = list(due.values_list("id", "step")[:limit])
        if rows:
            JourneyEnrolment.objects.filter(pk__in=[pk for pk, _ in rows]).update(
                next_run_at=now + timedelta(seconds=settings.JOURNEY_STEP_LEASE_S), attempts=F("attempts") + 1
            )
    return rows


# ------------------------------------------------------------------------------------------------ running steps


@dataclass
class BatchContext:
    """What one batch loads once: versions, journeys, the direct-marketing basis, tallies for the audit entry."""

    now: datetime
    basis: ProcessingBasis | None = None
    basis_error: str = ""
    journeys: dict[int, Journey] = field(default_factory=dict)
    versions: dict[int, list[dict]] = field(default_factory=dict)
    tallies: dict[int, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    # Read once per batch, inside its transaction: who the messaging rule allows (with and without an offer) and
    # who is capped per journey, for the batch's consumers.
    messageable: dict[bool, set[int]] = field(default_factory=dict)
    capped: dict[int, set[int]] = field(default_factory=dict)
    batch_consumers: dict[int, list[int]] = field(default_factory=dict)  # journey id -> consumer ids
    sent_now: set[int] = field(default_factory=set)  # consumers messaged in this batch (uncommitted)
    step_runs: list[JourneyStepRun] = field(default_factory=list)
    sends: list[JourneySend] = field(default_factory=list)

    recommended: dict[int, dict[int, list[int]]] = field(default_factory=dict)  # journey id -> consumer -> products
    catalogues: dict[int, Catalogue] = field(default_factory=dict)
    winners: dict[int, dict[tuple[int, int], int]] = field(default_factory=dict)  # journey -> (version, step) -> v

    def winner(self, journey_id: int, version_id: int, step: int) -> int | None:
        """The variant an auto_winner send step settled on (JourneyStepWinner), read once per journey and batch."""
        if journey_id not in self.winners:
            self.winners[journey_id] = {
                (version, index): variant
                for version, index, variant in JourneyStepWinner.objects.filter(journey_id=journey_id).values_list(
                    "version_id", "step", "variant"
                )
            }
        return self.winners[journey_id].get((version_id, step))

    def recommendations(self, journey: Journey, consumer_id: int) -> list[int]:
        """The consumer's recommended products, asked once per batch for all the journey's consumers in it (the
        recommender's per-call work pays off over many consumers, as in campaigns)."""
        if journey.pk not in self.recommended:
            try:
                self.recommended[journey.pk] = recommend_for_consumers(
                    merchant_id=journey.merchant_id,
                    consumer_ids=self.batch_consumers.get(journey.pk, [consumer_id]),
                    n=MAX_PRODUCTS + 1,
                    exclude_purchased=True,
                )
            except ProcessingNotPermitted:
                self.recommended[journey.pk] = {}  # no approved recommendation activity: messages go without products
        return self.recommended[journey.pk].get(consumer_id, [])

    def catalogue(self, merchant_id: int) -> Catalogue:
        return self.catalogues.setdefault(merchant_id, Catalogue(merchant_id))

    def allowed(self, consumer_id: int, *, with_offer: bool) -> bool:
        if with_offer not in self.messageable:
            ids = sorted({c for cs in self.batch_consumers.values() for c in cs})
            self.messageable[with_offer] = set(messageable_consumer_ids(with_offer=with_offer, consumer_ids=ids))
        return consumer_id in self.messageable[with_offer]

    def is_capped(self, journey: Journey, consumer_id: int) -> bool:
        if journey.pk not in self.capped:
            self.capped[journey.pk] = frequency_capped_consumers(
                merchant_id=journey.merchant_id,
                frequency_cap=journey.frequency_cap,
                frequency_window_days=journey.frequency_window_days,
                now=self.now,
                consumer_ids=self.batch_consumers.get(journey.pk, [consumer_id]),
            )
        return consumer_id in self.capped[journey.pk]

    def journey(self, journey_id: int) -> Journey:
        if journey_id not in self.journeys:
            self.journeys[journey_id] = Journey.objects.select_related("merchant").get(pk=journey_id)
        return self.journeys[journey_id]

    def steps(self, version_id: int) -> list[dict]:
        if version_id not in self.versions:
            self.versions[version_id] = JourneyVersion.objects.values_list("steps", flat=True).get(pk=version_id)
        return self.versions[version_id]


@dataclass(frozen=True)
class Move:
    """What a step decided: go to `target` (index, "exit" or "end") with an outcome, or block until `until`."""

    outcome: str | None = None
    target: int | str | None = None
    until: datetime | None = None
    exit_reason: str = ""


def _next(step: dict, index: int, key: str = "next") -> int | str:
    value = step.get(key)
    if value is None:
        value = step.get("next")
    return index + 1 if value is None else value


def _matching_event(term: ActionTerm, *, merchant_id: int, consumer_id: int, start: datetime, end: datetime | None):
    events = action_events(term, merchant_id=merchant_id).filter(consumer_id=consumer_id, occurred_at__gte=start)
    if end is not None:
        events = events.filter(occurred_at__lte=end)
    return events.order_by("occurred_at").values_list("id", flat=True).first()


def _wait(step: dict, e: JourneyEnrolment, now: datetime) -> Move:
    started = e.step_started_at or e.entered_at
    due = (
        started + parse_duration(step["duration"], where="duration")
        if "duration" in step
        else next_local_time(started, parse_time_of_day(step["until"], where="until"))
    )
    if now >= due:
        return Move(StepOutcome.DONE, _next(step, e.step))
    return Move(until=due)


def _wait_for(step: dict, e: JourneyEnrolment, journey: Journey, now: datetime) -> Move:
    started = e.step_started_at or e.entered_at
    deadline = started + parse_duration(step["timeout"], where="timeout")
    term = action_parse(step["event"], where="event")
    # Matched by event time against the wait window [start of the wait, deadline]: an event that arrives late but
    # happened in the window counts; one that happened before the wait (or before the enrolment) does not.
    if _matching_event(term, merchant_id=journey.merchant_id, consumer_id=e.consumer_id, start=started, end=deadline):
        return Move(StepOutcome.MATCHED, _next(step, e.step, "on_event"))
    if now >= deadline:
        return Move(StepOutcome.TIMED_OUT, _next(step, e.step, "on_timeout"))
    return Move(until=min(deadline, now + timedelta(seconds=settings.JOURNEY_WAIT_POLL_S)))


def _branch(step: dict, e: JourneyEnrolment, journey: Journey, now: datetime) -> Move:
    resolved = definition_resolve(parse(step["condition"]), merchant=journey.merchant, text=step["condition"])
    holds = sql_queryset(resolved, now=now).filter(pk=e.consumer_id).exists()
    if holds:
        return Move(StepOutcome.BRANCH_YES, _next(step, e.step, "then"))
    return Move(StepOutcome.BRANCH_NO, _next(step, e.step, "else"))


def _render(
    message: dict, e: JourneyEnrolment, journey: Journey, ctx: BatchContext, *, products: int
) -> tuple[str, str, list[int]]:
    """The campaigns' rendering of one message (the step's, or the consumer's variant): constants (store, offer),
    recommended products of the merchant's catalogue, and {carted_product}, the triggering event's product."""
    discount = send_discount(message)
    coupon = message.get("coupon_code", "")
    n = products
    constants = campaign_constants(store_name=journey.merchant.name, coupon_code=coupon, discount_percent=discount)
    carted = ""
    if e.trigger_product_id is not None:
        carted = (
            Product.objects.filter(pk=e.trigger_product_id, merchant_id=journey.merchant_id)
            .values_list("title", flat=True)
            .first()
            or ""
        )
    escaped = carted.replace("{", "{{").replace("}", "}}")
    title = CompiledTemplate(message["title"].replace(CARTED_PRODUCT, escaped), constants=constants)
    body = CompiledTemplate(message["body"].replace(CARTED_PRODUCT, escaped), constants=constants)
    product_ids: list[int] = []
    if n and (title.uses_products or body.uses_products):
        recommended = ctx.recommendations(journey, e.consumer_id)
        catalogue = ctx.catalogue(journey.merchant_id)
        candidates = [pid for pid in recommended if pid != e.trigger_product_id]
        catalogue.load(set(candidates))
        product_ids = [pid for pid in candidates if catalogue.products.get(pid)][:n]
        infos = [info for pid in product_ids if (info := catalogue.products[pid]) is not None]
    else:
        infos = []
    return title.render(infos)[:400], body.render(infos), product_ids


def _send(step: dict, e: JourneyEnrolment, journey: Journey, ctx: BatchContext) -> Move:
    now = ctx.now
    deferred_to = quiet_until(journey, now)
    if deferred_to is not None:
        ctx.tallies[journey.pk]["deferred_quiet_hours"] += 1
        return Move(until=deferred_to)
    if ctx.basis is None:
        ctx.tallies[journey.pk]["deferred_no_basis"] += 1
        return Move(until=now + timedelta(hours=1))
    if e.consumer_id in ctx.sent_now:
        # A second message to the same consumer in one batch waits for the next claim, after this batch commits,
        # so the caps count the first one.
        return Move(until=now)
    # The consumer's variant (deterministic: a re-run step picks the same one) decides the message and its offer.
    variant = send_variant(
        step,
        journey_id=journey.pk,
        step_index=e.step,
        consumer_id=e.consumer_id,
        winner=ctx.winner(journey.pk, e.version_id, e.step),
    )
    message = send_variants(step)[(variant or 1) - 1]
    with_offer = message_has_offer(step, variant)
    # The rule is read in SQL for the whole batch at the time it runs (as campaigns' dispatch does); a consumer it
    # refuses is asked again one by one, for the reason.
    if not ctx.allowed(e.consumer_id, with_offer=with_offer):
        decision = may_message(
            consumer_id=e.consumer_id, with_offer=with_offer, merchant_id=journey.merchant_id, at=now
        )
        if not decision:
            # Consent withdrawn, an objection, a suppression, a minor: no message now and none later.
            return Move(StepOutcome.REFUSED, EXIT, exit_reason=decision.reason)
    if ctx.is_capped(journey, e.consumer_id):
        return Move(StepOutcome.CAPPED, _next(step, e.step))
    title, body, product_ids = _render(message, e, journey, ctx, products=int(step.get("products", 3)))
    webhook = journey.channel == Channel.WEBHOOK
    ctx.sends.append(
        JourneySend(
            enrolment_id=e.pk,
            journey_id=journey.pk,
            merchant_id=journey.merchant_id,
            consumer_id=e.consumer_id,
            step=e.step,
            variant=variant,
            channel=journey.channel,
            # A webhook message is pending until the operator's service accepts it (journeys.delivery).
            status=SendStatus.PENDING if webhook else SendStatus.SENT,
            title=title,
            body=body,
            coupon_code=message.get("coupon_code", ""),
            product_ids=product_ids,
            created_at=now,
        )
    )
    ctx.sent_now.add(e.consumer_id)
    ctx.tallies[journey.pk]["sent"] += 1
    return Move(StepOutcome.DONE, _next(step, e.step))


def _exited(journey: Journey, e: JourneyEnrolment) -> bool:
    if not journey.exit_condition:
        return False
    term = action_parse(journey.exit_condition, where="exit_condition")
    # Only events since the enrolment count: an older purchase does not end a journey that started after it.
    return bool(
        _matching_event(term, merchant_id=journey.merchant_id, consumer_id=e.consumer_id, start=e.entered_at, end=None)
    )


def _finish(e: JourneyEnrolment, state: str, now: datetime, reason: str = "") -> None:
    e.state = state
    e.finished_at = now
    e.next_run_at = None
    e.exit_reason = reason


def _advance(e: JourneyEnrolment, ctx: BatchContext) -> None:
    """Run one (locked) enrolment from its step until a wait blocks or it ends; the writes go to the batch."""
    now = ctx.now
    journey = ctx.journey(e.journey_id)
    tally = ctx.tallies[journey.pk]
    if journey.status != JourneyStatus.ACTIVE:
        e.next_run_at = now  # due again as soon as the journey is resumed
        return
    steps = ctx.steps(e.version_id)
    for _ in range(MAX_STEPS_PER_RUN):
        if _exited(journey, e):
            ctx.step_runs.append(
                JourneyStepRun(
                    enrolment_id=e.pk, journey_id=journey.pk, step=e.step, outcome=StepOutcome.EXITED, at=now
                )
            )
            _finish(e, EnrolmentState.EXITED, now, "exit_condition")
            tally["exited"] += 1
            return
        if e.step >= len(steps):
            _finish(e, EnrolmentState.COMPLETED, now)
            tally["completed"] += 1
            return
        step = steps[e.step]
        kind = step["type"]
        if kind == "wait":
            move = _wait(step, e, now)
        elif kind == "wait_for":
            move = _wait_for(step, e, journey, now)
        elif kind == "branch":
            move = _branch(step, e, journey, now)
        elif kind == "send":
            move = _send(step, e, journey, ctx)
        else:
            move = Move(StepOutcome.DONE, EXIT, exit_reason="exit_step")
        if move.until is not None:
            e.next_run_at = move.until
            return
        ctx.step_runs.append(
            JourneyStepRun(
                enrolment_id=e.pk, journey_id=journey.pk, step=e.step, outcome=move.outcome or StepOutcome.DONE, at=now
            )
        )
        tally["steps"] += 1
        if move.target == EXIT:
            _finish(e, EnrolmentState.EXITED, now, move.exit_reason or f"step_{e.step}_{move.outcome}")
            tally["exited"] += 1
            return
        e.step = int(move.target)  # type: ignore[arg-type]
        e.step_started_at = now
        e.attempts = 0


def _webhook_enqueue(journey_ids: list[int]) -> None:
    """After the batch commits: hand its webhook messages to the dispatch task (the tick sweeps any left)."""
    from .tasks import journey_webhook_task  # the tasks module imports this one

    for journey_id in journey_ids:
        journey_webhook_task.delay(journey_id)


ENROLMENT_FIELDS = ["state", "step", "next_run_at", "attempts", "step_started_at", "finished_at", "exit_reason"]


def _positions_write(enrolments: list[JourneyEnrolment]) -> None:
    """Save the batch's new positions: one UPDATE … FROM unnest(arrays) on PostgreSQL (Django's bulk_update builds
    a CASE per field and row, which cost most of a batch's time), bulk_update elsewhere."""
    if not enrolments:
        return
    if not on_postgresql():
        JourneyEnrolment.objects.bulk_update(enrolments, ENROLMENT_FIELDS, batch_size=500)
        return
    table = connection.ops.quote_name(JourneyEnrolment._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS e SET state = v.state, step = v.step, next_run_at = v.next_run_at, "  # noqa: S608 - model table name
            "attempts = v.attempts, step_started_at = v.step_started_at, finished_at = v.finished_at, "
            "exit_reason = v.exit_reason "
            "FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::timestamptz[], %s::int[], %s::timestamptz[], "
            "%s::timestamptz[], %s::text[]) "
            "AS v(id, state, step, next_run_at, attempts, step_started_at, finished_at, exit_reason) WHERE e.id = v.id",
            [
                [e.pk for e in enrolments],
                [e.state for e in enrolments],
                [e.step for e in enrolments],
                [e.next_run_at for e in enrolments],
                [e.attempts for e in enrolments],
                [e.step_started_at for e in enrolments],
                [e.finished_at for e in enrolments],
                [e.exit_reason for e in enrolments],
            ],
        )


def enrolments_step(*, pairs: list[tuple[int, int]], now: datetime | None = None) -> dict[str, int]:
    """Run a claimed batch in one transaction: lock the enrolments still at the step they were claimed at (others
    were moved by another run: skipped), advance each, then write every step run, message and new position together,
    with one audit entry per journey (counts only). A crash rolls the whole batch back; its lease runs out and the
    next tick claims it again. The unique (enrolment, step) constraints stop a doubled run from writing twice."""
    ctx = BatchContext(now=now or timezone.now())
    try:
        ctx.basis = processing_basis_require(purpose="direct_marketing")
    except ProcessingNotPermitted as exc:
        ctx.basis_error = exc.reason
    expected = dict(pairs)
    with transaction.atomic():
        rows = JourneyEnrolment.objects.filter(pk__in=list(expected), state=EnrolmentState.ACTIVE).order_by("pk")
        if on_postgresql():
            rows = rows.select_for_update(skip_locked=True)
        enrolments = [e for e in rows if expected.get(e.pk) == e.step]
        for e in enrolments:
            ctx.batch_consumers.setdefault(e.journey_id, []).append(e.consumer_id)
        for e in enrolments:
            _advance(e, ctx)
        JourneyStepRun.objects.bulk_create(ctx.step_runs, batch_size=1000)
        JourneySend.objects.bulk_create(ctx.sends, batch_size=1000)
        webhook_journeys = sorted({s.journey_id for s in ctx.sends if s.status == SendStatus.PENDING})
        if webhook_journeys:
            transaction.on_commit(lambda: _webhook_enqueue(webhook_journeys))
        _positions_write(enrolments)
        for journey_id, tally in ctx.tallies.items():
            if not any(tally.values()):
                continue
            journey = ctx.journey(journey_id)
            if tally.get("deferred_no_basis"):
                Journey.objects.filter(pk=journey_id).update(
                    last_error=f"Messages are waiting: no approved direct-marketing activity ({ctx.basis_error})."
                )
            audit_record(
                actor=ACTOR,
                action="journey.steps_processed",
                merchant_id=journey.merchant_id,
                purpose="direct_marketing",
                legal_basis=ctx.basis.legal_basis if ctx.basis else "",
                activity_id=ctx.basis.activity_id if ctx.basis else None,
                object_type="journey",
                object_id=journey_id,
                counts=dict(tally),
            )
    return {"claimed": len(pairs), "run": len(enrolments)}


# ------------------------------------------------------------------------------------------------ caps


def journey_messages_for_caps(
    *, merchant_id: int, platform_since: datetime, merchant_since: datetime, consumer_ids=None
):
    """Journey messages, counted toward the campaigns' frequency caps (registered in apps.ready)."""
    since = min(platform_since, merchant_since)
    sends = JourneySend.objects.filter(status__in=COUNTED_BY_CAPS, created_at__gte=since)
    if consumer_ids is not None:
        sends = sends.filter(consumer_id__in=list(consumer_ids))
    rows = sends.values("consumer_id").annotate(
        platform_n=Count("id", filter=Q(created_at__gte=platform_since)),
        merchant_n=Count("id", filter=Q(merchant_id=merchant_id, created_at__gte=merchant_since)),
    )
    for row in rows:
        yield row["consumer_id"], row["platform_n"], row["merchant_n"]


def register() -> None:
    cap_counter_register(journey_messages_for_caps)
