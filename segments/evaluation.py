"""Resolving a parsed expression against the catalogue, and its two evaluators.

- `evaluate_bitmap`: Roaring-bitmap algebra over the tag bitmaps (what merchants get). NOT x is live − x.
- `evaluate_sql`: one SQL query over ConsumerTag and Event rows (the oracle the tests hold the bitmaps to).

Behavioural terms (`purchased(category="beauty", within="30d", min_count=2)`) are evaluated in SQL in both, into
a bitmap that is cached until the events change: the cache key holds the events' high-water marks (min and max
Event.id: ingestion raises the max, retention purges raise the min), an erasure generation, the predicate and,
for `within`, the start of its window. Windows are aligned (hours to the start of the hour, days and weeks to
the start of the UTC day) so the result only changes when the window moves.

`segment:ID` nests one of the merchant's own segments: its latest ready snapshot where it has one (the
membership the merchant sees), else its definition evaluated now. The SQL oracle always re-evaluates nested
rule definitions from rows.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.cache import cache
from django.db.models import BigIntegerField, Count, DecimalField, F, Max, Min, Q, QuerySet, Sum, Value
from django.db.models.functions import Cast, Coalesce, Round
from django.utils import timezone
from pyroaring import BitMap, FrozenBitMap

from consumers.models import Event, EventType, Product
from merchants.errors import Conflict
from merchants.models import Merchant
from recommend.selectors import likely_buyers, product_affinity
from tags.models import ConsumerTag, Tag
from tags.rules import tag_visible_to
from tags.selectors import tag_catalogue_rows

from .language import (
    MONEY_ARGS,
    ActionTerm,
    And,
    LikelyTerm,
    Node,
    Not,
    Or,
    SegmentSyntaxError,
    SegmentTerm,
    TagTerm,
    Term,
    parse,
    terms,
    to_text,
    window_hours,
)
from .models import Segment, SegmentKind, SegmentScope, SegmentSnapshot, SnapshotStatus
from .sources import live_consumers_queryset, tag_bitmaps
from .targeting import ValueNotTargetable, action_terms_check, nested_refusal, product_condition

ACTION_EVENT_TYPES = {
    "viewed": EventType.VIEW,
    "carted": EventType.CART,
    "favourited": EventType.FAVOURITE,
    "purchased": EventType.PURCHASE,
}
MAX_NESTING = 16  # segment:ID inside segment:ID ...


@dataclass(frozen=True)
class ResolvedDefinition:
    """A parsed expression whose terms are known to exist: tag values in their catalogue spelling, tag ids,
    and the merchant's own segments it names."""

    node: Node
    merchant_id: int
    tag_ids: dict[tuple[str, str], int] = field(default_factory=dict)
    segment_ids: frozenset[int] = frozenset()

    @property
    def text(self) -> str:
        return to_text(self.node)


# ------------------------------------------------------------------------------------------------ resolution


