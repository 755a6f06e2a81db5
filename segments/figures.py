"""What a merchant is shown of its segments: sizes, joined/left and size history, released, never read.

Every figure leaves through the privacy layer (privacy.services.release_figures) under a subject that names what
is counted, so one segment's size is one number on the segment list, its page, its chart, the API, insights,
overlap and the dashboard:

    segment:<id>:size       the latest ready snapshot's size (and each history point's)
    segment:<id>:entered    consumers who joined at that refresh
    segment:<id>:exited     consumers who left
    segment:<id>:joined_24h   real-time segments: consumers who entered in the last 24 hours (transitions)
    segment:<id>:left_24h     and who left

The noise is keyed by the subject and the exact value, so an unchanged size reads back the same number, free; a
refresh that changes it is a new release, paid once by the first merchant view in the period (scheduled
refreshes never spend). A figure the budget cannot pay for is withheld, never shown (docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from privacy.release import PREVIEW, STANDARD, ReleasedCount
from privacy.services import release_figures

SEGMENT_PRECISION = STANDARD
HISTORY_PRECISION = PREVIEW
MEASURES = (("size", "snapshot_size"), ("entered", "snapshot_entered"), ("exited", "snapshot_exited"))


def segment_subject(segment_id: int, measure: str) -> str:
    return f"segment:{segment_id}:{measure}"


def segment_figures(
    *, merchant_id: int | None, segments: Iterable, measures: Sequence[str] = ("size", "entered", "exited")
) -> dict[int, dict[str, ReleasedCount]]:
    """{segment id: {measure: released count}} for segments annotated by segments_for_merchant.

    A segment without a ready snapshot has no figures (absent from the answer). One budget check for the page.
    """
    figures: list[tuple[str, int]] = []
    index: list[tuple[int, str]] = []
    for segment in segments:
        if getattr(segment, "snapshot_id", None) is None:
            continue
        for measure, attr in MEASURES:
            value = getattr(segment, attr, None)
            if measure in measures and value is not None:
                figures.append((segment_subject(segment.pk, measure), value))
                index.append((segment.pk, measure))
    released = release_figures(merchant_id=merchant_id, figures=figures, precision=SEGMENT_PRECISION)
    answer: dict[int, dict[str, ReleasedCount]] = {}
    for (pk, measure), count in zip(index, released, strict=True):
        answer.setdefault(pk, {})[measure] = count
    return answer


def segment_size(*, merchant_id: int | None, segment_id: int, size: int) -> ReleasedCount:
    """One segment's size (the same release as on every other page)."""
    (count,) = release_figures(
        merchant_id=merchant_id, figures=[(segment_subject(segment_id, "size"), size)], precision=SEGMENT_PRECISION
    )
    return count


TRANSITION_WINDOW_HOURS = 24


def transition_figures(*, merchant_id: int | None, segment_id: int) -> dict[str, ReleasedCount]:
    """A real-time segment's entries and exits in the last 24 hours, counted from its transitions, released.

    Counts only: which consumers moved is never shown. The window is aligned to the hour, so the exact counts
    (and with them the release) change at most once an hour plus when someone moves.
    """
    from datetime import timedelta

    from django.db.models import Count
    from django.utils import timezone

    from .models import MembershipTransition, TransitionKind

    since = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=TRANSITION_WINDOW_HOURS)
    counts = dict(
        MembershipTransition.objects.filter(segment_id=segment_id, at__gte=since)
        .values("kind")
        .annotate(n=Count("id"))
        .values_list("kind", "n")
    )
    joined, left = release_figures(
        merchant_id=merchant_id,
        figures=[
            (segment_subject(segment_id, "joined_24h"), counts.get(TransitionKind.ENTERED, 0)),
            (segment_subject(segment_id, "left_24h"), counts.get(TransitionKind.EXITED, 0)),
        ],
        precision=SEGMENT_PRECISION,
    )
    return {"joined": joined, "left": left}


def history_figures(
    *, merchant_id: int | None, segment_id: int, points: Sequence[tuple[int, int, int]]
) -> list[dict[str, ReleasedCount]]:
    """Each (size, entered, exited) point of a segment's history, oldest first, released.

    The newest point is the segment's current figures (standard precision, the number on the list and the API);
    older points are released at the preview precision (1/25 of the cost), so a chart of 60 refreshes costs
    ρ 0.009 once instead of 0.225: history shows the trend, the headline figure is precise.
    """
    if not points:
        return []
    *older, newest = points
    figures = []
    for size, entered, exited in older:
        figures += [
            (segment_subject(segment_id, "size"), size),
            (segment_subject(segment_id, "entered"), entered),
            (segment_subject(segment_id, "exited"), exited),
        ]
    coarse = release_figures(merchant_id=merchant_id, figures=figures, precision=HISTORY_PRECISION)
    precise = release_figures(
        merchant_id=merchant_id,
        figures=[
            (segment_subject(segment_id, m), v) for m, v in zip(("size", "entered", "exited"), newest, strict=True)
        ],
        precision=SEGMENT_PRECISION,
    )
    released = [*coarse, *precise]
    return [
        {"size": released[i], "entered": released[i + 1], "exited": released[i + 2]} for i in range(0, len(released), 3)
    ]
