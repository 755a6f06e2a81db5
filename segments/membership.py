"""Streaming membership of real-time segments: re-evaluate only the consumers a committed batch touched.

How it fits together (docs/segments.md, "Real-time segments"):

- Ingestion tells `consumers.changes` which consumers a committed batch touched (events, profiles, consents).
  `membership_changes_record` (subscribed in SegmentsConfig.ready) adds them to a pending set in Redis and
  enqueues the drain task at most once per burst; without a broker (embedded mode) it evaluates at once.
- The drain (`membership_update`) takes the real-time rule segments whose inputs the change can move
  (`segment_dependencies`, derived from the parsed expression), locks them in id order, evaluates each
  expression for the affected consumers only (the bitmap evaluator's algebra over the tag bitmaps restricted to
  those ids, actions in SQL restricted to those ids: `evaluate_for`), patches the latest snapshot's bitmap and
  size in place, writes a MembershipTransition per entry and exit, and cascades to real-time segments that
  name a changed one as segment:ID.
- Windows that lapse without new events (`within="30d"`) are handled by `membership_sweep` (beat): it
  re-evaluates only the consumers with matching events between the window start at the last sweep and the
  window start now; nothing else can have left (or, under NOT, entered) because of the window moving.

The membership clock never goes backwards: a stream evaluation runs at max(now, last sweep), so a consumer is
never judged by a window older than one a sweep already applied. Streaming and batch agree: for any
interleaving of batches and sweeps, the streamed membership equals what a full refresh computes at the time of
the last sweep (the property tests hold them to it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Max
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from pyroaring import BitMap, FrozenBitMap

from consumers.changes import CONSENTS, EVENTS, PROFILES, ConsumersChanged
from consumers.models import Event
from dbtools.backend import on_postgresql
from dbtools.expressions import IdsIn
from dbtools.pgcopy import copy_rows
from tags.models import Tag

from .evaluation import (
    ACTION_EVENT_TYPES,
    BehaviourVersion,
    ResolvedDefinition,
    behaviour_queryset,
    customers_queryset,
    definition_resolve,
    latest_snapshot,
    likely_bitmap,
    plain_term,
    segment_definition_node,
    snapshot_bitmap,
    snapshot_bitmap_remember,
    window_start,
)
from .language import ActionTerm, And, LikelyTerm, Node, Not, Or, SegmentSyntaxError, SegmentTerm, TagTerm, terms
from .models import (
    MembershipTransition,
    RefreshPolicy,
    Segment,
    SegmentKind,
    SegmentScope,
    SegmentSnapshot,
    SnapshotStatus,
    TransitionKind,
)
from .sources import tag_bitmaps

logger = logging.getLogger("dmp.segments")

# ------------------------------------------------------------------------------------------------ the entry feed

# Who reacts to consumers entering segments (journeys triggered by "entering a segment", a layer above) subscribes
# here when its app is ready; a committed write of entry transitions (a streaming chunk, a refresh) tells them which
# segments had entries, after commit. A listener must be quick (it schedules, it does not work) and its failure is
# logged, never raised into the write that already committed.
EntriesListener = Callable[[frozenset[int]], None]
_entries_listeners: dict[str, EntriesListener] = {}


def membership_entries_subscribe(*, name: str, listener: EntriesListener) -> None:
    """Register a listener for "these segments had entries" under a name (the same name again replaces it)."""
    _entries_listeners[name] = listener


def membership_entries_unsubscribe(*, name: str) -> None:
    _entries_listeners.pop(name, None)


def membership_entries_written(segment_ids: Iterable[int]) -> None:
    """Call where entry transitions are written (inside the writing transaction): listeners hear after commit."""
    ids = frozenset(segment_ids)
    if not ids or not _entries_listeners:
        return
    transaction.on_commit(lambda: _entries_notify(ids))


def _entries_notify(segment_ids: frozenset[int]) -> None:
    for name, listener in list(_entries_listeners.items()):
        try:
            listener(segment_ids)
        except Exception as exc:  # the transitions are committed; a listener's failure must not undo or fail them
            logger.warning(
                "segments.entries_listener_failed",
                extra={"fields": {"listener": name, "segments": sorted(segment_ids), "error": type(exc).__name__}},
            )


SOURCE_STREAM = "stream"
SOURCE_SWEEP = "sweep"
SOURCE_REFRESH = "refresh"
SWEEP_MARK_KEY = "segments:membership:swept_at"
SQL_CHUNK = 900  # ids per IN (...) list (SQLite's parameter limit)
PG_SQL_CHUNK = 100_000  # ids per array parameter on PostgreSQL (IdsIn)


# ------------------------------------------------------------------------------------------------ dependencies


@dataclass(frozen=True)
class Dependencies:
    """What can move a segment's membership between refreshes, read from its parsed expression.

    event_types: the EventType values its actions count (an event of another type cannot change it);
    empty_member: whether a consumer with no tags, no events and no nested membership is a member (a NOT at
    the top, say): then a brand-new consumer, from any door, may enter;
    segments: the segments it names as segment:ID (their changes cascade into it);
    windowed: its actions with a `within` window (the sweep looks at these).
    """

    event_types: frozenset[int]
    empty_member: bool
    segments: frozenset[int]
    windowed: tuple[ActionTerm, ...]

    def moved_by(self, change_input: str, event_types: frozenset[int]) -> bool:
        if self.empty_member:
            return True
        return change_input == EVENTS and bool(self.event_types & event_types)


def _empty_value(node: Node) -> bool:
    """The expression's value for a consumer with nothing: no tag, no event, in no nested segment."""
    if isinstance(node, Or):
        return any(_empty_value(o) for o in node.operands)
    if isinstance(node, And):
        return all(_empty_value(o) for o in node.operands)
    if isinstance(node, Not):
        return not _empty_value(node.operand)
    # "Did not" actions (max_count=0 and the like) hold for a consumer with no events at all.
    return isinstance(node, ActionTerm) and node.includes_none