def definition_resolve(
    node: Node,
    *,
    merchant: Merchant,
    text: str | None = None,
    segment_id: int | None = None,
    catalogue: list[tuple[int, str, str]] | None = None,
) -> ResolvedDefinition:
    """Check every term against the catalogue and the merchant's segments; errors name the term's position.

    `segment_id` is the segment being defined, if it exists already: naming it, or a segment that leads back
    to it, is a cycle. Another merchant's segment is reported exactly like a missing one. `catalogue` (rows of
    id, family, value), when given, saves the tag query (bulk refreshes resolve many definitions at once).
    """
    found = terms(node)
    t: Term  # the loops below walk the terms of one kind, then of another
    tag_terms = [t for t in found if isinstance(t, TagTerm)]
    canonical: dict[tuple[str, str], tuple[str, int]] = {}
    if tag_terms:
        families = {t.family for t in tag_terms}
        if catalogue is None:
            rows = tag_catalogue_rows(families=families)
        else:
            rows = [row for row in catalogue if row[1] in families]
        # Merchant-scoped families (a store's own propensity): another store's values are unknown here.
        rows = [row for row in rows if tag_visible_to(family=row[1], value=row[2], merchant_slug=merchant.slug)]
        exact = {(family, value): (value, tag_id) for tag_id, family, value in rows}
        folded: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for tag_id, family, value in rows:
            folded.setdefault((family, value.casefold()), []).append((value, tag_id))
        known_families = {family for _, family, _ in rows}
        for t in tag_terms:
            match = exact.get((t.family, t.value))
            if match is None:
                candidates = folded.get((t.family, t.value.casefold()), [])
                match = candidates[0] if len(candidates) == 1 else None
            if match is not None:
                canonical[(t.family, t.value)] = match
                continue
            if t.family not in known_families:
                all_families = sorted(
                    {row[1] for row in catalogue}
                    if catalogue is not None
                    else set(Tag.objects.values_list("family", flat=True))
                )
                raise SegmentSyntaxError(
                    f"Unknown tag family '{t.family}'",
                    position=_at(t.pos, ".tag.family"),
                    found=t.family,
                    expected=all_families,
                    text=text,
                )
            values = sorted(value for _, family, value in rows if family == t.family)
            raise SegmentSyntaxError(
                f"Unknown value '{t.value}' for the tag family {t.family}",
                position=_at(t.pos, ".tag.value"),
                found=t.value,
                expected=values[:50],
                text=text,
            )

    segment_terms = [t for t in found if isinstance(t, SegmentTerm)]
    referenced = {t.segment_id for t in segment_terms}
    if referenced:
        own = set(Segment.objects.for_merchant(merchant).filter(pk__in=referenced).values_list("pk", flat=True))
        for t in segment_terms:
            if t.segment_id not in own:
                raise SegmentSyntaxError(
                    f"No segment {t.segment_id}",
                    position=_at(t.pos, ".segment"),
                    found=f"segment:{t.segment_id}",
                    expected=[],
                    text=text,
                )
        edges = _depends_on_edges(merchant)
        if segment_id is not None:
            path = _cycle_path(edges, start=referenced, target=segment_id)
            if path is not None:
                t = next(t for t in segment_terms if t.segment_id == path[0])
                chain = " → ".join(f"segment:{s}" for s in [segment_id, *path])
                raise SegmentSyntaxError(
                    f"segment:{t.segment_id} leads back to this segment ({chain}); a segment cannot contain itself",
                    position=_at(t.pos, ".segment"),
                    found=f"segment:{t.segment_id}",
                    expected=["a segment that does not include this one"],
                    text=text,
                )

    actions = [t for t in found if isinstance(t, ActionTerm)]
    for t in actions:
        if t.merchant is not None and t.merchant.casefold() != merchant.slug.casefold():
            # Behaviour at other merchants is theirs: a merchant may narrow an action to its own store only.
            raise SegmentSyntaxError(
                f"Unknown merchant '{t.merchant}'; actions can be narrowed to your own merchant ({merchant.slug})",
                position=t.position_of("merchant"),
                found=t.merchant,
                expected=[merchant.slug],
                text=text,
            )
    products = {t.product for t in actions if t.product is not None}
    if products:
        own_products = set(
            Product.objects.filter(merchant_id=merchant.pk, sku__in=products).values_list("sku", flat=True)
        )
        for t in actions:
            if t.product is not None and t.product not in own_products:
                # Products are named by SKU in the merchant's own catalogue only (other stores' are theirs).
                raise SegmentSyntaxError(
                    f"Unknown product '{t.product}'; name a SKU of your own catalogue",
                    position=t.position_of("product"),
                    found=t.product,
                    expected=["a SKU of your catalogue"],
                    text=text,
                )
    # Categories and brands: the merchant's own, or sold by enough merchants (segments/targeting.py); the same
    # for the segments this one names, however deep, so both evaluators refuse alike.
    action_terms_check(actions, merchant_id=merchant.pk, text=text)
    likely_terms_check([t for t in found if isinstance(t, LikelyTerm)], merchant_id=merchant.pk, text=text)
    if referenced:
        _nested_targeting_check(merchant, segment_terms, edges, text)

    def canonicalise(n: Node) -> Node:
        if isinstance(n, TagTerm):
            return replace(n, value=canonical[(n.family, n.value)][0])
        if isinstance(n, ActionTerm) and n.merchant is not None:
            return replace(n, merchant=merchant.slug)
        if isinstance(n, Not):
            return replace(n, operand=canonicalise(n.operand))
        if isinstance(n, And | Or):
            return replace(n, operands=tuple(canonicalise(o) for o in n.operands))
        return n

    return ResolvedDefinition(
        node=canonicalise(node),
        merchant_id=merchant.pk,
        tag_ids={(family, value): tag_id for family, value, tag_id in _flatten(canonical)},
        segment_ids=frozenset(referenced),
    )


def _at(pos: int | str, json_suffix: str) -> int | str:
    """A term's position; in the JSON form, the path of the offending field inside the term."""
    return pos + json_suffix if isinstance(pos, str) else pos


def _flatten(canonical: dict[tuple[str, str], tuple[str, int]]):
    for (family, _typed), (value, tag_id) in canonical.items():
        yield family, value, tag_id


