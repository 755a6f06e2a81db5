"""Data-subject requests for segments (layer 5).

Access: the names of the segments the consumer is in now (their latest snapshots), never the rules behind
them. Erasure: the consumer's id leaves every stored snapshot (sizes adjusted) and every cached behavioural
bitmap.
"""

from __future__ import annotations

from django.db.models import Max

from privacy.subject_data import SubjectDataHandler, register

from .evaluation import SnapshotUnreadable, snapshot_bitmap
from .models import Segment, SegmentSnapshot, SnapshotStatus
from .services import snapshots_erase_consumer


def segments_access(consumer_id: int) -> dict:
    latest_ids = (
        SegmentSnapshot.objects.filter(status=SnapshotStatus.READY, members_kept=True)
        .values("segment_id")
        .annotate(latest=Max("id"))
        .values_list("latest", flat=True)
    )
    member_of: list[int] = []
    for snapshot_id, segment_id, size, stamp in SegmentSnapshot.objects.filter(pk__in=list(latest_ids)).values_list(
        "pk", "segment_id", "size", "computed_at"
    ):
        try:
            members = snapshot_bitmap(snapshot_id, size, stamp)
        except SnapshotUnreadable:  # logged for the operator; damaged bytes say nothing (an erasure drops them)
            continue
        if consumer_id in members:
            member_of.append(segment_id)
    names = sorted(Segment.objects.filter(pk__in=member_of).values_list("name", flat=True))
    return {"segments": names}


def segments_erase(consumer_id: int) -> dict[str, int]:
    return snapshots_erase_consumer(consumer_id=consumer_id)


register(SubjectDataHandler(name="segments", layer=5, access=segments_access, erase=segments_erase))
