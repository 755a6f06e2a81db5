"""What a segment looks like against the whole live population, and how two segments overlap.

Every figure a merchant sees goes through the same rules as an estimate: a count below MIN_AUDIENCE is hidden
("fewer than 100"), and counts above it are rounded to two significant figures. An insight cell whose segment
count or population count is below MIN_AUDIENCE is suppressed entirely (its share and lift would give the count
away); shares and lifts are rounded to two significant figures as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from pyroaring import BitMap

from privacy.models import Purpose
from privacy.services import processing_basis_require
from tags.models import Tag

from .models import Segment
from .selectors import segment_latest_snapshot, snapshot_members
from .sources import live_consumers_bitmap, public_count, tag_bitmaps


class SegmentNotComputed(Exception):
    """The segment has no ready snapshot yet."""


def round_ratio(x: float, figures: int = 2) -> float:
    if x == 0 or not math.isfinite(x):
        return 0.0
    return round(x, figures - 1 - math.floor(math.log10(abs(x))))


def _members(segment: Segment) -> BitMap:
    snapshot = segment_latest_snapshot(segment_id=segment.pk)
    if snapshot is None or not snapshot.members_kept:
        raise SegmentNotComputed(f"Segment {segment.name!r} has not been computed yet; refresh it first.")
    return snapshot_members(snapshot)


@dataclass(frozen=True)
class InsightCell:
    value: str
    label: str
    suppressed: bool
    segment_count: dict | None = None
    segment_share: float | None = None
    population_count: dict | None = None
    population_share: float | None = None
    lift: float | None = None

    def as_dict(self) -> dict:
        data = {"value": self.value, "label": self.label, "suppressed": self.suppressed}
        if not self.suppressed:
            data.update(
                segment_count=self.segment_count,
                segment_share=self.segment_share,
                population_count=self.population_count,
                population_share=self.population_share,
                lift=self.lift,
            )
        return data


def segment_insights(*, segment: Segment) -> dict:
    """For each tag family: the segment's distribution against the live population, with lift."""
    processing_basis_require(purpose=Purpose.TAGGING)
    members = _members(segment)
    tags = list(Tag.objects.order_by("family", "value").values_list("id", "family", "value", "label"))
    by_tag, live = tag_bitmaps([t[0] for t in tags])  # the tags and the live consumers, in one state query
    members = members & live
    minimum = settings.MIN_AUDIENCE
    size, population = len(members), len(live)
    result: dict[str, Any] = {"segment_id": segment.pk, "size": public_count(size), "families": []}
    if size < minimum or population == 0:
        return result  # nothing about a hidden audience is shown, not even its make-up
    families: dict[str, list[InsightCell]] = {}
    for tag_id, family, value, label in tags:
        bitmap = by_tag[tag_id]
        in_segment = members.intersection_cardinality(bitmap)
        in_population = live.intersection_cardinality(bitmap)
        if in_segment < minimum or in_population < minimum:
            cell = InsightCell(value=value, label=label or value, suppressed=True)
        else:
            segment_share = in_segment / size
            population_share = in_population / population
            cell = InsightCell(
                value=value,
                label=label or value,
                suppressed=False,
                segment_count=public_count(in_segment),
                segment_share=round_ratio(segment_share),
                population_count=public_count(in_population),
                population_share=round_ratio(population_share),
                lift=round_ratio(segment_share / population_share),
            )
        families.setdefault(family, []).append(cell)
    for family, cells in families.items():
        cells.sort(key=lambda c: (c.suppressed, -(c.lift or 0), c.value))
        result["families"].append({"family": family, "values": [c.as_dict() for c in cells]})
    return result


def segment_overlap(*, segment: Segment, other: Segment) -> dict:
    """Sizes of A, B and A∩B, and the Jaccard index, with the same hiding rules.

    The union is not shown: with A and B it would give away an intersection that is hidden.
    """
    processing_basis_require(purpose=Purpose.TAGGING)
    live = live_consumers_bitmap()
    a, b = _members(segment) & live, _members(other) & live
    both = a.intersection_cardinality(b)
    either = a.union_cardinality(b)
    hidden = both < settings.MIN_AUDIENCE
    return {
        "segment_id": segment.pk,
        "other_id": other.pk,
        "size": public_count(len(a)),
        "other_size": public_count(len(b)),
        "both": public_count(both),
        "jaccard": None if hidden or either == 0 else round_ratio(both / either),
    }