def _depends_on_edges(merchant: Merchant) -> dict[int, list[int]]:
    """The merchant's segment:ID edges (which segment names which)."""
    edges: dict[int, list[int]] = {}
    through = Segment.depends_on.through
    for from_id, to_id in through.objects.filter(from_segment__merchant=merchant).values_list(
        "from_segment_id", "to_segment_id"
    ):
        edges.setdefault(from_id, []).append(to_id)
    return edges


def _nested_targeting_check(
    merchant: Merchant, segment_terms: list[SegmentTerm], edges: dict[int, list[int]], text: str | None
) -> None:
    """Refuse, at the segment:ID term, a named segment (or one it names) whose rule targets a category or brand
    the merchant may no longer target: its snapshot must not carry a refused condition into a new audience."""
    via: dict[int, SegmentTerm] = {}  # every segment reachable, with the term of this expression that leads to it
    for t in segment_terms:
        queue = [t.segment_id]
        while queue:
            current = queue.pop()
            if current in via:
                continue
            via[current] = t
            queue.extend(edges.get(current, []))
    definitions = dict(
        Segment.objects.for_merchant(merchant)
        .filter(pk__in=list(via))
        .exclude(kind=SegmentKind.LOOKALIKE)
        .values_list("pk", "definition")
    )
    for nested_id, term in via.items():
        definition = definitions.get(nested_id)
        if not definition:
            continue
        try:
            nested = parse(definition)
        except SegmentSyntaxError:
            continue  # reported when that segment itself is evaluated
        what = nested_refusal([n for n in terms(nested) if isinstance(n, ActionTerm)], merchant_id=merchant.pk)
        if what is not None:
            raise ValueNotTargetable(
                f"segment:{nested_id} targets {what}, which is not in your catalogue and is sold by too few "
                "merchants to target",
                position=_at(term.pos, ".segment"),
                found=f"segment:{term.segment_id}",
                expected=[],
                text=text,
            )


def _cycle_path(edges: dict[int, list[int]], *, start: set[int], target: int) -> list[int] | None:
    """A path of depends_on edges from one of `start` to `target`, if any (breadth first)."""
    queue = [[s] for s in sorted(start)]
    seen = set(start)
    while queue:
        path = queue.pop(0)
        if path[-1] == target:
            return path
        for nxt in edges.get(path[-1], []):
            if nxt not in seen:
                seen.add(nxt)
                queue.append([*path, nxt])
    return None


def segment_definition_node(segment: Segment) -> Node:
    """A stored definition, read from its canonical text so that errors found later name a column in it."""
    return parse(segment.definition)


# ------------------------------------------------------------------------------------------------ behaviour


def aligned_start(window: str | None, now: datetime) -> datetime | None:
    """The start of a window such as 12h or 30d: hours aligned to the start of the hour, days and weeks to the
    start of the UTC day."""
    hours = window_hours(window)
    if hours is None or window is None:
        return None
    if window.endswith("h"):
        anchor = now.replace(minute=0, second=0, microsecond=0)
    else:
        anchor = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return anchor - timedelta(hours=hours)


def window_start(term: ActionTerm, now: datetime) -> datetime | None:
    return aligned_start(term.within, now)


def _cents(amount) -> int:
    """An amount (at most two decimals, checked by the parser) in hundredths, exactly."""
    return int(amount * 100)


# An event's amount in hundredths of its currency unit: unit price paid x quantity (no price counts 0). Rounded
# to whole hundredths and summed as integers, so both databases compare amounts exactly (SQLite keeps decimals
# as floating point).
EVENT_CENTS = Cast(
    Round(
        Coalesce(F("price"), Value(Decimal(0)), output_field=DecimalField(max_digits=12, decimal_places=2))
        * Value(100),
        output_field=DecimalField(max_digits=15, decimal_places=0),
    ),
    BigIntegerField(),
) * F("quantity")


def matching_events(term: ActionTerm, *, merchant_id: int, now: datetime) -> QuerySet:
    """The events an action term looks at: type, store, product, category, brand and the `within` window."""
    events = Event.objects.filter(event_type=ACTION_EVENT_TYPES[term.action])
    if term.merchant is not None:
        events = events.filter(merchant_id=merchant_id)
    if term.product is not None:
        events = events.filter(merchant_id=merchant_id, product__merchant_id=merchant_id, product__sku=term.product)
    if term.category is not None or term.brand is not None:
        events = events.filter(product_condition(category=term.category, brand=term.brand, prefix="product__"))
    start = window_start(term, now)
    if start is not None:
        events = events.filter(occurred_at__gte=start)
    return events


