"""What segments read from the layers below: the tag bitmaps, the live consumers (the universe NOT is taken
against), and direct-marketing consent. One place, so the evaluators,
insights and lookalikes agree on them."""

from __future__ import annotations

from django.db.models import QuerySet
from pyroaring import FrozenBitMap

from consumers.models import Consumer
from tags.bitmaps import DIRECT_MARKETING_CONSENT_KEY, LIVE_CONSUMERS_KEY, bitmaps_load, tag_key
from tags.selectors import live_consumers_bitmap, reachable_bitmap

__all__ = [
    "estimate_bitmaps",
    "live_consumers_bitmap",
    "live_consumers_queryset",
    "reachable_bitmap",
    "tag_bitmaps",
]


def _with_tags(tag_ids: list[int], keys: list[str]) -> tuple[dict[int, FrozenBitMap], dict[str, FrozenBitMap]]:
    """The tags' bitmaps (by tag id) and those under keys, in one state query."""
    tag_keys = [tag_key(tag_id) for tag_id in tag_ids]
    loaded = bitmaps_load([*tag_keys, *keys])
    return {tag_id: loaded[key] for tag_id, key in zip(tag_ids, tag_keys, strict=True)}, loaded


def tag_bitmaps(tag_ids: list[int], *, with_live: bool = True) -> tuple[dict[int, FrozenBitMap], FrozenBitMap]:
    """The bitmaps of the given tags (by id) and the live consumers (empty without with_live)."""
    by_tag, loaded = _with_tags(tag_ids, [LIVE_CONSUMERS_KEY] if with_live else [])
    return by_tag, loaded.get(LIVE_CONSUMERS_KEY, FrozenBitMap())


def estimate_bitmaps(tag_ids: list[int]) -> tuple[dict[int, FrozenBitMap], FrozenBitMap, FrozenBitMap]:
    """What an estimate reads, in one state query: the tags' bitmaps, the live consumers and current
    direct-marketing consent (both brought up to date on read)."""
    by_tag, loaded = _with_tags(tag_ids, [LIVE_CONSUMERS_KEY, DIRECT_MARKETING_CONSENT_KEY])
    return by_tag, loaded[LIVE_CONSUMERS_KEY], loaded[DIRECT_MARKETING_CONSENT_KEY]


def live_consumers_queryset() -> QuerySet:
    """The SQL counterpart of the live-consumers bitmap, for the SQL evaluator (the oracle)."""
    return Consumer.objects.all()
