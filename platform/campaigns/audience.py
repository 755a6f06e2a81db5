"""Audience resolution: fresh segment members, minus exclusions and frequency caps, intersected with the consumers
privacy.messaging's rule lets a message reach now; frozen as a bitmap with the launch's audit entry."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Count, Q
from django.utils import timezone
from pyroaring import BitMap

from privacy.audit import audit_record
from privacy.services import ProcessingBasis
from segments.models import Segment, SegmentSnapshot
from segments.selectors import snapshot_members
from segments.services import segment_refresh
from tags.selectors import ReachableParts, reachable_parts

from .assignment import control_mask
from .basis import ActivationRefused, audience_too_small_reason
from .models import (
    COUNTED_BY_CAPS,
    Campaign,
    CampaignAudience,
    CampaignStatus,
    Delivery,
    Group,
    Phase,
)

logger = logging.getLogger("dmp.campaigns")

# Other senders of direct-marketing messages (journeys, layer 6 like campaigns, which never imports them) register
# here, so one consumer's messages from every sender count toward the same caps. A counter takes (merchant_id,
# platform_since, merchant_since, consumer_ids or None) and yields (consumer_id, messages since platform_since,
# this merchant's messages since merchant_since) for consumers with any.
CapCounter = Callable[..., Iterable[tuple[int, int, int]]]
CAP_COUNTERS: list[CapCounter] = []


def cap_counter_register(counter: CapCounter) -> None:
    if counter not in CAP_COUNTERS:
        CAP_COUNTERS.append(counter)


@dataclass(frozen=True)
class SegmentMembers:
    """A segment's fresh members and the SHA-256 of its definition (for the launch audit entry)."""

    segment_id: int
    members: BitMap
    definition_sha256: str


@dataclass(frozen=True)
class AudienceResolution:
    members: BitMap
    counts: dict[str, int]
    segments: dict[str, list[dict]] = field(default_factory=dict)


def consumers_in(ids: Sequence[int], field: str = "consumer_id") -> Q:
    """A filter that selects at least these consumers, cheaply.

    Batches are contiguous slices of a sorted audience, so a range scan on an index beats an IN list
    of ten thousand parameters by far; sparse lists still use IN. Callers intersect the result with
    the ids they asked for.
    """
    lo, hi = min(ids), max(ids)
    if hi - lo <= 4 * len(ids) + 1000:
        return Q(**{f"{field}__gte": lo, f"{field}__lte": hi})
    return Q(**{f"{field}__in": list(ids)})


def frequency_capped_consumers(
    *,
    merchant_id: int,
    frequency_cap: int | None,
    frequency_window_days: int,
    now: datetime,
    consumer_ids: Sequence[int] | None = None,
    exclude_campaign_id: int | None = None,
) -> set[int]:
    """Consumers who already have as many messages as a cap allows.

    Two caps: the campaign's (at most N messages per consumer per window across this merchant's
    campaigns) and the platform's (PLATFORM_FREQUENCY_CAP per PLATFORM_FREQUENCY_WINDOW_DAYS across
    all merchants). A message counts while it is pending or dispatched, from its creation.
    """
    platform_cap = settings.PLATFORM_FREQUENCY_CAP if settings.PLATFORM_FREQUENCY_CAP > 0 else None
    if platform_cap is None and frequency_cap is None:
        return set()
    platform_since = now - timedelta(days=settings.PLATFORM_FREQUENCY_WINDOW_DAYS)
    merchant_since = now - timedelta(days=frequency_window_days)
    since = min(platform_since if platform_cap else now, merchant_since if frequency_cap else now)
    # Only campaigns that ran in the window can have written messages in it: the filter lets the database read
    # those campaigns' deliveries through the (campaign, consumer) index instead of scanning all history.
    recent_campaigns = Campaign.objects.filter(
        Q(started_at__gte=since - timedelta(days=1)) | Q(status=CampaignStatus.RUNNING)
    ).values("pk")
    messages = Delivery.objects.filter(
        campaign_id__in=recent_campaigns, group=Group.TREATMENT, status__in=COUNTED_BY_CAPS, created_at__gte=since
    )
    if consumer_ids is not None:
        if not len(consumer_ids):
            return set()
        messages = messages.filter(consumers_in(consumer_ids))
    if exclude_campaign_id is not None:
        messages = messages.exclude(campaign_id=exclude_campaign_id)
    annotations, over = {}, Q(pk__in=[])
    if platform_cap is not None:
        annotations["platform_n"] = Count("id", filter=Q(created_at__gte=platform_since))
        over |= Q(platform_n__gte=platform_cap)
    if frequency_cap is not None:
        annotations["merchant_n"] = Count(
            "id", filter=Q(campaign__merchant_id=merchant_id, created_at__gte=merchant_since)
        )
        over |= Q(merchant_n__gte=frequency_cap)
    rows = messages.values("consumer_id").annotate(**annotations).filter(over).values_list("consumer_id", flat=True)
    capped = set(rows)
    if CAP_COUNTERS:
        capped |= _capped_with_other_senders(
            messages=messages,
            annotations=annotations,
            merchant_id=merchant_id,
            platform_cap=platform_cap,
            frequency_cap=frequency_cap,
            platform_since=platform_since,
            merchant_since=merchant_since,
            consumer_ids=consumer_ids,
        )
    return capped if consumer_ids is None else capped & set(consumer_ids)