def behaviour_queryset(term: ActionTerm, *, merchant_id: int, now: datetime) -> QuerySet:
    """Consumer ids (a values queryset), as SQL, with at least one matching event whose matching events meet the
    term's conditions: count, spend, average order value, first and last occurrence.

    Consumers with no matching event at all are not in it; a term that includes them (`includes_none`, such as
    max_count=0) is this set plus everyone without a matching event (see `plain_term`).
    """
    events = matching_events(term, merchant_id=merchant_id, now=now)
    low = max(term.min_count, 1)
    if low == 1 and not term.has_aggregates:
        return events.values("consumer_id")
    grouped = events.values("consumer_id").annotate(n=Count("id"))
    condition = Q(n__gte=low) if low > 1 else Q()
    if term.max_count is not None:
        condition &= Q(n__lte=term.max_count)
    if any(getattr(term, arg) is not None for arg in MONEY_ARGS):
        grouped = grouped.annotate(spend=Sum(EVENT_CENTS))
        if term.min_spend is not None:
            condition &= Q(spend__gte=_cents(term.min_spend))
        if term.max_spend is not None:
            condition &= Q(spend__lte=_cents(term.max_spend))
        # The average order value (spend / orders) compared without dividing: spend >= n x amount.
        if term.min_avg_order is not None:
            condition &= Q(spend__gte=F("n") * _cents(term.min_avg_order))
        if term.max_avg_order is not None:
            condition &= Q(spend__lte=F("n") * _cents(term.max_avg_order))
    first_start = aligned_start(term.first_within, now)
    if first_start is not None:
        grouped = grouped.annotate(first=Min("occurred_at"))
        condition &= Q(first__gte=first_start)
    last_start = aligned_start(term.last_before, now)
    if last_start is not None:
        grouped = grouped.annotate(last=Max("occurred_at"))
        condition &= Q(last__lt=last_start)
    return grouped.filter(condition).values("consumer_id")


def plain_term(term: ActionTerm) -> ActionTerm:
    """The same events with no conditions on them: consumers with at least one matching event."""
    return replace(
        term,
        min_count=1,
        max_count=None,
        min_spend=None,
        max_spend=None,
        min_avg_order=None,
        max_avg_order=None,
        first_within=None,
        last_before=None,
    )


BEHAVIOUR_GENERATION_KEY = "segments:behaviour:generation"
BEHAVIOUR_CACHE_SECONDS = 24 * 3600
_PROCESS_CACHE_SIZE = 128
_behaviour_cache: OrderedDict[str, FrozenBitMap] = OrderedDict()
_behaviour_lock = threading.Lock()


@dataclass(frozen=True)
class BehaviourVersion:
    """What every behavioural cache key depends on besides the term: the erasure generation and the events'
    high-water marks (min and max Event.id)."""

    generation: int
    low: int | None
    high: int | None


def behaviour_version() -> BehaviourVersion:
    """Read the generation and the Event id bounds (one aggregate, one cache read)."""
    bounds = Event.objects.aggregate(low=Min("id"), high=Max("id"))
    return BehaviourVersion(cache.get(BEHAVIOUR_GENERATION_KEY, 0), bounds["low"], bounds["high"])


def behaviour_cache_key(
    term: ActionTerm, *, merchant_id: int, now: datetime, version: BehaviourVersion | None = None
) -> str:
    v = version if version is not None else behaviour_version()
    starts = [aligned_start(getattr(term, arg), now) for arg in ("within", "first_within", "last_before")]
    windows = ",".join(start.isoformat() if start else "-" for start in starts)
    scope = merchant_id if term.merchant is not None or term.product is not None else "all"
    raw = f"{v.generation}|{v.low}|{v.high}|{windows}|{scope}|{to_text(term)}"
    return "segments:behaviour:" + hashlib.sha256(raw.encode()).hexdigest()


def behaviour_bitmap(
    term: ActionTerm, *, merchant_id: int, now: datetime, version: BehaviourVersion | None = None
) -> FrozenBitMap:
    """Consumers who did the action, from SQL, cached (per process and in the shared cache) until events change.

    `version` (from `behaviour_version`), when given, saves reading the bounds and generation again: one
    evaluation reads them once for all its action terms, nested segments included.
    """
    key = behaviour_cache_key(term, merchant_id=merchant_id, now=now, version=version)
    return _cached_bitmap(
        key, lambda: behaviour_queryset(term, merchant_id=merchant_id, now=now).values_list("consumer_id", flat=True)
    )