def segment_dependencies(node: Node) -> Dependencies:
    found = terms(node)
    actions = [t for t in found if isinstance(t, ActionTerm)]
    return Dependencies(
        event_types=frozenset(int(ACTION_EVENT_TYPES[t.action]) for t in actions),
        empty_member=_empty_value(node),
        segments=frozenset(t.segment_id for t in found if isinstance(t, SegmentTerm)),
        windowed=tuple(dict.fromkeys(t for t in actions if t.within is not None)),
    )


@dataclass
class RealtimeSegment:
    segment: Segment
    resolved: ResolvedDefinition
    dependencies: Dependencies


def realtime_segments(*, segment_ids: Iterable[int] | None = None) -> dict[int, RealtimeSegment]:
    """The real-time rule segments (all, or those of segment_ids) with their resolved definitions.

    A definition that no longer resolves is left out (its refresh records why, where the merchant looks).
    """
    query = Segment.objects.select_related("merchant").filter(
        refresh_policy=RefreshPolicy.REALTIME, kind__in=[SegmentKind.RULE, SegmentKind.PERSONA]
    )
    if segment_ids is not None:
        query = query.filter(pk__in=list(segment_ids))
    segments = list(query.order_by("pk"))
    catalogue: list[tuple[int, str, str]] | None = None
    found: dict[int, RealtimeSegment] = {}
    now = time.monotonic()
    version = tuple(Tag.objects.aggregate(n=Count("id"), high=Max("id")).values()) if segments else ()
    for segment in segments:
        key = (segment.pk, segment.definition, version)
        cached = _resolved_cache.get(key)
        if cached is None or now - cached[0] > RESOLVED_CACHE_SECONDS:
            if catalogue is None:
                catalogue = list(Tag.objects.values_list("id", "family", "value"))
            try:
                node = segment_definition_node(segment)
                resolved = definition_resolve(node, merchant=segment.merchant, catalogue=catalogue)
            except SegmentSyntaxError:
                continue
            cached = (now, resolved, segment_dependencies(resolved.node))
            _resolved_cache[key] = cached
            if len(_resolved_cache) > 10_000:
                _resolved_cache.clear()
        found[segment.pk] = RealtimeSegment(segment, cached[1], cached[2])
    return found


# Resolving a definition reads the catalogue and checks targeting: done at most once a minute per segment and
# process, not on every drain. The key holds the definition and the catalogue's version (count and newest id of the
# tags), so an edit or a catalogue change is seen at once.
RESOLVED_CACHE_SECONDS = 60.0
_resolved_cache: dict[tuple[int, str, tuple], tuple[float, ResolvedDefinition, Dependencies]] = {}


def _dependents(segments: dict[int, RealtimeSegment]) -> dict[int, list[int]]:
    """segment id -> the real-time segments that name it."""
    named: dict[int, list[int]] = {}
    for segment_id, rt in segments.items():
        for nested in rt.dependencies.segments:
            named.setdefault(nested, []).append(segment_id)
    return named


# ------------------------------------------------------------------------------------------------ evaluation