def _capped_with_other_senders(
    *,
    messages,
    annotations: dict,
    merchant_id: int,
    platform_cap: int | None,
    frequency_cap: int | None,
    platform_since: datetime,
    merchant_since: datetime,
    consumer_ids: Sequence[int] | None,
) -> set[int]:
    """Consumers over a cap once the registered senders' messages are added to the campaigns' ones."""
    extra: dict[int, list[int]] = {}
    for counter in CAP_COUNTERS:
        for cid, platform_n, merchant_n in counter(
            merchant_id=merchant_id,
            platform_since=platform_since,
            merchant_since=merchant_since,
            consumer_ids=consumer_ids,
        ):
            totals = extra.setdefault(int(cid), [0, 0])
            totals[0] += platform_n
            totals[1] += merchant_n
    if not extra:
        return set()
    for row in messages.filter(consumers_in(list(extra))).values("consumer_id").annotate(**annotations):
        totals = extra[row["consumer_id"]]
        totals[0] += row.get("platform_n", 0)
        totals[1] += row.get("merchant_n", 0)
    return {
        cid
        for cid, (platform_n, merchant_n) in extra.items()
        if (platform_cap is not None and platform_n >= platform_cap)
        or (frequency_cap is not None and merchant_n >= frequency_cap)
    }


def audience_resolve(
    *, campaign: Campaign, include: Sequence[SegmentMembers], exclude: Sequence[SegmentMembers], now: datetime
) -> AudienceResolution:
    """included segments − excluded − frequency-capped, ∩ those privacy.messaging's rule lets a message reach now.

    Takes the segments' member bitmaps, so it can be tested (and reused) without refreshing segments.
    """
    included = BitMap.union(*(s.members for s in include)) if include else BitMap()
    excluded = BitMap.union(*(s.members for s in exclude)) if exclude else BitMap()
    counts = {"included": len(included)}
    remaining = included - excluded
    counts["excluded"] = counts["included"] - len(remaining)
    capped = frequency_capped_consumers(
        merchant_id=campaign.merchant_id,
        frequency_cap=campaign.frequency_cap,
        frequency_window_days=campaign.frequency_window_days,
        now=now,
        exclude_campaign_id=campaign.pk,
    )
    after = remaining - BitMap(capped)
    counts["frequency_capped"] = len(remaining) - len(after)
    remaining = after
    # "May this consumer be messaged now" (privacy.messaging: express opt-in, suppressions, offers, minors) as a
    # bitmap, read exactly (the consent bitmap is brought up to date with every recorded change on each call).
    # Each dispatch batch re-checks the rule in SQL as well, which is the final word.
    parts = reachable_parts(with_offer=campaign.has_offer, exact=True)
    after = remaining & parts.reachable()
    counts.update(_refusal_counts(remaining - after, parts))
    counts["audience"] = len(after)
    segments = {
        "include": [{"segment_id": s.segment_id, "definition_sha256": s.definition_sha256} for s in include],
        "exclude": [{"segment_id": s.segment_id, "definition_sha256": s.definition_sha256} for s in exclude],
    }
    return AudienceResolution(members=after, counts=counts, segments=segments)


def _refusal_counts(refused: BitMap, parts: ReachableParts) -> dict[str, int]:
    """How many consumers each part of the rule kept out, for the launch audit entry: those without express
    opt-in consent, then of the rest, the suppressed (for every campaign or for offers) and then minors."""
    counts = {"not_consented": len(refused - parts.opted_in)}
    rest = refused & parts.opted_in
    suppressed = BitMap()
    for name in ("suppressed_all", "suppressed_offers"):
        suppressed |= parts.blocked.get(name, BitMap())
    counts["suppressed"] = rest.intersection_cardinality(suppressed)
    rest -= suppressed
    counts["minors"] = rest.intersection_cardinality(parts.blocked.get("minors", BitMap()))
    return counts