def _cached_bitmap(key: str, consumer_ids: Callable[[], QuerySet]) -> FrozenBitMap:
    """The bitmap under `key`: from this process's cache, else the shared cache, else built from the distinct
    consumer ids of the `consumer_ids()` queryset and kept in both. Every event-derived bitmap (behaviour,
    customers, value reach) is cached this way until the events change (the key holds their version)."""
    with _behaviour_lock:
        hit = _behaviour_cache.get(key)
        if hit is not None:
            _behaviour_cache.move_to_end(key)
            return hit
    shared = cache.get(key)
    if shared is not None:
        bitmap = FrozenBitMap.deserialize(shared)
    else:
        bitmap = FrozenBitMap(consumer_ids().distinct().iterator(chunk_size=20000))
        cache.set(key, bitmap.serialize(), BEHAVIOUR_CACHE_SECONDS)
    with _behaviour_lock:
        _behaviour_cache[key] = bitmap
        while len(_behaviour_cache) > _PROCESS_CACHE_SIZE:
            _behaviour_cache.popitem(last=False)
    return bitmap


def behaviour_cache_invalidate() -> None:
    """Forget every cached behavioural bitmap (after an erasure): bumping the generation changes every key."""
    try:
        cache.incr(BEHAVIOUR_GENERATION_KEY)
    except ValueError:
        cache.set(BEHAVIOUR_GENERATION_KEY, 1, None)
    with _behaviour_lock:
        _behaviour_cache.clear()


def customers_bitmap(*, merchant_id: int, version: BehaviourVersion | None = None) -> FrozenBitMap:
    """A merchant's customers (scope my_customers): consumers with any event at its store. Cached like the
    behavioural bitmaps, until the events change."""
    v = version if version is not None else behaviour_version()
    key = "segments:customers:" + hashlib.sha256(f"{v.generation}|{v.low}|{v.high}|{merchant_id}".encode()).hexdigest()
    return _cached_bitmap(
        key, lambda: customers_queryset(merchant_id=merchant_id).values_list("consumer_id", flat=True)
    )


def customers_queryset(*, merchant_id: int) -> QuerySet:
    """The SQL of a merchant's customers: consumer ids of every event at its store (any type)."""
    return Event.objects.filter(merchant_id=merchant_id).values("consumer_id")


def value_reach_bitmap(
    *, merchant_id: int, argument: str, value: str, version: BehaviourVersion | None = None
) -> FrozenBitMap:
    """Consumers with any event (view, cart, purchase, ...) on products matching a catalogue value: a category
    or brand (as actions match them) or, for `product`, the merchant's own SKU. Cached like behaviour bitmaps."""
    v = version if version is not None else behaviour_version()
    raw = f"{v.generation}|{v.low}|{v.high}|{merchant_id}|{argument}|{value}"
    key = "segments:value-reach:" + hashlib.sha256(raw.encode()).hexdigest()

    def consumer_ids() -> QuerySet:
        if argument == "product":
            events = Event.objects.filter(merchant_id=merchant_id, product__merchant_id=merchant_id, product__sku=value)
        else:
            events = Event.objects.filter(product_condition(**{argument: value}, prefix="product__"))
        return events.values_list("consumer_id", flat=True)

    return _cached_bitmap(key, consumer_ids)


def scope_check(scope: str) -> str:
    if scope not in SegmentScope.values:
        raise ValueError(f"scope must be one of {', '.join(SegmentScope.values)}")
    return scope


# ------------------------------------------------------------------------ likely_to_buy (product audiences)
# Scores come from the serving recommendation model (recommend.selectors.product_affinity): the consumers it
# was trained on, scored for the merchant's product, or the highest score over its products in the category.
# The bitmap evaluator takes them through recommend.selectors.likely_buyers (partition at the k-th score);
# the SQL oracle sorts every score itself. Both break ties at the boundary towards the lower consumer id.


def likely_product_ids(term: LikelyTerm, *, merchant_id: int) -> list[int]:
    """The merchant's own products the term names (the SKU, or every product in the category)."""
    products = Product.objects.filter(merchant_id=merchant_id)
    if term.product is not None:
        products = products.filter(sku=term.product)
    else:
        products = products.filter(product_condition(category=term.category))
    return list(products.order_by("id").values_list("id", flat=True))


