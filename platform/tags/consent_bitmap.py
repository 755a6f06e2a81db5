"""The direct-marketing consent bitmap: consumers whose current consent is an express opt-in.

Estimates read it on every request, so it must reflect a withdrawal at once
yet cost next to nothing when nothing changed. It is stored with a source
mark, the latest ConsentState.updated_at it includes. A read asks for the
consent states changed since a little before that mark (an index on
(purpose, updated_at), added by a tags migration, makes that a short range
scan), applies them, and saves the result when anything changed.

Why "a little before": updated_at is stamped before the writing transaction
commits, so a state stamped at t can become visible after one stamped at
t + 1 was already read. Re-reading the last OVERLAP before the mark catches
such late commits; applying a state twice is harmless because each row
carries the current state, not a change. A full rebuild after every tagging
run bounds anything slower than that.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Max
from pyroaring import BitMap, FrozenBitMap

from privacy.models import ConsentKind, ConsentState, ConsentStatus, Purpose

from .bitmaps import (
    DIRECT_MARKETING_CONSENT_KEY,
    bitmap_from_ids,
    bitmap_load_marked,
    bitmap_store,
    bitmap_store_if_version,
)
from .pgcopy import Column, copy_out_all

OVERLAP = timedelta(seconds=getattr(settings, "CONSENT_BITMAP_OVERLAP_SECONDS", 120))


def _opt_in_ids():
    rows = ConsentState.objects.filter(
        purpose=Purpose.DIRECT_MARKETING, status=ConsentStatus.GRANTED, kind=ConsentKind.EXPRESS
    ).values_list("consumer_id", flat=True)
    if connection.vendor == "postgresql":
        sql, params = rows.query.sql_with_params()
        with connection.cursor() as cursor:
            return copy_out_all(cursor.cursor, sql, params, [Column("id", "int8")])["id"]
    import numpy as np

    return np.fromiter(rows.iterator(chunk_size=50_000), dtype=np.int64)


def consent_bitmap_rebuild() -> FrozenBitMap:
    """Rebuild from ConsentState in full and store it (tagging runs call this)."""
    mark = ConsentState.objects.filter(purpose=Purpose.DIRECT_MARKETING).aggregate(mark=Max("updated_at"))["mark"]
    bitmap = bitmap_from_ids(_opt_in_ids())
    bitmap_store(key=DIRECT_MARKETING_CONSENT_KEY, bitmap=bitmap, source_mark=mark)
    return FrozenBitMap(bitmap)


def consent_bitmap_current() -> FrozenBitMap:
    """The bitmap as of now: the stored one with every consent change since its mark applied."""
    stored = bitmap_load_marked(DIRECT_MARKETING_CONSENT_KEY)
    if stored.version is None:
        return consent_bitmap_rebuild()
    states = ConsentState.objects.filter(purpose=Purpose.DIRECT_MARKETING)
    if stored.source_mark is not None:
        states = states.filter(updated_at__gt=stored.source_mark - OVERLAP)
    changes = list(states.values_list("consumer_id", "status", "kind", "updated_at"))
    if not changes:
        return stored.bitmap
    granted = BitMap()
    other = BitMap()
    for consumer_id, status, kind, _ in changes:
        if status == ConsentStatus.GRANTED and kind == ConsentKind.EXPRESS:
            granted.add(consumer_id)
        else:
            other.add(consumer_id)
    newest = max(updated_at for *_, updated_at in changes)
    mark = newest if stored.source_mark is None else max(stored.source_mark, newest)
    if granted.issubset(stored.bitmap) and other.isdisjoint(stored.bitmap) and mark == stored.source_mark:
        return stored.bitmap
    updated = BitMap(stored.bitmap)
    updated |= granted
    updated -= other
    bitmap_store_if_version(
        key=DIRECT_MARKETING_CONSENT_KEY, bitmap=updated, expected_version=stored.version, source_mark=mark
    )
    return FrozenBitMap(updated)