def evaluate_for(
    resolved: ResolvedDefinition,
    ids: BitMap,
    *,
    now: datetime,
    bitmaps: tuple[dict[int, FrozenBitMap], FrozenBitMap] | None = None,
    nested: dict[int, BitMap | FrozenBitMap] | None = None,
    shared: dict[tuple[ActionTerm, int | None], BitMap] | None = None,
    scope: str = SegmentScope.MARKETPLACE,
) -> BitMap:
    """The members among `ids`: the bitmap evaluator's algebra with every leaf restricted to ids.

    Tags come from the tag bitmaps, actions from SQL over those consumers' events only (the same predicate as
    the batch evaluator), nested segments from `nested` (their current members) or their latest snapshot.
    """
    tag_ids = sorted(set(resolved.tag_ids.values()))
    by_tag, live = bitmaps if bitmaps is not None else tag_bitmaps(tag_ids)
    universe = BitMap(ids) & live
    if not universe:
        return BitMap()
    # Action results over the same consumers are shared by every segment of one update (`shared`): the same
    # term in many segments is one query. The key holds the merchant only where the term is narrowed to it.
    actions: dict[tuple[ActionTerm, int | None], BitMap] = shared if shared is not None else {}

    def leaf(term) -> BitMap:
        if isinstance(term, TagTerm):
            return universe & by_tag[resolved.tag_ids[(term.family, term.value)]]
        if isinstance(term, SegmentTerm):
            members = (nested or {}).get(term.segment_id)
            if members is None:
                members = current_members(term.segment_id)
            return universe & members
        if isinstance(term, LikelyTerm):  # the serving model's scores: they change with a new model, not events
            return universe & likely_bitmap(term, merchant_id=resolved.merchant_id)
        key = (term, resolved.merchant_id if term.merchant is not None else None)
        found = actions.get(key)
        if found is None:
            found = actions[key] = _action_ids(term, resolved.merchant_id, now, universe)
        return universe & found

    def walk(node: Node) -> BitMap:
        if isinstance(node, Or):
            return BitMap.union(*(walk(o) for o in node.operands))
        if isinstance(node, And):
            positives = sorted((walk(o) for o in node.operands if not isinstance(o, Not)), key=len)
            result = BitMap(positives[0]) if positives else BitMap(universe)
            for p in positives[1:]:
                result &= p
            for o in node.operands:
                if isinstance(o, Not) and result:
                    result -= walk(o.operand)
            return result
        if isinstance(node, Not):
            return universe - walk(node.operand)
        return leaf(node)

    members = walk(resolved.node) & universe
    if scope == SegmentScope.MY_CUSTOMERS:  # as the batch evaluator: only consumers with an event at the store
        members &= _customer_ids(resolved.merchant_id, members)
    return members


def _action_ids(term: ActionTerm, merchant_id: int, now: datetime, ids: BitMap) -> BitMap:
    found = _ids_matching(behaviour_queryset(term, merchant_id=merchant_id, now=now), ids)
    if term.includes_none:
        # max_count=0 and the like, as the batch evaluator: also everyone without any matching event.
        found |= ids - _ids_matching(behaviour_queryset(plain_term(term), merchant_id=merchant_id, now=now), ids)
    return found


def _ids_matching(query, ids: BitMap) -> BitMap:
    found = BitMap()
    for chunk in _chunks(ids, PG_SQL_CHUNK if on_postgresql() else SQL_CHUNK):
        found.update(query.filter(IdsIn("consumer_id", chunk)).values_list("consumer_id", flat=True).distinct())
    return found


def _customer_ids(merchant_id: int, ids: BitMap) -> BitMap:
    # The batch evaluator's rule (customers_queryset), asked for these consumers only: its cached whole-store
    # bitmap is keyed by the events' high-water mark, which every event batch moves, so it would be rebuilt
    # from all the store's events on each drain.
    return _ids_matching(customers_queryset(merchant_id=merchant_id), ids)