def likely_terms_check(found: list[LikelyTerm], *, merchant_id: int, text: str | None = None) -> None:
    """A product or category outside the merchant's own catalogue is refused at the argument."""
    for t in found:
        if likely_product_ids(t, merchant_id=merchant_id):
            continue
        arg = "product" if t.product is not None else "category"
        value = t.product if t.product is not None else t.category
        raise SegmentSyntaxError(
            f"No {arg} '{value}' in your catalogue; likely_to_buy targets your own products and categories",
            position=t.position_of(arg),
            found=str(value),
            expected=[f"a {arg} of your catalogue"],
            text=text,
        )


def likely_bitmap(term: LikelyTerm, *, merchant_id: int) -> FrozenBitMap:
    ids = likely_buyers(
        product_ids=likely_product_ids(term, merchant_id=merchant_id), top=term.top, percent=term.percent
    )
    return FrozenBitMap(ids.tolist())


def likely_members_oracle(term: LikelyTerm, *, merchant_id: int) -> list[int]:
    """The same members by a full sort of every score (the oracle the bitmap evaluator is held to)."""
    affinity = product_affinity(product_ids=likely_product_ids(term, merchant_id=merchant_id))
    n = int(affinity.consumer_ids.size)
    if n == 0:
        return []
    k = term.top if term.top is not None else math.ceil(n * (term.percent or 0) / 100)
    order = sorted(range(n), key=lambda i: (-float(affinity.scores[i]), int(affinity.consumer_ids[i])))
    return sorted(int(affinity.consumer_ids[i]) for i in order[: min(k, n)])


# ------------------------------------------------------------------------------------------------ snapshots


_snapshot_cache: OrderedDict[tuple[int, int, datetime | None], FrozenBitMap] = OrderedDict()
# A real-time drain reads every segment an event type can move (a hundred, say) on each chunk: the cache holds
# them all, or it evicts each before its next use. A bitmap of 1M consumers is at most 128 KB.
_SNAPSHOT_CACHE_SIZE = 256
logger = logging.getLogger("dmp.segments")


class SnapshotUnreadable(Conflict):
    """A snapshot's stored members do not deserialise (damaged bytes): nothing can be computed from them until
    a refresh writes a new snapshot. A 409 at the doors; the operator finds the snapshot in the log."""

    def __init__(self, *, snapshot_id: int, segment_id: int | None) -> None:
        super().__init__(
            "This segment's members could not be read; refresh it to rebuild them.",
            code="segment_members_unreadable",
            details={"segment_id": segment_id},
        )
        self.snapshot_id = snapshot_id
        self.segment_id = segment_id


def latest_snapshot(segment_id: int) -> SegmentSnapshot | None:
    return (
        SegmentSnapshot.objects.filter(segment_id=segment_id, status=SnapshotStatus.READY)
        .defer("members")
        .order_by("-id")
        .first()
    )


def snapshot_bitmap(snapshot_id: int, size: int, stamp: datetime | None = None) -> FrozenBitMap:
    """A snapshot's members, cached per process by (id, size, computed_at): a snapshot changes only by an
    erasure, which lowers its size, and by streaming updates of a real-time segment's latest snapshot
    (segments.membership), which stamp it anew; so no process keeps serving a consumer who left.

    `stamp` is the snapshot's computed_at as the caller read it; without it, it is read here (one query).
    Raises SnapshotUnreadable (logged for the operator) when the stored bytes are not a bitmap.
    """
    if stamp is None:
        stamp = SegmentSnapshot.objects.filter(pk=snapshot_id).values_list("computed_at", flat=True).first()
    key = (snapshot_id, size, stamp)
    with _behaviour_lock:
        hit = _snapshot_cache.get(key)
        if hit is not None:
            return hit
    row = SegmentSnapshot.objects.filter(pk=snapshot_id).values_list("members", "segment_id").first()
    data, segment_id = row if row is not None else (None, None)
    try:
        bitmap = SegmentSnapshot.deserialise(data)
    except ValueError:  # what pyroaring raises for bytes that are not a serialised bitmap
        logger.error(
            "segments.snapshot_unreadable: the members of snapshot %s of segment %s could not be read; "
            "a refresh of the segment rebuilds them",
            snapshot_id,
            segment_id,
        )
        raise SnapshotUnreadable(snapshot_id=snapshot_id, segment_id=segment_id) from None
    with _behaviour_lock:
        _snapshot_cache[key] = bitmap
        while len(_snapshot_cache) > _SNAPSHOT_CACHE_SIZE:
            _snapshot_cache.popitem(last=False)
    return bitmap


