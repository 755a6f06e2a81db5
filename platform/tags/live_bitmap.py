"""The live-consumers bitmap: every consumer now, the universe that NOT is taken against.

Tagging rebuilds it in full. Between runs, ingestion creates consumers and
erasure deletes them; erasure removes the id itself (tags.subject_data), and new
consumers are picked up on read the way consent changes are: the bitmap's
source mark is the latest Consumer.created_at it includes, and a read adds the
consumers created since a little before the mark (an index on created_at, added
by a tags migration, makes that a short range scan). created_at is stamped
before the inserting transaction commits (on PostgreSQL, at its start), hence
the overlap; adding an id twice is harmless.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Max
from pyroaring import BitMap, FrozenBitMap

from consumers.models import Consumer

from .bitmaps import (
    LIVE_CONSUMERS_KEY,
    bitmap_from_ids,
    bitmap_load_marked,
    bitmap_store,
    bitmap_store_if_version,
    fresh_on_read,
)
from .inputs import consumer_ids_all

OVERLAP = timedelta(seconds=getattr(settings, "FRESH_BITMAP_OVERLAP_SECONDS", 120))
# More new consumers than this since the mark (a big import): read all ids in one packed query instead.
REBUILD_ABOVE = 200_000


def live_bitmap_rebuild() -> BitMap:
    """Every consumer id now, stored with its mark. Returns the bitmap."""
    mark = Consumer.objects.aggregate(mark=Max("created_at"))["mark"]
    live = bitmap_from_ids(consumer_ids_all())
    bitmap_store(key=LIVE_CONSUMERS_KEY, bitmap=live, source_mark=mark)
    return live


def live_bitmap_current() -> FrozenBitMap:
    """The stored bitmap with every consumer created since its mark added."""
    stored = bitmap_load_marked(LIVE_CONSUMERS_KEY)
    if stored.version is None or stored.source_mark is None:
        return FrozenBitMap(live_bitmap_rebuild())
    recent = Consumer.objects.filter(created_at__gt=stored.source_mark - OVERLAP)
    rows = list(recent.values_list("id", "created_at")[: REBUILD_ABOVE + 1])
    if not rows:
        return stored.bitmap
    if len(rows) > REBUILD_ABOVE:
        return FrozenBitMap(live_bitmap_rebuild())
    added = BitMap(consumer_id for consumer_id, _ in rows)
    mark = max(stored.source_mark, max(created_at for _, created_at in rows))
    if added.issubset(stored.bitmap) and mark == stored.source_mark:
        return stored.bitmap
    updated = BitMap(stored.bitmap) | added
    bitmap_store_if_version(key=LIVE_CONSUMERS_KEY, bitmap=updated, expected_version=stored.version, source_mark=mark)
    return FrozenBitMap(updated)


fresh_on_read(LIVE_CONSUMERS_KEY, live_bitmap_current)