def _chunks(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    chunk: list[int] = []
    for i in ids:
        chunk.append(i)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def current_members(segment_id: int) -> FrozenBitMap:
    """A segment's members now: its latest ready snapshot (empty before its first refresh)."""
    snapshot = latest_snapshot(segment_id)
    if snapshot is None or not snapshot.members_kept:
        return FrozenBitMap()
    return snapshot_bitmap(snapshot.pk, snapshot.size, snapshot.computed_at)


# ------------------------------------------------------------------------------------------------ the clock


def membership_clock(now: datetime | None = None) -> datetime:
    """The time streaming evaluates at: now, or the last sweep's time if that is later (it never goes back)."""
    now = now or timezone.now()
    mark = sweep_mark()
    return max(now, mark) if mark is not None else now


def sweep_mark() -> datetime | None:
    raw = cache.get(SWEEP_MARK_KEY)
    return parse_datetime(raw) if isinstance(raw, str) else None


# ------------------------------------------------------------------------------------------------ the update


@dataclass
class UpdateOutcome:
    segments: int = 0
    consumers: int = 0
    entered: int = 0
    exited: int = 0

    def add(self, other: UpdateOutcome) -> None:
        self.segments += other.segments
        self.consumers += other.consumers
        self.entered += other.entered
        self.exited += other.exited

    def as_dict(self) -> dict[str, int]:
        return {"segments": self.segments, "consumers": self.consumers, "entered": self.entered, "exited": self.exited}


def membership_update(
    *,
    consumer_ids: Iterable[int],
    change_input: str = EVENTS,
    event_types: Iterable[int] | None = None,
    segment_ids: Iterable[int] | None = None,
    source: str = SOURCE_STREAM,
    now: datetime | None = None,
) -> UpdateOutcome:
    """Re-evaluate the real-time segments a change can move, for `consumer_ids` only, in bounded chunks.

    `segment_ids` narrows it to those segments (a sweep or a cascade from a refresh); otherwise the segments are
    chosen by their dependencies on `change_input` and `event_types` (all event types when None).
    """
    ids = BitMap(consumer_ids)
    outcome = UpdateOutcome()
    if not ids:
        return outcome
    segments = realtime_segments()
    if not segments:
        return outcome
    every_type = frozenset(int(t) for t in ACTION_EVENT_TYPES.values())
    types = frozenset(event_types) if event_types is not None else every_type
    if segment_ids is not None:
        wanted = set(segment_ids) & set(segments)
    else:
        # A "my customers" segment also moves when a consumer's first event at the store makes them a customer.
        wanted = {
            pk
            for pk, rt in segments.items()
            if rt.dependencies.moved_by(change_input, types)
            or (change_input == EVENTS and rt.segment.scope == SegmentScope.MY_CUSTOMERS)
        }
    if not wanted:
        return outcome
    at = membership_clock(now)
    batch = max(1, settings.SEGMENT_STREAM_BATCH)
    for chunk in _chunks(ids, batch):
        try:
            outcome.add(_update_chunk(segments, wanted, BitMap(chunk), at, source))
        except Exception as exc:
            stream_failure_record(segment_ids=sorted(wanted), error=exc)
            raise
    outcome.consumers = len(ids)
    return outcome


def stream_failure_record(*, segment_ids: list[int], error: BaseException) -> None:
    """Put a failed streaming update where the merchant and the operator look: on each segment it was for (the
    portal's segment page, the admin). The consumers stay pending: the task's retries, or the sweep, take them up
    again, and the next update of the segment that commits clears the message."""
    message = (
        f"Updating this segment in real time failed ({type(error).__name__}); it has been logged, and the "
        "consumers concerned are evaluated again by the next update, the sweep or a refresh."
    )
    logger.warning(
        "segments.membership_update_failed",
        extra={"fields": {"segments": segment_ids, "error": type(error).__name__}},
    )
    try:
        with transaction.atomic():
            Segment.objects.filter(pk__in=segment_ids).update(stream_error=message, stream_error_at=timezone.now())
    except Exception:  # the database itself may be what failed: the log line above is then all there is
        logger.exception("segments.membership_failure_not_recorded", extra={"fields": {"segments": segment_ids}})


def _update_chunk(
    segments: dict[int, RealtimeSegment], wanted: set[int], ids: BitMap, now: datetime, source: str
) -> UpdateOutcome:
    """One chunk of consumers through the wanted segments and every real-time segment they cascade into."""
    dependents = _dependents(segments)
    closure = set(wanted)
    queue = list(wanted)
    while queue:
        for nxt in dependents.get(queue.pop(), []):
            if nxt not in closure:
                closure.add(nxt)
                queue.append(nxt)
    order = _topological(closure, segments)
    outcome = UpdateOutcome()
    tag_ids = sorted({tag_id for pk in order for tag_id in segments[pk].resolved.tag_ids.values()})
    with transaction.atomic():
        # Lock the segments in id order (as refreshes do): two drains of the same consumers take turns, and the
        # second evaluates after the first's write, with whatever committed meanwhile.
        # (With each one's stream error as it is under the lock: one recorded by another drain meanwhile is seen.)
        errors_at = dict(
            Segment.objects.select_for_update().filter(pk__in=sorted(closure)).values_list("pk", "stream_error_at")
        )
        locked = set(errors_at)
        bitmaps = tag_bitmaps(tag_ids)
        snapshots = _latest_snapshots(sorted(locked))
        nested: dict[int, BitMap | FrozenBitMap] = {}
        changed: dict[int, BitMap] = {}
        shared: dict[tuple[ActionTerm, int | None], BitMap] = {}
        transitions: list[tuple[int, int, str]] = []
        for pk in order:
            snapshot = snapshots.get(pk)
            if pk not in locked or snapshot is None:
                continue  # not computed yet: its first refresh computes everyone
            rt = segments[pk]
            to_check = BitMap(ids)
            for nested_id in rt.dependencies.segments:
                to_check |= changed.get(nested_id, BitMap())
            if pk not in wanted:
                # Reached only by cascade: just the consumers whose nested membership moved.
                to_check = BitMap()
                for nested_id in rt.dependencies.segments:
                    to_check |= changed.get(nested_id, BitMap())
            if not to_check:
                continue
            members = BitMap(snapshot_bitmap(snapshot.pk, snapshot.size, snapshot.computed_at))
            # Shared action results are over exactly the chunk's consumers; a segment checking others (a cascade)
            # gets its own queries.
            share = shared if to_check == ids else None
            now_in = evaluate_for(
                rt.resolved,
                to_check,
                now=now,
                bitmaps=bitmaps,
                nested=nested,
                shared=share,
                scope=rt.segment.scope,
            )
            was_in = members & to_check
            entered, exited = now_in - was_in, was_in - now_in
            if entered or exited:
                members |= entered
                members -= exited
                _snapshot_patch(snapshot, members, now)
                changed[pk] = entered | exited
                transitions.extend(_transitions(pk, entered, exited))
                outcome.segments += 1
                outcome.entered += len(entered)
                outcome.exited += len(exited)
            nested[pk] = members
        transitions_write(transitions, at=now, source=source)
        # This update of these segments committed: an earlier failure no longer describes them.
        failed = sorted(pk for pk, at in errors_at.items() if at is not None)
        if failed:
            Segment.objects.filter(pk__in=failed).update(stream_error="", stream_error_at=None)
    outcome.consumers = len(ids)
    if outcome.segments:
        logger.info("segments.membership_updated", extra={"fields": {"source": source, **outcome.as_dict()}})
    return outcome


def _topological(closure: set[int], segments: dict[int, RealtimeSegment]) -> list[int]:
    """Nested segments before the segments that name them (definitions are acyclic; ties by id)."""
    order: list[int] = []
    seen: set[int] = set()

    def visit(pk: int, depth: int = 0) -> None:
        if pk in seen or depth > 64:
            return
        seen.add(pk)
        for nested in sorted(segments[pk].dependencies.segments):
            if nested in closure:
                visit(nested, depth + 1)
        order.append(pk)

    for pk in sorted(closure):
        visit(pk)
    return order


def _latest_snapshots(segment_ids: list[int]) -> dict[int, SegmentSnapshot]:
    """Each segment's newest ready snapshot, where it kept its members (two queries for all of them)."""
    newest = (
        SegmentSnapshot.objects.filter(segment_id__in=segment_ids, status=SnapshotStatus.READY)
        .values("segment_id")
        .annotate(latest=Max("id"))
        .values_list("latest", flat=True)
    )
    return {
        s.segment_id: s for s in SegmentSnapshot.objects.filter(pk__in=list(newest), members_kept=True).defer("members")
    }


def _snapshot_patch(snapshot: SegmentSnapshot, members: BitMap, now: datetime) -> None:
    """The latest snapshot now holds `members`: bitmap and size in place, stamped with the update's time (the
    stamp is part of every cache key of its members, so no process keeps serving the old ones)."""
    stamp = max(now, timezone.now())
    if snapshot.computed_at is not None and stamp <= snapshot.computed_at:
        stamp = snapshot.computed_at + timedelta(microseconds=1)
    SegmentSnapshot.objects.filter(pk=snapshot.pk).update(
        members=SegmentSnapshot.serialise(members), size=len(members), computed_at=stamp
    )
    snapshot.size = len(members)
    snapshot.computed_at = stamp
    snapshot_bitmap_remember(snapshot_id=snapshot.pk, size=snapshot.size, stamp=stamp, members=members)


def _transitions(segment_id: int, entered: BitMap, exited: BitMap) -> Iterator[tuple[int, int, str]]:
    """(segment id, consumer id, kind): entries, then exits."""
    for consumer_id in entered:
        yield segment_id, consumer_id, ENTERED
    for consumer_id in exited:
        yield segment_id, consumer_id, TransitionKind.EXITED.value


TRANSITION_COLUMNS = ("segment_id", "consumer_id", "kind", "at", "source")
ENTERED = TransitionKind.ENTERED.value


def transitions_write(rows: list[tuple[int, int, str]], *, at: datetime, source: str) -> None:
    """Write (segment id, consumer id, kind) transitions stamped `at` from `source` (a streaming chunk, a sweep, a
    refresh) and announce the segments with entries to the entry feed: COPY on PostgreSQL (a drain writes thousands
    per chunk, and building model instances cost more than evaluating them), bulk INSERT elsewhere."""
    if not rows:
        return
    if on_postgresql():
        table = MembershipTransition._meta.db_table
        with connection.cursor() as cursor:
            copy_rows(cursor, table, TRANSITION_COLUMNS, ((*row, at, source) for row in rows))
    else:
        MembershipTransition.objects.bulk_create(
            (
                MembershipTransition(segment_id=segment_id, consumer_id=consumer_id, kind=kind, at=at, source=source)
                for segment_id, consumer_id, kind in rows
            ),
            batch_size=2000,
        )
    # Where entries are written, they are announced (after commit): every writer tells, none has to remember to.
    membership_entries_written({segment_id for segment_id, _consumer, kind in rows if kind == ENTERED})


# ------------------------------------------------------------------------------------------------ the sweep


def membership_sweep(*, now: datetime | None = None) -> UpdateOutcome:
    """Re-evaluate the consumers whose `within` windows may have lapsed since the last sweep.

    For each windowed action of a real-time segment, the window start moved from start(mark) to start(now)
    (windows are aligned to the hour or day, so mostly it has not moved and nothing is read); the consumers with
    a matching event in between are the only ones the move can change. The first sweep starts from the oldest
    refresh of a real-time segment.
    """
    now = now or timezone.now()
    mark = sweep_mark()
    segments = realtime_segments()
    outcome = UpdateOutcome()
    if mark is None:
        refreshed = [rt.segment.last_refreshed_at for rt in segments.values() if rt.segment.last_refreshed_at]
        mark = min(refreshed) if refreshed else now
    if now <= mark:
        return outcome
    per_segment: dict[int, BitMap] = {}
    for pk, rt in segments.items():
        ids = BitMap()
        for term in rt.dependencies.windowed:
            before, after = window_start(term, mark), window_start(term, now)
            if before is None or after is None or after <= before:
                continue
            # The consumers with a matching event that was inside the window at the mark and is not now.
            ids |= _lapsed_ids(term, rt.resolved.merchant_id, before, after)
        if ids:
            per_segment[pk] = ids
    # Consumers sharing segments go together; each segment's consumers are evaluated once.
    for pk, ids in per_segment.items():
        outcome.add(membership_update(consumer_ids=ids, segment_ids=[pk], source=SOURCE_SWEEP, now=now))
    cache.set(SWEEP_MARK_KEY, now.isoformat(), None)
    return outcome


def _lapsed_ids(term: ActionTerm, merchant_id: int, before: datetime, after: datetime) -> BitMap:
    from .targeting import product_condition

    events = Event.objects.filter(
        event_type=ACTION_EVENT_TYPES[term.action], occurred_at__gte=before, occurred_at__lt=after
    )
    if term.merchant is not None:
        events = events.filter(merchant_id=merchant_id)
    if term.category is not None or term.brand is not None:
        events = events.filter(product_condition(category=term.category, brand=term.brand, prefix="product__"))
    return BitMap(events.values_list("consumer_id", flat=True).distinct().iterator(chunk_size=20000))


# ------------------------------------------------------------------------------------------------ after a refresh


def refresh_transitions(
    *, segment_id: int, members: BitMap | FrozenBitMap, before: FrozenBitMap | None
) -> list[tuple[int, int, str]]:
    """The transitions a batch refresh writes, as transitions_write takes them: entries then exits, ascending ids,
    at most SEGMENT_REFRESH_TRANSITIONS_MAX (the snapshot's entered and exited counts stay exact)."""
    limit = max(0, settings.SEGMENT_REFRESH_TRANSITIONS_MAX)
    if before is None or limit == 0:
        # A segment's first snapshot: everyone "enters" only in the sense of being computed; no transitions.
        return []
    entered = BitMap(members) - before
    exited = BitMap(before) - BitMap(members)
    return list(islice(_transitions(segment_id, entered, exited), limit))


@dataclass(frozen=True)
class RefreshFollowUp:
    """A refresh just written: the segment, when its computing began, and whose membership it changed."""

    segment_id: int
    started_at: datetime
    changed: BitMap


FOLLOW_UP_CHUNK = 50_000  # consumer ids per queued follow-up message


def refresh_follow_up_needed(*, realtime: list[int], refreshed: list[int]) -> bool:
    """Whether refreshing these segments has anything to follow up: one of them is real-time, or a real-time
    segment names one of them."""
    if realtime:
        return True
    return Segment.depends_on.through.objects.filter(
        to_segment_id__in=refreshed, from_segment__refresh_policy=RefreshPolicy.REALTIME
    ).exists()


def refresh_follow_up(written: list[RefreshFollowUp]) -> None:
    """After refreshes commit, keep real-time membership true (runs on commit; queued with a broker).

    - Catch-up: a real-time segment's refresh computed from data as it was when computing began; consumers that
      streaming changed since were overwritten by that older view, so they are re-evaluated.
    - Cascade: real-time segments that name a refreshed segment (segment:ID) are re-evaluated for the consumers
      whose membership the refresh changed.
    """
    if not written:
        return
    ids = [w.segment_id for w in written]
    realtime = set(
        Segment.objects.filter(pk__in=ids, refresh_policy=RefreshPolicy.REALTIME).values_list("pk", flat=True)
    )
    through = Segment.depends_on.through
    dependents: dict[int, list[int]] = {}
    for from_id, to_id in through.objects.filter(
        to_segment_id__in=ids, from_segment__refresh_policy=RefreshPolicy.REALTIME
    ).values_list("from_segment_id", "to_segment_id"):
        dependents.setdefault(to_id, []).append(from_id)
    for w in written:
        if w.segment_id in realtime:
            again = stream_changed_since(segment_id=w.segment_id, since=w.started_at)
            if again:
                _follow_up(again, [w.segment_id])
        if w.changed and dependents.get(w.segment_id):
            _follow_up(w.changed, dependents[w.segment_id])


def _follow_up(consumer_ids: BitMap, segment_ids: list[int]) -> None:
    from .tasks import membership_drain_task

    for chunk in _chunks(consumer_ids, FOLLOW_UP_CHUNK):
        if pending_store() is None:
            membership_update(consumer_ids=chunk, segment_ids=segment_ids)
        else:
            membership_drain_task.apply_async(kwargs={"consumer_ids": chunk, "segment_ids": segment_ids})


def stream_changed_since(*, segment_id: int, since: datetime) -> BitMap:
    """Consumers whose membership streaming or a sweep changed since `since` (a refresh computed from data
    older than those changes re-evaluates them after it writes)."""
    return BitMap(
        MembershipTransition.objects.filter(
            segment_id=segment_id, at__gte=since, source__in=[SOURCE_STREAM, SOURCE_SWEEP]
        ).values_list("consumer_id", flat=True)
    )


# ------------------------------------------------------------------------------------------------ the feed

PENDING_KEY = "dmp:segments:membership:pending"
PROCESSING_KEY = "dmp:segments:membership:processing:"
SCHEDULED_KEY = "dmp:segments:membership:scheduled"
SCHEDULED_TTL_SECONDS = 60  # a lost drain message stops blocking new ones after this long
PROCESSING_TTL_SECONDS = 24 * 3600  # a processing set nobody finishes is dropped after a day (sweeps finish it)
ORPHAN_AFTER_SECONDS = 10 * 60  # a processing set this old has lost its drain: the sweep finishes it
_INPUT_CODES = {PROFILES: "p", CONSENTS: "c"}
_CODE_INPUTS = {"p": PROFILES, "c": CONSENTS}
_redis_clients: dict[str, Any] = {}


def pending_store():
    """The Redis client the pending set lives in (the broker's), or None in embedded mode (no broker)."""
    url = settings.CELERY_BROKER_URL or ""
    if not url.startswith(("redis://", "rediss://")):
        return None
    client = _redis_clients.get(url)
    if client is None:
        import redis

        client = _redis_clients[url] = redis.Redis.from_url(url)
    return client


def _encode(change: ConsumersChanged) -> list[str]:
    if change.input == EVENTS:
        types = sorted(change.event_types) or sorted(int(t) for t in ACTION_EVENT_TYPES.values())
        return [f"e{t}:{consumer_id}" for t in types for consumer_id in change.consumer_ids]
    code = _INPUT_CODES[change.input]
    return [f"{code}:{consumer_id}" for consumer_id in change.consumer_ids]


def _decode(members: Iterable[bytes | str]) -> dict[tuple[str, int | None], BitMap]:
    """(input, event type or None) -> consumer ids."""
    grouped: dict[tuple[str, int | None], BitMap] = {}
    for raw in members:
        text = raw.decode() if isinstance(raw, bytes) else raw
        code, _, consumer = text.partition(":")
        if code.startswith("e"):
            key: tuple[str, int | None] = (EVENTS, int(code[1:]))
        else:
            key = (_CODE_INPUTS.get(code, PROFILES), None)
        grouped.setdefault(key, BitMap()).add(int(consumer))
    return grouped


def membership_changes_record(change: ConsumersChanged) -> None:
    """The listener ingestion calls after a batch commits: cheap, never evaluates in the request path when a
    broker is configured.

    With a broker: add the consumers to the pending set and enqueue the drain task unless one is already
    scheduled (a burst of batches becomes one drain). Without one (embedded mode): evaluate now.
    """
    if not Segment.objects.filter(refresh_policy=RefreshPolicy.REALTIME).exists():
        return
    store = pending_store()
    if store is None:
        membership_update(
            consumer_ids=change.consumer_ids, change_input=change.input, event_types=change.event_types or None
        )
        return
    members = _encode(change)
    with store.pipeline() as pipe:
        for start in range(0, len(members), 10_000):
            pipe.sadd(PENDING_KEY, *members[start : start + 10_000])
        pipe.set(SCHEDULED_KEY, "1", nx=True, ex=SCHEDULED_TTL_SECONDS)
        scheduled = pipe.execute()[-1]
    if scheduled:
        _enqueue_drain()


def _enqueue_drain(countdown: float | None = None) -> None:
    from .tasks import membership_drain_task

    delay = settings.SEGMENT_STREAM_COALESCE_MS / 1000 if countdown is None else countdown
    membership_drain_task.apply_async(countdown=delay)


def membership_drain(*, run_id: str, limit: int | None = None) -> tuple[UpdateOutcome, bool]:
    """Evaluate what the pending set holds, at most `limit` consumer entries; returns (outcome, more left).

    The pending set is renamed to this run's processing set in one step (arrivals meanwhile start a new pending
    set and a new drain); entries leave the processing set only after their chunk committed, so a run killed
    half-way is picked up again by its redelivery (same run id) or by the sweep.
    """
    store = pending_store()
    outcome = UpdateOutcome()
    if store is None:
        return outcome, False
    limit = limit or settings.SEGMENT_STREAM_MAX_PER_RUN
    store.delete(SCHEDULED_KEY)  # arrivals from now on schedule another drain
    processing = PROCESSING_KEY + run_id
    if not store.exists(processing):
        try:
            store.rename(PENDING_KEY, processing)
        except Exception as exc:  # redis.ResponseError: nothing pending
            if "no such key" not in str(exc).lower():
                raise
            return outcome, False
        store.expire(processing, PROCESSING_TTL_SECONDS)
    done = 0
    batch = max(1, settings.SEGMENT_STREAM_BATCH)
    while done < limit:
        members = store.srandmember(processing, min(batch, limit - done))
        if not members:
            store.delete(processing)
            return outcome, bool(store.exists(PENDING_KEY))
        for (change_input, event_type), ids in _decode(members).items():
            outcome.add(
                membership_update(
                    consumer_ids=ids,
                    change_input=change_input,
                    event_types=[event_type] if event_type is not None else None,
                )
            )
        store.srem(processing, *members)
        done += len(members)
    return outcome, True


def processing_orphans() -> list[str]:
    """Run ids of processing sets left by drains that died for good (the sweep finishes them)."""
    store = pending_store()
    if store is None:
        return []
    orphans = []
    for raw in store.scan_iter(PROCESSING_KEY + "*"):
        key = raw.decode() if isinstance(raw, bytes) else raw
        ttl = store.ttl(key)
        if ttl is not None and 0 <= ttl < PROCESSING_TTL_SECONDS - ORPHAN_AFTER_SECONDS:
            orphans.append(key.removeprefix(PROCESSING_KEY))
    return orphans


__all__ = [
    "CONSENTS",
    "EVENTS",
    "PROFILES",
    "BehaviourVersion",
    "ConsumersChanged",
    "Dependencies",
    "evaluate_for",
    "membership_clock",
    "membership_sweep",
    "membership_update",
    "realtime_segments",
    "refresh_transitions",
    "segment_dependencies",
]