def snapshot_bitmap_remember(*, snapshot_id: int, size: int, stamp: datetime, members: BitMap | FrozenBitMap) -> None:
    """Cache members just written to a snapshot under its new (id, size, stamp), so the next read in this process
    does not fetch back the bytes it wrote (a real-time segment's snapshot is rewritten on every drain chunk)."""
    with _behaviour_lock:
        _snapshot_cache[(snapshot_id, size, stamp)] = FrozenBitMap(members)
        while len(_snapshot_cache) > _SNAPSHOT_CACHE_SIZE:
            _snapshot_cache.popitem(last=False)


def snapshot_cache_clear() -> None:
    with _behaviour_lock:
        _snapshot_cache.clear()


# ------------------------------------------------------------------------------------------------ bitmap evaluator


class NestingError(SegmentSyntaxError):
    pass


def evaluate_bitmap(
    resolved: ResolvedDefinition,
    *,
    now: datetime | None = None,
    bitmaps: tuple[dict[int, FrozenBitMap], FrozenBitMap] | None = None,
    scope: str = SegmentScope.MARKETPLACE,
    _stack: tuple[int, ...] = (),
    _version: list[BehaviourVersion] | None = None,
) -> BitMap | FrozenBitMap:
    """The members (consumer ids) of a resolved expression, by bitmap algebra. Always within the live consumers,
    and with scope my_customers within the merchant's customers (consumers with any event at its store).

    `bitmaps` (tag bitmaps by tag id, and the live consumers), when given, saves loading them: bulk refreshes
    load every tag once for many segments.

    The behavioural cache version (Event id bounds and erasure generation) is read at most once per top-level
    call, when the first action term needs it, and shared with nested segments.
    """
    now = now or timezone.now()
    scope_check(scope)
    version = _version if _version is not None else []
    tag_ids = sorted(set(resolved.tag_ids.values()))
    by_tag, live = bitmaps if bitmaps is not None else tag_bitmaps(tag_ids)
    nested: dict[int, BitMap | FrozenBitMap] = {}
    for segment_id in resolved.segment_ids:
        nested[segment_id] = _nested_segment_bitmap(segment_id, resolved.merchant_id, now, _stack, version)
    actions: dict[ActionTerm, FrozenBitMap] = {}

    def leaf(term) -> BitMap | FrozenBitMap:
        if isinstance(term, TagTerm):
            return by_tag[resolved.tag_ids[(term.family, term.value)]]
        if isinstance(term, SegmentTerm):
            return nested[term.segment_id]
        if isinstance(term, LikelyTerm):
            return likely_bitmap(term, merchant_id=resolved.merchant_id)
        if term not in actions:
            if not version:
                version.append(behaviour_version())
            did = behaviour_bitmap(term, merchant_id=resolved.merchant_id, now=now, version=version[0])
            if term.includes_none:
                # max_count=0 and the like: also everyone with no matching event at all.
                anyone = behaviour_bitmap(
                    plain_term(term), merchant_id=resolved.merchant_id, now=now, version=version[0]
                )
                did = FrozenBitMap(did | (live - anyone))
            actions[term] = did
        return actions[term]

    # Every operation makes one new bitmap (of the type of its left operand) and copies nothing: the leaves are
    # the shared, cached bitmaps and are never changed.
    def walk(node: Node) -> FrozenBitMap | BitMap:
        if isinstance(node, Or):
            return BitMap.union(*(walk(o) for o in node.operands))
        if isinstance(node, And):
            # Intersect the positive operands smallest first, then subtract the negated ones: A AND NOT B is
            # A − B, which never materialises the (large) complement of B.
            positives = sorted((walk(o) for o in node.operands if not isinstance(o, Not)), key=len)
            negatives = [walk(o.operand) for o in node.operands if isinstance(o, Not)]
            result = positives[0] if positives else live
            for p in positives[1:]:
                result = result & p
                if not result:
                    return result
            for n in negatives:
                result = result - n
            return result
        if isinstance(node, Not):
            return live - walk(node.operand)
        return leaf(node)

    members = walk(resolved.node) & live
    if scope == SegmentScope.MY_CUSTOMERS:
        if not version:
            version.append(behaviour_version())
        members &= customers_bitmap(merchant_id=resolved.merchant_id, version=version[0])
    return members


