"""Reads: a merchant's segments, their snapshots and members, and live audience estimates."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.db.models import OuterRef, Q, QuerySet, Subquery
from pyroaring import BitMap, FrozenBitMap

from consumers.models import Product
from merchants.models import Merchant
from privacy.models import Purpose
from privacy.release import PREVIEW, STANDARD, ReleasedCount, canonical_subject
from privacy.services import processing_basis_require, release_counts, release_figures
from tags.reach import REACH_PRECISION, released_reach, tag_reach_subject

from .evaluation import (
    behaviour_version,
    customers_bitmap,
    evaluate_bitmap,
    latest_snapshot,
    snapshot_bitmap,
    value_reach_bitmap,
)
from .language import to_json
from .models import Segment, SegmentScope, SegmentSnapshot, SnapshotStatus
from .services import CAMPAIGN_RELATIONS, definition_compile
from .sources import estimate_bitmaps, reachable_bitmap, tag_bitmaps
from .targeting import MAX_SUGGESTIONS, TARGETABLE_ARGS, targetable_values

ESTIMATE_PURPOSE = Purpose.TAGGING


def segment_latest_snapshot(*, segment_id: int) -> SegmentSnapshot | None:
    """The newest ready snapshot (members not loaded until asked for with snapshot_members)."""
    return latest_snapshot(segment_id)


def snapshot_members(snapshot: SegmentSnapshot) -> BitMap:
    """The consumer ids in a snapshot: a copy the caller may change (the per-process cache keeps its own)."""
    return BitMap(snapshot_bitmap(snapshot.pk, snapshot.size, snapshot.computed_at))


def segments_for_merchant(merchant: Merchant | int) -> QuerySet[Segment]:
    """The merchant's segments with their latest ready snapshot's figures (one query, no N+1)."""
    latest = SegmentSnapshot.objects.filter(segment_id=OuterRef("pk"), status=SnapshotStatus.READY).order_by("-id")
    return (
        Segment.objects.for_merchant(merchant)
        .select_related("merchant", "seed", "schedule__crontab")
        .annotate(
            snapshot_id=Subquery(latest.values("pk")[:1]),
            snapshot_size=Subquery(latest.values("size")[:1]),
            snapshot_entered=Subquery(latest.values("entered")[:1]),
            snapshot_exited=Subquery(latest.values("exited")[:1]),
            snapshot_computed_at=Subquery(latest.values("computed_at")[:1]),
        )
        .order_by("name", "pk")
    )


def segments_find(
    *, merchant: Merchant | int, text: str = "", kind: str = "", status: str = "", refresh_policy: str = ""
) -> QuerySet[Segment]:
    """The merchant's segments (as segments_for_merchant) whose name or description contains `text` (any case),
    of a kind, status and refresh policy; an empty argument does not filter."""
    segments = segments_for_merchant(merchant)
    if text:
        segments = segments.filter(Q(name__icontains=text) | Q(description__icontains=text))
    if kind:
        segments = segments.filter(kind=kind)
    if status:
        segments = segments.filter(status=status)
    if refresh_policy:
        segments = segments.filter(refresh_policy=refresh_policy)
    return segments


@dataclass(frozen=True)
class User:
    """Something that uses a segment: its id and name (a campaign, a lookalike or another segment)."""

    id: int
    name: str


@dataclass(frozen=True)
class UsedBy:
    """What uses a segment: campaigns that include or exclude it, lookalikes seeded from it, and segments that
    name it as segment:ID. While any of these exists the segment cannot be deleted (segment_delete)."""

    campaigns: list[User]
    lookalikes: list[User]
    segments: list[User]

    def __bool__(self) -> bool:
        return bool(self.campaigns or self.lookalikes or self.segments)

    @property
    def count(self) -> int:
        return len(self.campaigns) + len(self.lookalikes) + len(self.segments)

    def as_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {
            kind: [{"id": user.id, "name": user.name} for user in users]
            for kind, users in (
                ("campaigns", self.campaigns),
                ("lookalikes", self.lookalikes),
                ("segments", self.segments),
            )
        }


def segments_used_by(*, segment_ids: list[int]) -> dict[int, UsedBy]:
    """What uses each of the segments (one query per kind of user, however many segments), by name."""
    found: dict[str, dict[int, set[tuple[int, str]]]] = {
        "campaigns": {pk: set() for pk in segment_ids},
        "lookalikes": {pk: set() for pk in segment_ids},
        "segments": {pk: set() for pk in segment_ids},
    }
    if segment_ids:
        for relation in CAMPAIGN_RELATIONS:
            rows = Segment.objects.filter(pk__in=segment_ids, **{f"{relation}__isnull": False}).values_list(
                "pk", f"{relation}__pk", f"{relation}__name"
            )
            for pk, user_id, user_name in rows:
                found["campaigns"][pk].add((user_id, user_name))
        for seed_id, user_id, user_name in Segment.objects.filter(seed_id__in=segment_ids).values_list(
            "seed_id", "pk", "name"
        ):
            found["lookalikes"][seed_id].add((user_id, user_name))
        through = Segment.depends_on.through.objects.filter(to_segment_id__in=segment_ids)
        for pk, user_id, user_name in through.values_list("to_segment_id", "from_segment_id", "from_segment__name"):
            found["segments"][pk].add((user_id, user_name))

    def users(kind: str, pk: int) -> list[User]:
        return [User(id=i, name=n) for i, n in sorted(found[kind][pk], key=lambda row: (row[1].lower(), row[0]))]

    return {
        pk: UsedBy(campaigns=users("campaigns", pk), lookalikes=users("lookalikes", pk), segments=users("segments", pk))
        for pk in segment_ids
    }


def segment_used_by(*, segment: Segment) -> UsedBy:
    """What uses one segment (segments_used_by for one)."""
    return segments_used_by(segment_ids=[segment.pk])[segment.pk]


@dataclass(frozen=True)
class AudienceEstimate:
    size: dict  # a released count: {"size", "display", "hidden", "error_bound", "precision"}
    reachable: dict
    took_ms: float
    expression: str
    scope: str
    definition: dict[str, Any]


@dataclass(frozen=True)
class ValueSuggestion:
    value: str  # what to write in the action (a category, a brand, a SKU)
    label: str  # what to show (a product's title; the value itself otherwise)
    reach: dict  # released: consumers with any event on it, in the scope


SUGGESTED_ARGS = (*TARGETABLE_ARGS, "product")


def value_reach_subject(*, argument: str, value: str, merchant_id: int, scope: str) -> str:
    """What a suggestion's reach counts. A category or brand is the marketplace's (one number for every merchant
    that sees it, `value:<argument>:<value>:reach`); a product is one merchant's (`product:<merchant>:<sku>:reach`).
    In scope my_customers both carry the scope and the merchant."""
    if argument == "product":
        subject = f"product:{merchant_id}:{value}:reach"
    else:
        subject = f"value:{argument}:{value.casefold()}:reach"
    return scoped_subject(subject, scope=scope, merchant_id=merchant_id)


def action_value_suggestions(
    *, merchant_id: int, argument: str, prefix: str = "", limit: int = 20, scope: str = SegmentScope.MARKETPLACE
) -> list[ValueSuggestion]:
    """Values the merchant may name in an action's `argument` starting with `prefix`, each with its reach
    released at the preview precision (never exact): categories and brands you may target
    (segments.targeting), or your own products by SKU or title."""
    limit = max(1, min(int(limit), MAX_SUGGESTIONS))
    if argument == "product":
        rows = list(
            Product.objects.filter(merchant_id=merchant_id)
            .filter(Q(sku__istartswith=prefix) | Q(title__istartswith=prefix))
            .order_by("sku")
            .values_list("sku", "title")[:limit]
        )
        pairs = [(sku, title or sku) for sku, title in rows]
    else:
        pairs = [
            (value, value)
            for value in targetable_values(merchant_id=merchant_id, argument=argument, prefix=prefix, limit=limit)
        ]
    if not pairs:
        return []
    version = behaviour_version()
    customers = (
        customers_bitmap(merchant_id=merchant_id, version=version) if scope == SegmentScope.MY_CUSTOMERS else None
    )
    figures = []
    for value, _label in pairs:
        reach = value_reach_bitmap(merchant_id=merchant_id, argument=argument, value=value, version=version)
        exact = len(reach) if customers is None else reach.intersection_cardinality(customers)
        subject = value_reach_subject(argument=argument, value=value, merchant_id=merchant_id, scope=scope)
        figures.append((subject, exact))
    released = release_figures(merchant_id=merchant_id, figures=figures, precision=PREVIEW)
    return [
        ValueSuggestion(value=value, label=label, reach=count.public())
        for (value, label), count in zip(pairs, released, strict=True)
    ]


def scope_customers(*, merchant_id: int, scope: str) -> FrozenBitMap | None:
    """The merchant's customers when the scope is my_customers, else None (the whole marketplace)."""
    return customers_bitmap(merchant_id=merchant_id) if scope == SegmentScope.MY_CUSTOMERS else None


