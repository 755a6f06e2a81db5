"""Reads of the tag catalogue and the bitmap index, for the segment engine, the API and the portal.

Bitmaps come through the per-process cache in tags.bitmaps: a call costs one
small version query, plus a reload only of what changed since the last call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from pyroaring import FrozenBitMap

from .consent_bitmap import ReachableParts, consent_bitmap_current, reachable_bitmap, reachable_parts
from .live_bitmap import live_bitmap_current
from .models import ConsumerTag, Tag, TaggingRun
from .rules import EXTERNAL_FAMILIES, RULES


@dataclass(frozen=True)
class TagInfo:
    tag_id: int
    family: str
    value: str
    label: str
    definition: str
    rule_version: str
    purpose: str
    consumer_count: int  # exact: shown to merchants only through tags.reach.released_reach

    @property
    def code(self) -> str:
        return f"{self.family}:{self.value}"


@dataclass(frozen=True)
class FamilyInfo:
    family: str
    label: str
    description: str
    rule_version: str
    note: str = ""  # a plain-words line for merchants (predicted families: the model card's summary)


def _info(tag: Tag) -> TagInfo:
    return TagInfo(
        tag_id=tag.pk,
        family=tag.family,
        value=tag.value,
        label=tag.label,
        definition=tag.definition,
        rule_version=tag.rule_version,
        purpose=tag.purpose,
        consumer_count=tag.consumer_count,
    )


def tag_families() -> list[FamilyInfo]:
    """Every tag family, in the order the catalogue presents them."""
    families = [FamilyInfo(r.family, r.label, r.description, r.rule_version) for r in RULES.values()]
    for extra in EXTERNAL_FAMILIES.values():
        note = extra.note() if extra.note is not None else ""
        families.append(FamilyInfo(extra.family, extra.label, extra.description, extra.rule_version, note))
    return families


def tags_catalogue(*, family: str | None = None) -> list[TagInfo]:
    """Every tag (of one family, if given), ordered by family then value."""
    tags = Tag.objects.all()
    if family is not None:
        tags = tags.filter(family=family)
    return [_info(tag) for tag in tags.order_by("family", "value")]


def tag_catalogue_rows(*, families: Iterable[str]) -> list[tuple[int, str, str]]:
    """(id, family, value) of every tag in the given families.

    Plain SQL: every live estimate resolves its terms through this, and building the ORM query cost more than
    PostgreSQL took to answer it.
    """
    families = sorted(set(families))
    if not families:
        return []
    table = connection.ops.quote_name(Tag._meta.db_table)
    placeholders = ", ".join(["%s"] * len(families))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, family, value FROM {table} WHERE family IN ({placeholders})", families)  # noqa: S608
        return cursor.fetchall()


def live_consumers_bitmap() -> FrozenBitMap:
    """Every consumer now (new consumers picked up on read, erased ones removed): the universe for NOT.

    Loading LIVE_CONSUMERS_KEY through tags.bitmaps gives the same fresh bitmap.
    """
    return live_bitmap_current()


def direct_marketing_consent_bitmap() -> FrozenBitMap:
    """Consumers whose current direct-marketing consent is an express opt-in, fresh on every call.

    A consent recorded or withdrawn before this call is reflected in its result
    (see tags.consent_bitmap).
    """
    return consent_bitmap_current()


__all__ = ["ReachableParts", "reachable_bitmap", "reachable_parts"]  # privacy.messaging's rule as bitmaps


@dataclass(frozen=True)
class HeldTag:
    code: str
    family: str
    value: str
    label: str
    definition: str
    score: float | None
    assigned_at: datetime


def consumer_tag_rows(consumer_id: int):
    """The consumer's ConsumerTag rows, found with one probe per tag of the (tag, consumer) index."""
    tag_ids = list(Tag.objects.values_list("id", flat=True))
    return ConsumerTag.objects.filter(consumer_id=consumer_id, tag_id__in=tag_ids)


def consumer_tags(consumer_id: int) -> list[HeldTag]:
    """The tags one consumer holds, with their definitions (for access requests and the admin)."""
    rows = consumer_tag_rows(consumer_id).select_related("tag").order_by("tag__family", "tag__value")
    return [
        HeldTag(
            code=row.tag.code,
            family=row.tag.family,
            value=row.tag.value,
            label=row.tag.label,
            definition=row.tag.definition,
            score=row.score,
            assigned_at=row.assigned_at,
        )
        for row in rows
    ]


def tagging_last_run() -> TaggingRun | None:
    return TaggingRun.objects.order_by("-started_at", "-id").first()