def _nested_segment_bitmap(
    segment_id: int, merchant_id: int, now: datetime, stack: tuple[int, ...], version: list[BehaviourVersion]
) -> BitMap | FrozenBitMap:
    if segment_id in stack or len(stack) >= MAX_NESTING:
        raise NestingError(
            f"segment:{segment_id} includes itself through nested segments",
            position=0,
            found=f"segment:{segment_id}",
            expected=[],
        )
    snapshot = latest_snapshot(segment_id)
    if snapshot is not None and snapshot.members_kept:
        return snapshot_bitmap(snapshot.pk, snapshot.size, snapshot.computed_at)
    segment = Segment.objects.select_related("merchant").get(pk=segment_id, merchant_id=merchant_id)
    if segment.kind == SegmentKind.LOOKALIKE or not segment.definition:
        return FrozenBitMap()  # a lookalike with no snapshot yet has no members yet
    inner = definition_resolve(segment_definition_node(segment), merchant=segment.merchant, text=segment.definition)
    return evaluate_bitmap(inner, now=now, scope=segment.scope, _stack=(*stack, segment_id), _version=version)


# ------------------------------------------------------------------------------------------------ SQL evaluator


def sql_condition(resolved: ResolvedDefinition, *, now: datetime, _stack: tuple[int, ...] = ()) -> Q:
    """A Q over Consumer that selects the members, straight from ConsumerTag and Event rows."""

    def walk(node: Node) -> Q:
        if isinstance(node, Or):
            q = Q()
            for o in node.operands:
                q |= walk(o)
            return q
        if isinstance(node, And):
            q = Q()
            for o in node.operands:
                q &= walk(o)
            return q
        if isinstance(node, Not):
            return ~walk(node.operand)
        if isinstance(node, TagTerm):
            tag_id = resolved.tag_ids[(node.family, node.value)]
            return Q(pk__in=ConsumerTag.objects.filter(tag_id=tag_id).values("consumer_id"))
        if isinstance(node, ActionTerm):
            did = Q(pk__in=behaviour_queryset(node, merchant_id=resolved.merchant_id, now=now))
            if node.includes_none:
                anyone = matching_events(node, merchant_id=resolved.merchant_id, now=now).values("consumer_id")
                return did | ~Q(pk__in=anyone)
            return did

            return Q(pk__in=behaviour_queryset(node, merchant_id=resolved.merchant_id, now=now))
        if isinstance(node, LikelyTerm):
            return Q(pk__in=likely_members_oracle(node, merchant_id=resolved.merchant_id))
        return _nested_segment_condition(node.segment_id, resolved.merchant_id, now, _stack)

    return walk(resolved.node)


def _nested_segment_condition(segment_id: int, merchant_id: int, now: datetime, stack: tuple[int, ...]) -> Q:
    if segment_id in stack or len(stack) >= MAX_NESTING:
        raise NestingError(
            f"segment:{segment_id} includes itself through nested segments",
            position=0,
            found=f"segment:{segment_id}",
            expected=[],
        )
    segment = Segment.objects.select_related("merchant").get(pk=segment_id, merchant_id=merchant_id)
    if segment.kind == SegmentKind.LOOKALIKE or not segment.definition:
        snapshot = latest_snapshot(segment_id)
        members = []
        if snapshot is not None and snapshot.members_kept:
            members = list(snapshot_bitmap(snapshot.pk, snapshot.size, snapshot.computed_at))
        return Q(pk__in=members)
    inner = definition_resolve(segment_definition_node(segment), merchant=segment.merchant, text=segment.definition)
    return sql_condition(inner, now=now, _stack=(*stack, segment_id)) & _scope_condition(segment.scope, merchant_id)


def _scope_condition(scope: str, merchant_id: int) -> Q:
    if scope_check(scope) == SegmentScope.MY_CUSTOMERS:
        return Q(pk__in=customers_queryset(merchant_id=merchant_id))
    return Q()


def sql_queryset(
    resolved: ResolvedDefinition, *, now: datetime | None = None, scope: str = SegmentScope.MARKETPLACE
) -> QuerySet:
    now = now or timezone.now()
    universe = live_consumers_queryset()
    condition = sql_condition(resolved, now=now) & _scope_condition(scope, resolved.merchant_id)
    return universe.filter(condition).values_list("pk", flat=True)


def evaluate_sql(
    resolved: ResolvedDefinition, *, now: datetime | None = None, scope: str = SegmentScope.MARKETPLACE
) -> BitMap:
    return BitMap(sql_queryset(resolved, now=now, scope=scope).iterator(chunk_size=20000))


def count_sql(
    resolved: ResolvedDefinition, *, now: datetime | None = None, scope: str = SegmentScope.MARKETPLACE
) -> int:
    return sql_queryset(resolved, now=now, scope=scope).count()


__all__ = [
    "ResolvedDefinition",
    "behaviour_bitmap",
    "behaviour_cache_invalidate",
    "count_sql",
    "customers_bitmap",
    "definition_resolve",
    "evaluate_bitmap",
    "evaluate_sql",
    "sql_queryset",
]
