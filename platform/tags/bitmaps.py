"""The bitmap index: one Roaring bitmap of consumer ids per tag, for all live consumers, and for current
direct-marketing consent.

Bitmaps are stored in the database (StoredBitmap) and cached per process by
(key, version): a reader asks for the current versions of the keys it needs in
one query and reloads only what changed. Writers bump the version in the same
transaction as the rows the bitmap was built from.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from django.db import transaction
from django.db.models import F
from pyroaring import BitMap, FrozenBitMap

from .models import StoredBitmap

LIVE_CONSUMERS_KEY = "consumers:live"
DIRECT_MARKETING_CONSENT_KEY = "consent:direct_marketing"


def tag_key(tag_id: int) -> str:
    return f"tag:{tag_id}"


_cache: dict[str, tuple[int, FrozenBitMap]] = {}
_cache_lock = threading.Lock()


def bitmap_store(*, key: str, bitmap: BitMap | FrozenBitMap) -> int:
    """Save a bitmap under key, bumping its version. Returns the new version."""
    data = bytes(BitMap(bitmap).serialize()) if not isinstance(bitmap, BitMap) else bitmap.serialize()
    with transaction.atomic():
        updated = StoredBitmap.objects.filter(key=key).update(
            data=data, cardinality=len(bitmap), version=F("version") + 1
        )
        if not updated:
            StoredBitmap.objects.create(key=key, data=data, cardinality=len(bitmap), version=1)
        return StoredBitmap.objects.filter(key=key).values_list("version", flat=True).get()


def bitmap_delete(*, keys: Iterable[str]) -> int:
    deleted, _ = StoredBitmap.objects.filter(key__in=list(keys)).delete()
    return deleted


def bitmaps_load(keys: Iterable[str]) -> dict[str, FrozenBitMap]:
    """Current bitmaps for keys (an empty bitmap for a key never stored), one version query per call."""
    keys = list(dict.fromkeys(keys))
    versions = dict(StoredBitmap.objects.filter(key__in=keys).values_list("key", "version"))
    result: dict[str, FrozenBitMap] = {}
    stale = []
    for key in keys:
        version = versions.get(key)
        if version is None:
            result[key] = FrozenBitMap()
            continue
        cached = _cache.get(key)
        if cached is not None and cached[0] == version:
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


def bitmap_cache_clear() -> None:
    with _cache_lock:
        _cache.clear()
