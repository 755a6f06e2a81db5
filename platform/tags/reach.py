"""How a tag's reach is shown to merchants: released through the privacy layer, never read.

Every page and endpoint that shows a tag's reach (the catalogue API, the tag explorer, the builder's catalogue,
the population column of segment insights) releases it under one subject, `tag:<family>:<value>:reach`, so one
tag shows one number everywhere. The catalogue lists every tag at once, so reach is released at the preview
precision (1/25 of a standard count's cost; a catalogue of a hundred tags costs ρ 0.005, once per tagging run
that changes a count, free on every repeat). See docs/privacy.md, "What is released where".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from privacy.release import PREVIEW, ReleasedCount
from privacy.services import release_figures

REACH_PRECISION = PREVIEW


class _Tag(Protocol):
    family: str
    value: str
    consumer_count: int


def tag_reach_subject(family: str, value: str) -> str:
    """What a tag's reach counts: the consumers holding family:value."""
    return f"tag:{family}:{value}:reach"


def released_reach(*, merchant_id: int | None, tags: Iterable[_Tag], charge: bool = True) -> list[ReleasedCount]:
    """Each tag's reach as the merchant may see it (in the order given)."""
    tags = list(tags)
    return release_figures(
        merchant_id=merchant_id,
        figures=[(tag_reach_subject(t.family, t.value), t.consumer_count) for t in tags],
        precision=REACH_PRECISION,
        charge=charge,
    )