def tag_reach_in_scope(*, merchant_id: int, tags: list, scope: str) -> list[ReleasedCount]:
    """Each tag's reach as the merchant may see it in the scope: the marketplace's is tags.reach's (one number
    everywhere, `tag:<f>:<v>:reach`); among the merchant's customers it is the tag's bitmap intersected with
    them, released as `tag:<f>:<v>:reach:my_customers:<merchant>` at the same (preview) precision."""
    customers = scope_customers(merchant_id=merchant_id, scope=scope)
    if customers is None:
        return released_reach(merchant_id=merchant_id, tags=tags)
    by_tag, _live = tag_bitmaps(sorted({tag.tag_id for tag in tags}), with_live=False)
    figures = [
        (
            scoped_subject(tag_reach_subject(tag.family, tag.value), scope=scope, merchant_id=merchant_id),
            by_tag[tag.tag_id].intersection_cardinality(customers),
        )
        for tag in tags
    ]
    return release_figures(merchant_id=merchant_id, figures=figures, precision=REACH_PRECISION)


def population_in_scope(*, merchant_id: int, scope: str, live: FrozenBitMap, reachable: FrozenBitMap) -> tuple:
    """(population, reachable population) released in the scope; the marketplace's under `population:live` and
    `population:reachable`, the merchant's customers' with the scope and merchant appended."""
    customers = scope_customers(merchant_id=merchant_id, scope=scope)
    members = live if customers is None else live & customers
    population, reachable_count = release_figures(
        merchant_id=merchant_id,
        figures=[
            (scoped_subject("population:live", scope=scope, merchant_id=merchant_id), len(members)),
            (
                scoped_subject("population:reachable", scope=scope, merchant_id=merchant_id),
                members.intersection_cardinality(reachable),
            ),
        ],
        precision=STANDARD,
    )
    return population, reachable_count


