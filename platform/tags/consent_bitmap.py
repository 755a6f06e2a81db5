"""The direct-marketing consent bitmap (consumers whose current consent is an express opt-in), and the bitmap form
of "may this consumer be messaged now" built on it from privacy.messaging's parts (`reachable_bitmap`).

Estimates read it on every request, so it must reflect a withdrawal at once
yet cost next to nothing when nothing changed. It is stored with a source
mark: the latest `ConsentRecord.recorded_at` it includes. The consent ledger
is the change feed: it is append-only and every consent change adds a record
(stamped on insert), whereas the derived ConsentState rows are updated in
place. A read asks for the direct-marketing records added since a little
before the mark (an index on (purpose, recorded_at), added by a tags
migration, makes that a short range scan), looks up the current state of the
consumers they name, applies it, and saves the result when anything changed.

Why "a little before": recorded_at is stamped before the writing transaction
commits, so a record stamped at t can become visible after one stamped at
t + 1 was already read. Re-reading the overlap before the mark catches such
late commits; applying a consumer's current state twice is harmless. A full
rebuild after every tagging run bounds anything slower than that. Once the
overlap after the mark has passed and been read, reads of that version ask
only for records newer than the mark (tags.bitmaps, "change windows").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone
from pyroaring import BitMap, FrozenBitMap

from dbtools.backend import on_postgresql
from dbtools.pgcopy import Column, packed_expression
from privacy.messaging import PARTS_BY_NAME, Rule, messaging_rule, opted_in_states, reachable_combine
from privacy.models import MINOR_AGE_RANGES, ConsentRecord, Purpose

from .bitmaps import (
    DIRECT_MARKETING_CONSENT_KEY,
    MarkedBitmap,
    bitmap_from_ids,
    bitmap_load_marked,
    bitmap_store,
    bitmap_store_if_version,
    bitmaps_load,
    change_window_checked,
    change_window_floor,
    db_datetime,
    fresh_on_read,
    tag_key,
)
from .inputs import packed_query


def _opt_in_ids():
    rows = opted_in_states().values_list("consumer_id", flat=True)
    if on_postgresql():
        sql, params = rows.query.sql_with_params()
        column = Column("id", "int8")
        query = f"SELECT {packed_expression([('consumer_id', column)])} FROM ({sql}) AS opt_in"  # noqa: S608
        return packed_query(query, list(params), [column])["id"]
    return np.fromiter(rows.iterator(chunk_size=50_000), dtype=np.int64)


def consent_bitmap_rebuild() -> FrozenBitMap:
    """Rebuild from ConsentState in full and store it (tagging runs call this)."""
    mark = ConsentRecord.objects.filter(purpose=Purpose.DIRECT_MARKETING).aggregate(mark=Max("recorded_at"))["mark"]
    bitmap = bitmap_from_ids(_opt_in_ids())
    bitmap_store(key=DIRECT_MARKETING_CONSENT_KEY, bitmap=bitmap, source_mark=mark)
    return FrozenBitMap(bitmap)


def consent_bitmap_current() -> FrozenBitMap:
    """The bitmap as of now: the stored one with every consent change recorded since its mark applied."""
    return consent_bitmap_refresh(bitmap_load_marked(DIRECT_MARKETING_CONSENT_KEY))


def consent_bitmap_refresh(stored: MarkedBitmap) -> FrozenBitMap:
    """stored (as just read) brought up to date: every consent change recorded since its mark applied."""
    checked_at = timezone.now()
    if stored.version is None:
        return consent_bitmap_rebuild()
    floor = None
    if stored.source_mark is not None:
        floor = change_window_floor(
            DIRECT_MARKETING_CONSENT_KEY, version=stored.version, source_mark=stored.source_mark
        )
    changes = _recorded_since(floor)
    if not changes:
        change_window_checked(
            DIRECT_MARKETING_CONSENT_KEY, version=stored.version, source_mark=stored.source_mark, checked_at=checked_at
        )
        return stored.bitmap
    touched = {consumer_id for consumer_id, _ in changes}
    granted = BitMap(opted_in_states().filter(consumer_id__in=touched).values_list("consumer_id", flat=True))
    other = BitMap(touched) - granted  # withdrawn, deemed, or no state any more
    newest = max(recorded_at for _, recorded_at in changes)
    mark = newest if stored.source_mark is None else max(stored.source_mark, newest)
    if granted.issubset(stored.bitmap) and other.isdisjoint(stored.bitmap) and mark == stored.source_mark:
        change_window_checked(
            DIRECT_MARKETING_CONSENT_KEY, version=stored.version, source_mark=mark, checked_at=checked_at
        )
        return stored.bitmap
    updated = BitMap(stored.bitmap)
    updated |= granted
    updated -= other
    version = bitmap_store_if_version(
        key=DIRECT_MARKETING_CONSENT_KEY, bitmap=updated, expected_version=stored.version, source_mark=mark
    )
    transaction.on_commit(
        partial(
            change_window_checked,
            DIRECT_MARKETING_CONSENT_KEY,
            version=version,
            source_mark=mark,
            checked_at=checked_at,
        )
    )
    return FrozenBitMap(updated)


def _recorded_since(floor) -> list[tuple[int, object]]:
    """(consumer id, recorded_at) of the direct-marketing consent records after floor (all when None).

    Plain SQL: every estimate runs it.
    """
    table = connection.ops.quote_name(ConsentRecord._meta.db_table)
    sql = f"SELECT consumer_id, recorded_at FROM {table} WHERE purpose = %s"  # noqa: S608
    params: list = [Purpose.DIRECT_MARKETING.value]
    if floor is not None:
        sql += " AND recorded_at > %s"
        params.append(connection.ops.adapt_datetimefield_value(floor))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(consumer_id, db_datetime(recorded_at)) for consumer_id, recorded_at in cursor.fetchall()]


fresh_on_read(DIRECT_MARKETING_CONSENT_KEY, consent_bitmap_refresh)


# ------------------------------------------------------------------------------------------------ reachable


@dataclass(frozen=True)
class ReachableParts:
    """The rule's inputs as bitmaps: the opted-in consumers and each applicable part's blocked consumers."""

    rule: Rule
    opted_in: FrozenBitMap
    blocked: dict[str, BitMap]

    def reachable(self) -> FrozenBitMap:
        return FrozenBitMap(reachable_combine(opted_in=BitMap(self.opted_in), blocked=self.blocked, rule=self.rule))


def reachable_parts(
    *, with_offer: bool = False, consent: FrozenBitMap | None = None, exact: bool = True, rule: Rule | None = None
) -> ReachableParts:
    """privacy.messaging's parts as bitmaps, each read from privacy's own definition of the part.

    Part 2 is the consent bitmap (fresh on read; pass `consent` when already loaded). With `exact=False`
    (estimates, which must stay fast) the minors part comes from the tag index: the `age_range` bitmaps of
    privacy's MINOR_AGE_RANGES, built by the last tagging run from the same column; a profile changed since then
    is caught by the exact forms (activation, every dispatch batch, the inbox). Erased consumers are in no bitmap
    (tags.subject_data removes them from all).
    """
    rule = rule or messaging_rule(with_offer=with_offer)
    opted_in = consent_bitmap_current() if consent is None else consent
    blocked: dict[str, BitMap] = {}
    for part in rule.blocking:
        if part is PARTS_BY_NAME["minors"] and not exact:
            blocked[part.name] = _minors_from_tags()
        else:
            ids = np.fromiter(part.consumer_ids().iterator(chunk_size=50_000), dtype=np.int64)
            blocked[part.name] = bitmap_from_ids(ids)
    return ReachableParts(rule=rule, opted_in=opted_in, blocked=blocked)


def reachable_bitmap(
    *, with_offer: bool = False, consent: FrozenBitMap | None = None, exact: bool = True, rule: Rule | None = None
) -> FrozenBitMap:
    """Consumers a message (with an offer or not) may reach now: privacy.messaging's rule as a bitmap."""
    return reachable_parts(with_offer=with_offer, consent=consent, exact=exact, rule=rule).reachable()


def _minors_from_tags() -> BitMap:
    from .models import Tag

    tag_ids = list(Tag.objects.filter(family="age_range", value__in=MINOR_AGE_RANGES).values_list("id", flat=True))
    loaded = bitmaps_load([tag_key(tag_id) for tag_id in tag_ids])
    return BitMap.union(*loaded.values()) if loaded else BitMap()
