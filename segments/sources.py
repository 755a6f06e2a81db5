"""What segments read from the layers below: the tag catalogue, the bitmap index, consent, and how a count is
shown to a merchant. One place, so the evaluators, insights and lookalikes agree on the universe."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet
from pyroaring import BitMap, FrozenBitMap

from consumers.models import Consumer
from privacy.models import ConsentKind, ConsentRecord, ConsentState, ConsentStatus, Purpose
from tags.bitmaps import DIRECT_MARKETING_CONSENT_KEY, LIVE_CONSUMERS_KEY, bitmaps_load, tag_key
from tags.models import StoredBitmap


def tag_bitmaps(tag_ids: list[int], *, with_live: bool = True) -> tuple[dict[int, FrozenBitMap], FrozenBitMap]:
    """The bitmaps of the given tags and the live consumers, in one version query."""
    keys = [tag_key(tag_id) for tag_id in tag_ids]
    loaded = bitmaps_load([*keys, LIVE_CONSUMERS_KEY] if with_live else keys)
    by_tag = {tag_id: loaded[key] for tag_id, key in zip(tag_ids, keys, strict=True)}
    return by_tag, loaded.get(LIVE_CONSUMERS_KEY, FrozenBitMap())


def live_consumers_bitmap() -> FrozenBitMap:
    return bitmaps_load([LIVE_CONSUMERS_KEY])[LIVE_CONSUMERS_KEY]


def live_consumers_queryset() -> QuerySet:
    """The SQL counterpart of the live-consumers bitmap (the universe NOT is taken against)."""
    return Consumer.objects.all()


def direct_marketing_consent_bitmap() -> FrozenBitMap:
    """Consumers with express opt-in consent to direct marketing now.

    The stored bitmap, brought up to date with consent changes recorded after it was stored, so a withdrawal
    counts on the very next estimate even before the bitmap is rebuilt.
    """
    stored = StoredBitmap.objects.filter(key=DIRECT_MARKETING_CONSENT_KEY).values_list("updated_at", flat=True).first()
    base = bitmaps_load([DIRECT_MARKETING_CONSENT_KEY])[DIRECT_MARKETING_CONSENT_KEY]
    changes = ConsentState.objects.filter(purpose=Purpose.DIRECT_MARKETING)
    if stored is not None:
        # The ledger says who changed since the bitmap was stored (ConsentState.updated_at is not reliable:
        # bulk updates leave it as it was); their current state says what they decided.
        recent = ConsentRecord.objects.filter(purpose=Purpose.DIRECT_MARKETING, recorded_at__gte=stored)
        changes = changes.filter(consumer_id__in=recent.values("consumer_id"))
    granted, revoked = BitMap(), BitMap()
    for consumer_id, status, kind in changes.values_list("consumer_id", "status", "kind").iterator(chunk_size=5000):
        if status == ConsentStatus.GRANTED and kind == ConsentKind.EXPRESS:
            granted.add(consumer_id)
        else:
            revoked.add(consumer_id)
    if not granted and not revoked:
        return base
    return FrozenBitMap((BitMap(base) | granted) - revoked)


@dataclass(frozen=True)
class PublicCount:
    """A count as a merchant may see it: hidden below MIN_AUDIENCE, two significant figures above."""

    count: int | None
    display: str
    hidden: bool

    def as_dict(self) -> dict:
        return {"count": self.count, "display": self.display, "hidden": self.hidden}


def round_significant(n: float, figures: int = 2) -> int:
    if n <= 0:
        return 0
    magnitude = len(str(int(n))) - figures
    if magnitude <= 0:
        return round(n)
    step = 10**magnitude
    return int((n + step / 2) // step * step)


def public_count(n: int) -> PublicCount:
    minimum = settings.MIN_AUDIENCE
    if n < minimum:
        return PublicCount(None, f"fewer than {minimum:,}", True)
    rounded = round_significant(n)
    return PublicCount(rounded, f"{rounded:,}", False)