def segment_definition_sha256(segment: Segment, snapshot: SegmentSnapshot | None = None) -> str:
    """SHA-256 of what defined a segment's members: its kind, the expression the snapshot was computed from
    (canonical text), and for lookalikes their seed and recipe."""
    definition = {
        "kind": segment.kind,
        "definition": (snapshot.definition if snapshot is not None else "") or segment.definition,
        "seed_id": segment.seed_id,
        "lookalike_spec": segment.lookalike_spec,
    }
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def campaign_segment_members(*, campaign: Campaign, actor: str) -> tuple[list[SegmentMembers], list[SegmentMembers]]:
    """Fresh snapshots of the campaign's included and excluded segments (only the merchant's own)."""

    def fresh(segments) -> list[SegmentMembers]:
        result = []
        for segment in segments.filter(merchant_id=campaign.merchant_id).order_by("id"):
            try:
                snapshot = segment_refresh(segment_id=segment.pk, actor=actor)
            except (OperationalError, InterfaceError):
                raise  # the database is briefly away: the task retries
            except Exception as exc:
                segment.refresh_from_db(fields=["last_error"])
                why = segment.last_error or type(exc).__name__
                raise ActivationRefused(
                    f"Refreshing segment {segment.name!r} failed: {why}", code="segment_refresh_failed"
                ) from exc
            result.append(
                SegmentMembers(
                    segment_id=segment.pk,
                    members=BitMap(snapshot_members(snapshot)),
                    definition_sha256=segment_definition_sha256(segment, snapshot),
                )
            )
        return result

    include = fresh(campaign.include_segments)
    if not include:
        raise ActivationRefused(
            "The campaign's included segments no longer exist; create a new campaign with your current segments.",
            code="no_segments",
        )
    return include, fresh(campaign.exclude_segments)


def members_array(members: BitMap) -> np.ndarray:
    return np.frombuffer(members.to_array(), dtype=np.uint32)


def campaign_audience_freeze(
    *, campaign_id: int, resolution: AudienceResolution, basis: ProcessingBasis, actor: str
) -> Campaign:
    """Store the resolved audience and write the launch's audit entry, in one transaction.

    Refuses (ActivationRefused) an audience under MIN_AUDIENCE without saying how small it is.
    """
    members = resolution.members
    if len(members) < settings.MIN_AUDIENCE:
        raise ActivationRefused(audience_too_small_reason(), code="audience_too_small")
    now = timezone.now()
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != CampaignStatus.RUNNING or campaign.phase not in (Phase.NONE, Phase.RESOLVING):
            return campaign
        control = int(control_mask(campaign.pk, members_array(members), campaign.control_share).sum())
        CampaignAudience.objects.update_or_create(
            campaign=campaign, defaults={"members": members.serialize(), "resolved_at": now}
        )
        campaign.audience_count = len(members)
        campaign.control_count = control
        campaign.treatment_count = len(members) - control
        campaign.phase = Phase.WRITING
        campaign.write_cursor = 0
        campaign.dispatch_cursor = 0
        campaign.heartbeat_at = now
        campaign.save(
            update_fields=[
                "audience_count",
                "control_count",
                "treatment_count",
                "phase",
                "write_cursor",
                "dispatch_cursor",
                "heartbeat_at",
                "updated_at",
            ]
        )
        audit_record(
            actor=actor,
            action="campaign.launched",
            merchant_id=campaign.merchant_id,
            purpose=basis.purpose,
            legal_basis=basis.legal_basis,
            activity_id=basis.activity_id,
            object_type="Campaign",
            object_id=campaign.pk,
            counts={**resolution.counts, "treatment": campaign.treatment_count, "control": control},
            details={
                "segments": resolution.segments,
                "channel": campaign.channel,
                "control_share": str(campaign.control_share),
                "personalised_products": campaign.personalised_products,
                "has_offer": campaign.has_offer,
                "frequency_cap": campaign.frequency_cap,
                "frequency_window_days": campaign.frequency_window_days,
                "platform_frequency_cap": settings.PLATFORM_FREQUENCY_CAP,
                "platform_frequency_window_days": settings.PLATFORM_FREQUENCY_WINDOW_DAYS,
            },
        )
    logger.info(
        "campaign.audience_resolved",
        extra={"fields": {"campaign_id": campaign.pk, **resolution.counts, "control": control}},
    )
    return campaign
