"""The bitmap index: one Roaring bitmap of consumer ids per tag, for all live consumers, and for current
direct-marketing consent.

Bitmaps are stored in the database (StoredBitmap) and cached per process by
(key, version): a reader asks for the current versions of the keys it needs in
one query and reloads only what changed. Writers bump the version in the same
transaction as the rows the bitmap was built from.
"""

from __future__ import annotations

import array
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from pyroaring import BitMap, FrozenBitMap

from .models import StoredBitmap

LIVE_CONSUMERS_KEY = "consumers:live"
DIRECT_MARKETING_CONSENT_KEY = "consent:direct_marketing"


def tag_key(tag_id: int) -> str:
    return f"tag:{tag_id}"


_cache: dict[str, tuple[int, FrozenBitMap]] = {}
_cache_lock = threading.Lock()

# Bitmaps derived from tables that change between tagging runs (live consumers, consent) are brought up
# to date on read: loading one of these keys goes through its refresher (a cheap check, a write only when
# something changed), whichever function the reader goes through.
_refreshers: dict[str, Callable[[MarkedBitmap], FrozenBitMap]] = {}


def fresh_on_read(key: str, refresh: Callable[[MarkedBitmap], FrozenBitMap]) -> None:
    """Register refresh(stored) to give key's current bitmap, from what is stored, in bitmaps_load and bitmap_load."""
    _refreshers[key] = refresh


def bitmap_from_ids(ids: np.ndarray | Iterable[int]) -> BitMap:
    """A bitmap of consumer ids. Ids are 32-bit in the index; numpy arrays take the fast path."""
    if isinstance(ids, np.ndarray):
        if ids.size and (ids.min() < 0 or ids.max() > 0xFFFFFFFF):
            raise ValueError("consumer ids must fit in 32 bits to enter the bitmap index")
        buffer = array.array("I")
        buffer.frombytes(np.ascontiguousarray(ids, dtype=np.uint32).tobytes())
        return BitMap(buffer)
    return BitMap(ids)


def bitmap_ids(bitmap: BitMap | FrozenBitMap) -> np.ndarray:
    """The ids in a bitmap as a sorted uint32 array."""
    return np.frombuffer(bitmap.to_array(), dtype=np.uint32)


def _serialise(bitmap: BitMap | FrozenBitMap) -> bytes:
    return bytes(bitmap.serialize())


def _remember(key: str, version: int, bitmap: BitMap | FrozenBitMap) -> None:
    frozen = bitmap if isinstance(bitmap, FrozenBitMap) else FrozenBitMap(bitmap)
    with _cache_lock:
        _cache[key] = (version, frozen)


def bitmap_store(*, key: str, bitmap: BitMap | FrozenBitMap, source_mark: datetime | None = None) -> int:
    """Save a bitmap under key, bumping its version. Returns the new version.

    Runs inside the caller's transaction when there is one, so a bitmap and the
    rows it was built from commit (or roll back) together.
    """
    data = _serialise(bitmap)
    fields = {"data": data, "cardinality": len(bitmap), "source_mark": source_mark}
    with transaction.atomic():
        updated = StoredBitmap.objects.filter(key=key).update(**fields, version=F("version") + 1)
        if not updated:
            StoredBitmap.objects.create(key=key, version=1, **fields)
        return StoredBitmap.objects.filter(key=key).values_list("version", flat=True).get()


def bitmap_store_if_version(
    *, key: str, bitmap: BitMap | FrozenBitMap, expected_version: int | None, source_mark: datetime | None
) -> int | None:
    """Compare-and-set: store only if the stored version is still expected_version (None: not stored yet).

    Returns the new version, or None when another writer got there first (the
    caller's bitmap is then simply not saved; the next reader refreshes again).
    """
    fields = {"data": _serialise(bitmap), "cardinality": len(bitmap), "source_mark": source_mark}
    with transaction.atomic():
        if expected_version is None:
            if StoredBitmap.objects.filter(key=key).exists():
                return None
            StoredBitmap.objects.create(key=key, version=1, **fields)
            new_version = 1
        else:
            updated = StoredBitmap.objects.filter(key=key, version=expected_version).update(
                **fields, version=expected_version + 1
            )
            if not updated:
                return None
            new_version = expected_version + 1
    transaction.on_commit(lambda: _remember(key, new_version, bitmap))
    return new_version


