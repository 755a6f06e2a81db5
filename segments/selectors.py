"""Reads: a merchant's segments, their snapshots and members, and live audience estimates."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery
from pyroaring import BitMap

from merchants.models import Merchant
from privacy.models import Purpose
from privacy.release import STANDARD, canonical_subject
from privacy.services import processing_basis_require, release_counts

from .evaluation import evaluate_bitmap, latest_snapshot, snapshot_bitmap
from .language import to_json
from .models import Segment, SegmentSnapshot, SnapshotStatus
from .services import definition_compile
from .sources import estimate_bitmaps, reachable_bitmap

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


@dataclass(frozen=True)
class AudienceEstimate:
    size: dict  # a released count: {"size", "display", "hidden", "error_bound", "precision"}
    reachable: dict
    took_ms: float
    expression: str
    definition: dict[str, Any]


def audience_estimate(
    *, merchant: Merchant, expression: Any = None, definition: Any = None, precision: str = STANDARD
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
    members = evaluate_bitmap(resolved, bitmaps=(by_tag, live))
    subject = canonical_subject(to_json(resolved.node))
    size, reachable = release_counts(
        merchant_id=merchant.pk,
        subjects=[f"size:{subject}", f"reachable:{subject}"],
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
    )
