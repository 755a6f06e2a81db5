"""The live-consumers bitmap: every consumer now, the universe that NOT is taken against.

Tagging rebuilds it in full. Between runs, ingestion creates consumers and
erasure deletes them; erasure removes the id itself (tags.subject_data), and new
consumers are picked up on read the way consent changes are: the bitmap's
source mark is the latest Consumer.created_at it includes, and a read adds the
consumers created since a little before the mark (an index on created_at, added
by a tags migration, makes that a short range scan). created_at is stamped
before the inserting transaction commits (on PostgreSQL, at its start), hence
the overlap; adding an id twice is harmless. Once the overlap after the mark
has passed and been read, reads of that version ask only for consumers newer
than the mark (tags.bitmaps, "change windows").
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone
from pyroaring import BitMap, FrozenBitMap

from consumers.models import Consumer

from .bitmaps import (
    LIVE_CONSUMERS_KEY,
    MarkedBitmap,
    bitmap_from_ids,
    bitmap_load_marked,
    bitmap_store,
    bitmap_store_if_version,
    change_window_checked,
    change_window_floor,
    db_datetime,
    fresh_on_read,
)
from .inputs import consumer_ids_all

# More new consumers than this in the change window (a big import): read all ids in one packed query instead.
REBUILD_ABOVE = 200_000


def _live_scan() -> tuple[datetime | None, BitMap]:
    """Every consumer id now, and the newest creation stamp among them (the mark)."""
    mark = Consumer.objects.aggregate(mark=Max("created_at"))["mark"]
    return mark, bitmap_from_ids(consumer_ids_all())


def live_bitmap_rebuild() -> BitMap:
    """Every consumer id now, stored with its mark. Returns the bitmap."""
    mark, live = _live_scan()
    bitmap_store(key=LIVE_CONSUMERS_KEY, bitmap=live, source_mark=mark)
    return live


def live_bitmap_current() -> FrozenBitMap:
    """The stored bitmap with every consumer created since its mark added."""
    return live_bitmap_refresh(bitmap_load_marked(LIVE_CONSUMERS_KEY))


def live_bitmap_refresh(stored: MarkedBitmap) -> FrozenBitMap:
    """stored (as just read) brought up to date: consumers created since its mark added.

    Writes only on a change: every write is a new version, and a new version makes every other process read
    its change window again.
    """
    checked_at = timezone.now()
    if stored.version is None or stored.source_mark is None:
        return FrozenBitMap(live_bitmap_rebuild())
    floor = change_window_floor(LIVE_CONSUMERS_KEY, version=stored.version, source_mark=stored.source_mark)
    rows = _created_since(floor, limit=REBUILD_ABOVE + 1)
    if len(rows) > REBUILD_ABOVE:
        mark, live = _live_scan()
        unchanged = mark == stored.source_mark and live == stored.bitmap
    else:
        added = BitMap(consumer_id for consumer_id, _ in rows)
        mark = max([stored.source_mark, *(created_at for _, created_at in rows)])
        unchanged = mark == stored.source_mark and added.issubset(stored.bitmap)
        live = None if unchanged else BitMap(stored.bitmap) | added
    if unchanged:
        change_window_checked(LIVE_CONSUMERS_KEY, version=stored.version, source_mark=mark, checked_at=checked_at)
        return stored.bitmap
    version = bitmap_store_if_version(
        key=LIVE_CONSUMERS_KEY, bitmap=live, expected_version=stored.version, source_mark=mark
    )
    transaction.on_commit(
        partial(change_window_checked, LIVE_CONSUMERS_KEY, version=version, source_mark=mark, checked_at=checked_at)
    )
    return FrozenBitMap(live)


def _created_since(floor, *, limit: int) -> list[tuple[int, object]]:
    """(id, created_at) of up to limit consumers created after floor. Plain SQL: every estimate runs it."""
    table = connection.ops.quote_name(Consumer._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, created_at FROM {table} WHERE created_at > %s LIMIT %s",  # noqa: S608
            [connection.ops.adapt_datetimefield_value(floor), limit],
        )
        return [(consumer_id, db_datetime(created_at)) for consumer_id, created_at in cursor.fetchall()]


fresh_on_read(LIVE_CONSUMERS_KEY, live_bitmap_refresh)