def _states(keys: list[str]) -> dict[str, tuple[int, datetime | None]]:
    """(version, source mark) of each stored key, in one query.

    Every estimate runs this, so it is plain SQL: the ORM spent more time building the query than PostgreSQL
    spent answering it.
    """
    if not keys:
        return {}
    table = connection.ops.quote_name(StoredBitmap._meta.db_table)
    placeholders = ", ".join(["%s"] * len(keys))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, version, source_mark FROM {table} WHERE key IN ({placeholders})", keys)  # noqa: S608
        return {key: (version, db_datetime(mark)) for key, version, mark in cursor.fetchall()}


def db_datetime(value) -> datetime | None:
    """A timestamp column read with plain SQL, as the ORM would give it (SQLite returns text)."""
    if value is None or not settings.USE_TZ:
        return value
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)


def bitmaps_load(keys: Iterable[str]) -> dict[str, FrozenBitMap]:
    """Current bitmaps for keys (an empty bitmap for a key never stored), one state query per call.

    Keys kept fresh on read (live consumers, consent) go through their refresher, which is given the state
    read here.
    """
    keys = list(dict.fromkeys(keys))
    states = _states(keys)
    result: dict[str, FrozenBitMap] = {}
    stale = []
    for key in keys:
        state = states.get(key)
        refresh = _refreshers.get(key)
        if refresh is not None:
            result[key] = refresh(_marked(key, state))
        elif state is None:
            result[key] = FrozenBitMap()
        else:
            cached = _cache.get(key)
            if cached is not None and cached[0] == state[0]:
                result[key] = cached[1]
            else:
                stale.append(key)
    if stale:
        for key, version, data in StoredBitmap.objects.filter(key__in=stale).values_list("key", "version", "data"):
            bitmap = FrozenBitMap.deserialize(bytes(data))
            with _cache_lock:
                _cache[key] = (version, bitmap)
            result[key] = bitmap
    return result


def bitmap_load(key: str) -> FrozenBitMap:
    return bitmaps_load([key])[key]


@dataclass(frozen=True)
class MarkedBitmap:
    """A stored bitmap with its version and source mark (version None: never stored)."""

    bitmap: FrozenBitMap
    version: int | None
    source_mark: datetime | None


def bitmap_load_marked(key: str) -> MarkedBitmap:
    """The stored bitmap under key with its version and source mark, through the per-process cache.

    Never runs a refresher: refreshers themselves read through this.
    """
    return _marked(key, _states([key]).get(key))


def _marked(key: str, state: tuple[int, datetime | None] | None) -> MarkedBitmap:
    if state is None:
        return MarkedBitmap(FrozenBitMap(), None, None)
    version, source_mark = state
    cached = _cache.get(key)
    if cached is not None and cached[0] == version:
        return MarkedBitmap(cached[1], version, source_mark)
    row = StoredBitmap.objects.filter(key=key).values_list("version", "source_mark", "data").first()
    if row is None:  # deleted since the state was read
        return MarkedBitmap(FrozenBitMap(), None, None)
    version, source_mark, data = row
    bitmap = FrozenBitMap.deserialize(bytes(data))
    with _cache_lock:
        _cache[key] = (version, bitmap)
    return MarkedBitmap(bitmap, version, source_mark)


# ------------------------------------------------------------------------------------------------ change windows
#
# A fresh-on-read bitmap (live consumers, consent) is stored with a source mark: the newest row stamp it includes.
# Rows are stamped before their transaction commits, so a row stamped up to the overlap before the mark may still
# commit after the bitmap was built; a read therefore asks for rows stamped after (mark - overlap). Once a read that
# began at least the overlap after the mark has applied that window, every row stamped at or before the mark is in
# the bitmap, and later reads of the same version need only rows stamped after the mark itself. Without this, a big
# import (hundreds of thousands of consumers stamped within the overlap of the mark) was re-read on every estimate.
# The memo is per process and per stored version: any write, here or elsewhere, starts a new window.

_settled: dict[str, int] = {}


def change_overlap() -> timedelta:
    """How late a row may commit after its stamp and still be picked up before the next full rebuild."""
    return timedelta(seconds=settings.FRESH_BITMAP_OVERLAP_SECONDS)


def change_window_floor(key: str, *, version: int, source_mark: datetime) -> datetime:
    """Rows stamped after this instant may be missing from the stored version of key."""
    if _settled.get(key) == version:
        return source_mark
    return source_mark - change_overlap()


def change_window_checked(key: str, *, version: int | None, source_mark: datetime | None, checked_at: datetime) -> None:
    """A read that began at checked_at has applied every change after the floor; version now holds them all.

    Call it after the version is committed (or when nothing was written).
    """
    if version is None or source_mark is None or checked_at - source_mark < change_overlap():
        return
    with _cache_lock:
        _settled[key] = version


def bitmap_cache_clear() -> None:
    with _cache_lock:
        _cache.clear()
        _settled.clear()
