"""Reads of the tag catalogue and the bitmap index, for the segment engine, the API and the portal.

Bitmaps come through the per-process cache in tags.bitmaps: a call costs one
small version query, plus a reload only of what changed since the last call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Q
from pyroaring import FrozenBitMap

from .bitmaps import bitmap_load, bitmaps_load, tag_key
from .consent_bitmap import consent_bitmap_current
from .live_bitmap import live_bitmap_current
from .models import ConsumerTag, Tag, TaggingRun
from .rules import RULES


class UnknownTag(LookupError):
    """No tag family:value in the catalogue."""

    def __init__(self, family: str, value: str):
        self.family = family
        self.value = value
        if family not in RULES:
            message = f"Unknown tag family {family!r}; known families: {', '.join(RULES)}."
        else:
            message = f"Unknown tag {family}:{value}."
        super().__init__(message)


@dataclass(frozen=True)
class TagInfo:
    tag_id: int
    family: str
    value: str
    label: str
    definition: str
    rule_version: str
    purpose: str
    consumer_count: int  # exact: pass through tags.reach.public_count before showing a merchant

    @property
    def code(self) -> str:
        return f"{self.family}:{self.value}"


@dataclass(frozen=True)
class FamilyInfo:
    family: str
    label: str
    description: str
    rule_version: str


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
    return [FamilyInfo(r.family, r.label, r.description, r.rule_version) for r in RULES.values()]


def tags_catalogue(*, family: str | None = None) -> list[TagInfo]:
    """Every tag (of one family, if given), ordered by family then value."""
    tags = Tag.objects.all()
    if family is not None:
        tags = tags.filter(family=family)
    return [_info(tag) for tag in tags.order_by("family", "value")]


def tag_lookup(family: str, value: str) -> TagInfo:
    """The tag family:value. Values match exactly, else case-insensitively (country:sg is country:SG)."""
    tags = list(Tag.objects.filter(family=family, value__iexact=value))
    exact = [tag for tag in tags if tag.value == value]
    if exact:
        return _info(exact[0])
    if len(tags) == 1:
        return _info(tags[0])
    raise UnknownTag(family, value)


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


def tags_lookup(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], TagInfo]:
    """Several tags in one query; raises UnknownTag for the first pair that does not exist."""
    pairs = list(dict.fromkeys(pairs))
    if not pairs:
        return {}
    condition = Q()
    for family, value in pairs:
        condition |= Q(family=family, value__iexact=value)
    found = list(Tag.objects.filter(condition))
    result: dict[tuple[str, str], TagInfo] = {}
    for family, value in pairs:
        candidates = [t for t in found if t.family == family and t.value.lower() == value.lower()]
        exact = [t for t in candidates if t.value == value]
        chosen = exact or (candidates if len(candidates) == 1 else [])
        if not chosen:
            raise UnknownTag(family, value)
        result[(family, value)] = _info(chosen[0])
    return result


def tag_bitmap(family: str, value: str) -> FrozenBitMap:
    """Consumer ids holding family:value (raises UnknownTag)."""
    return bitmap_load(tag_key(tag_lookup(family, value).tag_id))


def tag_bitmaps(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], FrozenBitMap]:
    """Bitmaps for several tags with two queries in all (raises UnknownTag)."""
    infos = tags_lookup(pairs)
    loaded = bitmaps_load(tag_key(info.tag_id) for info in infos.values())
    return {pair: loaded[tag_key(info.tag_id)] for pair, info in infos.items()}


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
