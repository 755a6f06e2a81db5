"""Reads: preview a campaign's message as one of a few sample consumers of its audience.

The merchant picks "sample consumer 1" to "sample consumer N": an opaque index into a fixed, hash-ordered choice of
consumers of the first included segment that privacy.messaging's rule lets a message reach now. Who they are (id,
pseudonym) is never shown or returned; only their message, with their own recommendations. Samples are offered only
when that reachable set has at least MIN_AUDIENCE consumers, so a preview never singles out someone in a tiny group.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from recommend.selectors import recommendations_for
from segments.evaluation import SnapshotUnreadable
from segments.selectors import segment_latest_snapshot, segments_for_merchant, snapshot_members
from tags.selectors import reachable_bitmap

from .assignment import assignment_hash
from .messages import ProductInfo, RenderedMessage, campaign_constants, message_render

PREVIEW_SAMPLES = 5
_CANDIDATES = 2000  # the samples are picked among this many reachable members (a bounded amount of work)


def preview_samples(*, merchant_id: int, segment_ids: list[int], with_offer: bool) -> list[int]:
    """The consumers behind "sample consumer 1..N" (internal ids; never leave the server)."""
    own = set(segments_for_merchant(merchant_id).filter(pk__in=segment_ids).values_list("pk", flat=True))
    consent = reachable_bitmap(with_offer=with_offer)
    for segment_id in (s for s in segment_ids if s in own):
        snapshot = segment_latest_snapshot(segment_id=segment_id)
        if snapshot is None:
            continue
        try:
            reachable = snapshot_members(snapshot) & consent
        except SnapshotUnreadable:  # damaged members (logged where found): the preview uses another segment
            continue
        if len(reachable) < settings.MIN_AUDIENCE:
            continue
        candidates = list(reachable)[:_CANDIDATES]
        candidates.sort(key=lambda cid: assignment_hash(merchant_id, cid))
        return candidates[:PREVIEW_SAMPLES]
    return []


def sample_products(*, merchant_id: int, consumer_id: int | None, n: int) -> list[ProductInfo]:
    """A consumer's own top-n products of the merchant (their recommendations), as a message would carry them."""
    if consumer_id is None or n <= 0:
        return []
    return [
        ProductInfo(title=item["title"], price=item["price"])
        for item in recommendations_for(consumer_id=consumer_id, merchant_id=merchant_id, n=n)
    ]


@dataclass(frozen=True)
class Preview:
    message: RenderedMessage
    products: list[ProductInfo]
    sample: int | None  # the 1-based sample index used, None when there is no sample (the popular fallback)
    samples: int  # how many samples may be chosen


def message_preview(
    *,
    merchant_id: int,
    store_name: str,
    title_template: str,
    body_template: str,
    coupon_code: str,
    discount_percent: Decimal | None,
    personalised_products: int,
    segment_ids: list[int],
    sample: int = 1,
) -> Preview:
    """The message as sample consumer `sample` of the audience would get it (templates must be valid)."""
    samples = preview_samples(
        merchant_id=merchant_id, segment_ids=segment_ids, with_offer=bool(coupon_code or discount_percent)
    )
    index = min(max(1, sample), len(samples)) if samples else None
    consumer_id = samples[index - 1] if index else None
    products = sample_products(merchant_id=merchant_id, consumer_id=consumer_id, n=personalised_products)
    constants = campaign_constants(store_name=store_name, coupon_code=coupon_code, discount_percent=discount_percent)
    message = message_render(
        title_template=title_template, body_template=body_template, constants=constants, products=products
    )
    return Preview(message=message, products=products, sample=index, samples=len(samples))