def scoped_subject(subject: str, *, scope: str, merchant_id: int) -> str:
    """A released subject for a count in a scope: the marketplace's as it is, "my customers" with the scope and
    the merchant in it, so the two numbers never share a noise key (tag:<f>:<v>:reach:my_customers:<merchant>)."""
    if scope == SegmentScope.MY_CUSTOMERS:
        return f"{subject}:{SegmentScope.MY_CUSTOMERS}:{merchant_id}"
    return subject


def audience_estimate(
    *,
    merchant: Merchant,
    expression: Any = None,
    definition: Any = None,
    precision: str = STANDARD,
    scope: str = SegmentScope.MARKETPLACE,
) -> AudienceEstimate:
    """How many live consumers match, and how many of those a message may reach (privacy.messaging's rule: express
    direct-marketing consent, no suppression, not a minor unless officers allow it; without an offer).

    Both counts leave through the release layer (privacy.services.release_counts): noisy with the precision's
    scale, keyed by the question in canonical form and the exact value (so the text and JSON forms and
    reorderings of one question get the same numbers, and different questions independent noise), suppressed
    after the noise, and paid for from the merchant's privacy budget the first time each set is released in the
    period. Raises InvalidDefinition (400, with the position) for a bad expression, ProcessingNotPermitted when
    no tagging activity is approved, and PrivacyBudgetExhausted when the budget cannot pay for a new release.
    """
    started = time.perf_counter()
    resolved = definition_compile(merchant=merchant, expression=expression, definition=definition)
    processing_basis_require(purpose=ESTIMATE_PURPOSE)
    by_tag, live, consent = estimate_bitmaps(sorted(set(resolved.tag_ids.values())))
    members = evaluate_bitmap(resolved, bitmaps=(by_tag, live), scope=scope)
    subject = canonical_subject(to_json(resolved.node))
    size, reachable = release_counts(
        merchant_id=merchant.pk,
        subjects=[
            scoped_subject(f"size:{subject}", scope=scope, merchant_id=merchant.pk),
            scoped_subject(f"reachable:{subject}", scope=scope, merchant_id=merchant.pk),
        ],
        counts=[len(members), members.intersection_cardinality(reachable_bitmap(consent=consent, exact=False))],
        precision=precision,
    )
    took_ms = (time.perf_counter() - started) * 1000
    return AudienceEstimate(
        size=size.public(),
        reachable=reachable.public(),
        took_ms=round(took_ms, 3),
        expression=resolved.text,
        definition=to_json(resolved.node),
        scope=scope,
    )
