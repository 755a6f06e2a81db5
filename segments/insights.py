"""What a segment looks like against the whole live population, and how two segments overlap.

Every figure a merchant sees is released through the privacy layer, and shares, lifts and the Jaccard index are
computed from released counts only (privacy.release.released_rate / released_lift / released_jaccard):

    segment:<id>:size                      the segment's size, as on the list (standard)
    population:live                        the live population, as on the dashboard (standard)
    segment:<id>:tag:<family>:<value>      members holding the tag (preview: a page has one per tag)
    tag:<family>:<value>:reach             consumers holding it, as in the tag catalogue (preview)
    overlap:segment:<a>:segment:<b>:both   members of both, a < b (standard)

A cell whose released segment or population count is suppressed is suppressed entirely; a segment whose released
size is suppressed shows nothing of its make-up. Shares and lifts are rounded to two significant figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from privacy.models import Purpose
from privacy.release import PREVIEW, STANDARD, released_jaccard, released_lift, released_rate
from privacy.services import processing_basis_require, release_figures
from tags.models import Tag
from tags.reach import REACH_PRECISION, tag_reach_subject
from tags.rules import tag_visible_to

from .figures import segment_subject
from .models import Segment
from .selectors import segment_latest_snapshot, snapshot_members
from .sources import live_consumers_bitmap, tag_bitmaps


class SegmentNotComputed(Exception):
    """The segment has no ready snapshot yet."""


def round_ratio(x: float, figures: int = 2) -> float:
    if x == 0 or not math.isfinite(x):
        return 0.0
    return round(x, figures - 1 - math.floor(math.log10(abs(x))))


POPULATION_SUBJECT = "population:live"


def _snapshot(segment: Segment):
    snapshot = segment_latest_snapshot(segment_id=segment.pk)
    if snapshot is None or not snapshot.members_kept:
        raise SegmentNotComputed(f"Segment {segment.name!r} has not been computed yet; refresh it first.")
    return snapshot


def _ratio(x: float | None) -> float | None:
    return None if x is None else round_ratio(x)


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


def segment_insights(*, segment: Segment, merchant_id: int | None) -> dict:
    """For each tag family: the segment's distribution against the live population, with lift, all released."""
    processing_basis_require(purpose=Purpose.TAGGING)
    snapshot = _snapshot(segment)
    slug = segment.merchant.slug
    tags = [  # a merchant-scoped family (a store's own propensity) shows only this merchant's values
        t
        for t in Tag.objects.order_by("family", "value").values_list("id", "family", "value", "label")
        if tag_visible_to(family=t[1], value=t[2], merchant_slug=slug)
    ]
    by_tag, live = tag_bitmaps([t[0] for t in tags])  # the tags and the live consumers, in one state query
    members = snapshot_members(snapshot) & live
    size, population = release_figures(
        merchant_id=merchant_id,
        figures=[(segment_subject(segment.pk, "size"), snapshot.size), (POPULATION_SUBJECT, len(live))],
        precision=STANDARD,
    )
    result: dict[str, Any] = {"segment_id": segment.pk, "size": size.public(), "families": []}
    if size.suppressed or population.suppressed:
        return result  # nothing about a hidden audience is shown, not even its make-up
    cells = release_figures(
        merchant_id=merchant_id,
        figures=[
            (f"{segment_subject(segment.pk, 'tag')}:{family}:{value}", members.intersection_cardinality(by_tag[tid]))
            for tid, family, value, _ in tags
        ],
        precision=PREVIEW,
    )
    reach = release_figures(
        merchant_id=merchant_id,
        figures=[
            (tag_reach_subject(family, value), live.intersection_cardinality(by_tag[tid]))
            for tid, family, value, _ in tags
        ],
        precision=REACH_PRECISION,
    )
    families: dict[str, list[InsightCell]] = {}
    for (_, family, value, label), in_segment, in_population in zip(tags, cells, reach, strict=True):
        if in_segment.suppressed or in_population.suppressed:
            cell = InsightCell(value=value, label=label or value, suppressed=True)
        else:
            cell = InsightCell(
                value=value,
                label=label or value,
                suppressed=False,
                segment_count=in_segment.public(),
                segment_share=_ratio(released_rate(in_segment, size)),
                population_count=in_population.public(),
                population_share=_ratio(released_rate(in_population, population)),
                lift=_ratio(
                    released_lift(
                        segment_count=in_segment,
                        segment_size=size,
                        population_count=in_population,
                        population_size=population,
                    )
                ),
            )
        families.setdefault(family, []).append(cell)
    for family, family_cells in families.items():
        family_cells.sort(key=lambda c: (c.suppressed, -(c.lift or 0), c.value))
        result["families"].append({"family": family, "values": [c.as_dict() for c in family_cells]})
    return result


def overlap_subject(segment_id: int, other_id: int) -> str:
    low, high = sorted((segment_id, other_id))
    return f"overlap:segment:{low}:segment:{high}:both"


def segment_overlap(*, segment: Segment, other: Segment, merchant_id: int | None) -> dict:
    """Sizes of A, B and A∩B, and the Jaccard index from those three released counts.

    The sizes are the segments' released sizes (the numbers on the list); the union is not shown.
    """
    processing_basis_require(purpose=Purpose.TAGGING)
    live = live_consumers_bitmap()
    first, second = _snapshot(segment), _snapshot(other)
    both = (snapshot_members(first) & live).intersection_cardinality(snapshot_members(second) & live)
    size, other_size, both_count = release_figures(
        merchant_id=merchant_id,
        figures=[
            (segment_subject(segment.pk, "size"), first.size),
            (segment_subject(other.pk, "size"), second.size),
            (overlap_subject(segment.pk, other.pk), both),
        ],
        precision=STANDARD,
    )
    jaccard = released_jaccard(size=size, other_size=other_size, both=both_count)
    return {
        "segment_id": segment.pk,
        "other_id": other.pk,
        "size": size.public(),
        "other_size": other_size.public(),
        "both": both_count.public(),
        "jaccard": _ratio(jaccard),
    }
