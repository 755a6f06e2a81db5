"""Activation: resolve the audience, write one delivery per consumer, dispatch, in bounded resumable batches.

An activation runs as a chain of steps (campaigns.tasks.campaign_activate_task). Each step

1. takes a PostgreSQL session advisory lock on the campaign, so at most one step works on it at
   a time (a killed worker's connection closes and PostgreSQL frees its lock at once);
2. checks its run token against the campaign's, so a step superseded by a resume skips itself;
3. re-checks the direct-marketing processing basis (a suspended activity stops the sends);
4. advances the campaign one batch at a time until its time budget is spent: resolving the
   audience once (frozen as a bitmap, with the launch audit entry, in one transaction), then
   writing deliveries from `write_cursor`, then dispatching from `dispatch_cursor`.

Every batch commits its rows, its cursor and its progress counters in one transaction, so a
crash at any point either keeps a whole batch or none of it, and the next step carries on
from the last committed cursor. UNIQUE (campaign, consumer) and the conditional status updates
(pending → dispatched) make a repeated batch harmless: nobody is written or sent twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

import numpy as np
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from pyroaring import BitMap

from consumers.models import Product
from privacy.audit import audit_record
from privacy.models import ConsentKind, ConsentState, ConsentStatus, LegalBasis, Purpose, Suppression, SuppressionScope
from privacy.selectors import suppressed_consumer_ids
from privacy.services import ProcessingBasis, ProcessingNotPermitted, processing_basis_require
from recommend.services import recommend_for_consumers
from segments.models import Segment, SegmentSnapshot
from segments.selectors import snapshot_members
from segments.services import segment_refresh
from tags.selectors import direct_marketing_consent_bitmap

from .assignment import control_mask
from .messages import CompiledTemplate, ProductInfo, campaign_constants
from .models import (
    COUNTED_BY_CAPS,
    Campaign,
    CampaignAudience,
    CampaignStatus,
    Channel,
    Delivery,
    DeliveryStatus,
    Group,
    Phase,
)
from .webhook import WebhookResult, webhook_post

logger = logging.getLogger("dmp.campaigns")

# Two-key advisory locks: (namespace, campaign id) guards one campaign's steps; the caps namespace
# serialises delivery writes across campaigns so frequency caps hold under concurrent launches.
RUN_LOCK_NAMESPACE = 7_320_552
CAPS_LOCK_NAMESPACE = 7_320_553

ERROR_CONSENT_WITHDRAWN = "not sent: the consumer's direct-marketing consent was withdrawn before dispatch"
ERROR_SUPPRESSED = "not sent: the consumer was suppressed (objection, risk flag or blacklist) before dispatch"
ERROR_FREQUENCY_CAP = "not sent: the consumer reached a frequency cap while the campaign was being written"
ERROR_CANCELLED = "not sent: the campaign was cancelled"


def batch_size() -> int:
    return max(1, int(settings.CAMPAIGN_BATCH_SIZE))


def personalise_window() -> int:
    """Consumers per recommender call (a multiple of the write batch is best)."""
    return max(1, settings.CAMPAIGN_PERSONALISE_WINDOW)


def webhook_batch_size() -> int:
    return max(1, settings.CAMPAIGN_WEBHOOK_BATCH_SIZE)


class ActivationRefused(Exception):
    """The activation cannot go on; `reason` is written on the campaign for the merchant to read."""

    def __init__(self, reason: str, *, code: str):
        self.reason = reason
        self.code = code
        super().__init__(reason)


def audience_too_small_reason() -> str:
    return (
        f"The audience has fewer than {settings.MIN_AUDIENCE} consumers once excluded segments, suppressed "
        "consumers, frequency caps and consumers without express direct-marketing consent are removed, so it "
        "cannot be used for a campaign. Widen the included segments or loosen the exclusions."
    )


def processing_refused_reason(exc: ProcessingNotPermitted) -> str:
    return (
        "Campaign sends need an approved direct-marketing processing activity based on consumers' express "
        f"opt-in consent, and there is none ({exc.reason}). A privacy officer must approve one first."
    )


def personalisation_basis_check(campaign: Campaign) -> None:
    """Personalising reads consumers' behaviour for recommendations: that needs its own approved activity."""
    if campaign.personalised_products == 0:
        return
    try:
        processing_basis_require(purpose=Purpose.RECOMMENDATION)
    except ProcessingNotPermitted as exc:
        raise ActivationRefused(
            f"Personalisation needs an approved recommendation processing activity ({exc.reason}). Set the "
            "number of personalised products to 0, or ask a privacy officer to approve one.",
            code="personalisation_not_permitted",
        ) from exc


def direct_marketing_basis() -> ProcessingBasis:
    """The guard every activation step and export runs first; raises ActivationRefused otherwise."""
    try:
        basis = processing_basis_require(purpose=Purpose.DIRECT_MARKETING)
    except ProcessingNotPermitted as exc:
        raise ActivationRefused(processing_refused_reason(exc), code="processing_not_permitted") from exc
    if basis.legal_basis != LegalBasis.CONSENT:  # the register enforces this too; never send on anything else
        raise ActivationRefused(
            "The approved direct-marketing activity is not based on consent.", code="processing_not_permitted"
        )
    return basis


# --- locks -----------------------------------------------------------------------------------------


def _lock_key(campaign_id: int) -> int:
    return campaign_id % 2_147_483_647


@contextmanager
def campaign_run_lock(campaign_id: int) -> Iterator[bool]:
    """Yield True when this process may work on the campaign now (nobody else holds its lock)."""
    if connection.vendor != "postgresql":  # the embedded mode runs one process with eager tasks
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RUN_LOCK_NAMESPACE, _lock_key(campaign_id)])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK_NAMESPACE, _lock_key(campaign_id)])
            except DatabaseError:  # a broken connection has released the lock already
                logger.warning("campaign.lock_release_failed", extra={"fields": {"campaign_id": campaign_id}})


def _caps_lock() -> None:
    """Inside a transaction: serialise cap checks and delivery writes across all campaigns."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [CAPS_LOCK_NAMESPACE])


# --- audience resolution ---------------------------------------------------------------------------


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
    return set(rows) if consumer_ids is None else set(rows) & set(consumer_ids)


def _bitmap_of(values) -> BitMap:
    return BitMap(values.iterator(chunk_size=50_000))


def audience_resolve(
    *, campaign: Campaign, include: Sequence[SegmentMembers], exclude: Sequence[SegmentMembers], now: datetime
) -> AudienceResolution:
    """included segments − excluded − suppressed − frequency-capped, ∩ current express opt-in consent.

    Takes the segments' member bitmaps, so it can be tested (and reused) without refreshing segments.
    """
    included = BitMap.union(*(s.members for s in include)) if include else BitMap()
    excluded = BitMap.union(*(s.members for s in exclude)) if exclude else BitMap()
    counts = {"included": len(included)}
    remaining = included - excluded
    counts["excluded"] = counts["included"] - len(remaining)
    after = remaining - _bitmap_of(suppressed_consumer_ids(has_offer=campaign.has_offer))
    counts["suppressed"] = len(remaining) - len(after)
    remaining = after
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
    # The consent bitmap (tags layer) is brought up to date with every recorded change on each call; each
    # dispatch batch re-checks the consent ledger's current state as well, which is the final word.
    after = remaining & direct_marketing_consent_bitmap()
    counts["not_consented"] = len(remaining) - len(after)
    counts["audience"] = len(after)
    segments = {
        "include": [{"segment_id": s.segment_id, "definition_sha256": s.definition_sha256} for s in include],
        "exclude": [{"segment_id": s.segment_id, "definition_sha256": s.definition_sha256} for s in exclude],
    }
    return AudienceResolution(members=after, counts=counts, segments=segments)


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


def _members_array(members: BitMap) -> np.ndarray:
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
        control = int(control_mask(campaign.pk, _members_array(members), campaign.control_share).sum())
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


# --- writing deliveries ------------------------------------------------------------------------------


class _Catalogue:
    """Titles and prices of the merchant's own products, loaded as recommendations mention them."""

    def __init__(self, merchant_id: int):
        self.merchant_id = merchant_id
        self.products: dict[int, ProductInfo | None] = {}

    def load(self, product_ids: set[int]) -> None:
        missing = [pid for pid in product_ids if pid not in self.products]
        for start in range(0, len(missing), 5000):
            chunk = missing[start : start + 5000]
            found = Product.objects.filter(merchant_id=self.merchant_id, pk__in=chunk).values_list(
                "pk", "title", "price"
            )
            for pk, title, price in found:
                self.products[pk] = ProductInfo(title=title, price=price)
            for pid in chunk:
                # Anything not in this merchant's catalogue is dropped: messages never show others' products.
                self.products.setdefault(pid, None)


@dataclass
class _Renderer:
    campaign: Campaign
    title: CompiledTemplate
    body: CompiledTemplate
    catalogue: _Catalogue

    @classmethod
    def for_campaign(cls, campaign: Campaign) -> _Renderer:
        constants = campaign_constants(
            store_name=campaign.merchant.name,
            coupon_code=campaign.coupon_code,
            discount_percent=campaign.discount_percent,
        )
        return cls(
            campaign=campaign,
            title=CompiledTemplate(campaign.title_template, constants=constants),
            body=CompiledTemplate(campaign.body_template, constants=constants),
            catalogue=_Catalogue(campaign.merchant_id),
        )


def _recommendations(campaign: Campaign, consumer_ids: list[int]) -> dict[int, list[int]]:
    if campaign.personalised_products == 0 or not consumer_ids:
        return {}
    try:
        return recommend_for_consumers(
            merchant_id=campaign.merchant_id,
            consumer_ids=consumer_ids,
            n=campaign.personalised_products,
            exclude_purchased=True,
        )
    except ProcessingNotPermitted as exc:
        raise ActivationRefused(
            f"Personalisation needs an approved recommendation processing activity ({exc.reason}). Set the "
            "number of personalised products to 0, or ask a privacy officer to approve one.",
            code="personalisation_failed",
        ) from exc
    except (DatabaseError, MemoryError):
        raise
    except Exception as exc:  # the recommender's own refusal (no trained model, ...) is for the merchant to read
        raise ActivationRefused(f"Personalisation failed: {str(exc)[:300]}", code="personalisation_failed") from exc


TITLE_MAX = 400


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class _Row:
    consumer_id: int
    group: str
    product_ids: list[int]
    title: str
    body: str
    status: str
    last_error: str = ""


_STAGE_TABLE = "campaigns_delivery_stage"
_STAGE_COLUMNS = ("consumer", "group", "product_ids", "title", "body", "status", "last_error")


def _insert_rows(campaign_id: int, rows: list[_Row], created_at: datetime) -> None:
    """Write a batch of deliveries with ON CONFLICT (campaign, consumer) DO NOTHING.

    On PostgreSQL the rows are COPYed into a temporary staging table (emptied at commit) and moved with
    one INSERT … SELECT … ON CONFLICT DO NOTHING: about three times faster than binding arrays or
    bulk_create (benchmarks/bench_campaigns.py compares them). Elsewhere, bulk_create(ignore_conflicts).
    """
    if not rows:
        return
    if connection.vendor == "postgresql":
        meta, quote = Delivery._meta, connection.ops.quote_name
        columns = [quote(meta.get_field(name).column) for name in _STAGE_COLUMNS]
        # COPY and INSERT share a transaction: the staging table empties at commit.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE_TABLE} ("
                'consumer_id bigint, "group" text, product_ids jsonb, title text, body text, status text, '
                "last_error text) ON COMMIT DELETE ROWS"
            )
            # Empty it anyway: inside an enclosing transaction no commit has emptied it since the last batch.
            cursor.execute(f"DELETE FROM {_STAGE_TABLE}")  # noqa: S608 - a constant table name
            with cursor.cursor.copy(f"COPY {_STAGE_TABLE} ({', '.join(columns)}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(
                        (r.consumer_id, r.group, json.dumps(r.product_ids), r.title, r.body, r.status, r.last_error)
                    )
            target = ", ".join(
                [*columns, quote(meta.get_field("campaign").column), quote("created_at"), quote("attempts")]
            )
            cursor.execute(
                f"INSERT INTO {quote(meta.db_table)} ({target}) "  # noqa: S608 - names from model metadata only
                f"SELECT {', '.join(columns)}, %s, %s, 0 FROM {_STAGE_TABLE} "
                f"ON CONFLICT ({quote(meta.get_field('campaign').column)}, {quote(meta.get_field('consumer').column)}) "
                "DO NOTHING",
                [campaign_id, created_at],
            )
        return
    Delivery.objects.bulk_create(
        [
            Delivery(
                campaign_id=campaign_id,
                consumer_id=r.consumer_id,
                group=r.group,
                product_ids=r.product_ids,
                title=r.title,
                body=r.body,
                status=r.status,
                created_at=created_at,
                last_error=r.last_error,
            )
            for r in rows
        ],
        ignore_conflicts=True,
        batch_size=2000,
    )


@dataclass
class _RunContext:
    """What a step loads once and reuses for all its batches."""

    campaign: Campaign
    members: np.ndarray
    renderer: _Renderer
    # Recommendations fetched ahead for the next window of the audience, consumed batch by batch.
    recommended: dict[int, list[int]] = field(default_factory=dict)
    recommended_through: int = -1  # the last audience position the window covers

    def recommendations_for(self, start: int, stop: int, treatment_ids: list[int]) -> dict[int, list[int]]:
        """The batch's recommendations, asking the recommender once per window of PERSONALISE_WINDOW consumers.

        The batch recommender does per-call work (catalogue, popularity, the consumers' purchases) that pays
        off over large calls; a window is still bounded, and a crash costs at most one window's ranking.
        """
        if self.campaign.personalised_products == 0 or not treatment_ids:
            return {}
        if stop - 1 > self.recommended_through:
            window = self.members[start : start + max(personalise_window(), stop - start)]
            in_control = control_mask(self.campaign.pk, window, self.campaign.control_share)
            self.recommended = _recommendations(self.campaign, [int(i) for i in window[~in_control]])
            self.recommended_through = start + len(window) - 1
        return {cid: self.recommended.pop(cid) for cid in treatment_ids if cid in self.recommended}


def _run_context(campaign: Campaign) -> _RunContext:
    audience = CampaignAudience.objects.filter(campaign_id=campaign.pk).values_list("members", flat=True).first()
    members = _members_array(BitMap.deserialize(bytes(audience))) if audience is not None else np.empty(0, np.uint32)
    return _RunContext(campaign=campaign, members=members, renderer=_Renderer.for_campaign(campaign))


class _Superseded(Exception):
    """The campaign changed under this step (cancelled, resumed elsewhere): stop quietly."""


def _lock_campaign_for_batch(campaign_id: int, run_token: int, **expected) -> Campaign:
    campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
    if campaign.status != CampaignStatus.RUNNING or campaign.run_token != run_token:
        raise _Superseded
    for name, value in expected.items():
        if getattr(campaign, name) != value:
            raise _Superseded
    return campaign


def deliveries_write_batch(*, ctx: _RunContext, run_token: int) -> bool:
    """Personalise, render and write the next batch of the audience. Returns False when all are written."""
    campaign = ctx.campaign
    start = int(np.searchsorted(ctx.members, campaign.write_cursor, side="right"))
    ids = ctx.members[start : start + batch_size()]
    if len(ids) == 0:
        return False
    in_control = control_mask(campaign.pk, ids, campaign.control_share)
    treatment_ids = [int(i) for i in ids[~in_control]]
    recommended = ctx.recommendations_for(start, start + len(ids), treatment_ids)
    renderer = ctx.renderer
    n_products = campaign.personalised_products
    if recommended:
        renderer.catalogue.load({pid for pids in recommended.values() for pid in pids[:n_products]})
    products = renderer.catalogue.products

    rows_by_consumer: dict[int, _Row] = {}
    personalised_ids: set[int] = set()
    for consumer_id, control in zip(ids.tolist(), in_control.tolist(), strict=True):
        if control:
            rows_by_consumer[consumer_id] = _Row(consumer_id, Group.CONTROL, [], "", "", DeliveryStatus.HELD_OUT)
            continue
        product_ids = [pid for pid in recommended.get(consumer_id, ())[: n_products * 2] if products.get(pid)]
        product_ids = product_ids[:n_products]
        infos = [products[pid] for pid in product_ids]
        if product_ids:
            personalised_ids.add(consumer_id)
        rows_by_consumer[consumer_id] = _Row(
            consumer_id,
            Group.TREATMENT,
            product_ids,
            _clip(renderer.title.render(infos), TITLE_MAX),
            renderer.body.render(infos),
            DeliveryStatus.PENDING,
        )

    last_id = int(ids[-1])
    now = timezone.now()
    with transaction.atomic():
        _lock_campaign_for_batch(campaign.pk, run_token, write_cursor=campaign.write_cursor, phase=Phase.WRITING)
        _caps_lock()
        existing = (
            set(
                Delivery.objects.filter(consumers_in(list(rows_by_consumer)), campaign_id=campaign.pk).values_list(
                    "consumer_id", flat=True
                )
            )
            & rows_by_consumer.keys()
        )
        capped = frequency_capped_consumers(
            merchant_id=campaign.merchant_id,
            frequency_cap=campaign.frequency_cap,
            frequency_window_days=campaign.frequency_window_days,
            now=now,
            consumer_ids=[cid for cid in treatment_ids if cid not in existing],
            exclude_campaign_id=campaign.pk,
        )
        rows = []
        for consumer_id, row in rows_by_consumer.items():
            if consumer_id in existing:
                continue
            if consumer_id in capped:
                row = _Row(consumer_id, Group.TREATMENT, [], "", "", DeliveryStatus.WITHDRAWN, ERROR_FREQUENCY_CAP)
            rows.append(row)
        _insert_rows(campaign.pk, rows, now)
        written = len(rows)
        personalised = sum(1 for r in rows if r.consumer_id in personalised_ids and r.status == DeliveryStatus.PENDING)
        withdrawn = sum(1 for r in rows if r.status == DeliveryStatus.WITHDRAWN)
        Campaign.objects.filter(pk=campaign.pk).update(
            written_count=F("written_count") + written,
            personalised_count=F("personalised_count") + personalised,
            withdrawn_count=F("withdrawn_count") + withdrawn,
            write_cursor=last_id,
            heartbeat_at=now,
            updated_at=now,
        )
    campaign.write_cursor = last_id
    return True


# --- dispatch -------------------------------------------------------------------------------------------


def consumers_consented(ids: Sequence[int]) -> set[int]:
    """Of these consumers, those whose current direct-marketing consent is an express opt-in."""
    return set(
        ConsentState.objects.filter(
            consumers_in(ids),
            purpose=Purpose.DIRECT_MARKETING,
            status=ConsentStatus.GRANTED,
            kind=ConsentKind.EXPRESS,
        ).values_list("consumer_id", flat=True)
    ) & set(ids)


def consumers_reachable(consumer_ids: Sequence[int], *, has_offer: bool) -> set[int]:
    """Of these consumers, those who may receive a message right now: express opt-in consent, not suppressed."""
    if not consumer_ids:
        return set()
    scopes = [SuppressionScope.ALL, SuppressionScope.OFFERS] if has_offer else [SuppressionScope.ALL]
    suppressed = set(
        Suppression.objects.filter(consumers_in(consumer_ids), lifted_at__isnull=True, scope__in=scopes).values_list(
            "consumer_id", flat=True
        )
    )
    return consumers_consented(consumer_ids) - suppressed


def _withdrawal_reasons(consumer_ids: Sequence[int], reachable: set[int]) -> dict[int, str]:
    """Why each unreachable consumer is withdrawn (consent first, since it is what the law asks for)."""
    unreachable = [cid for cid in consumer_ids if cid not in reachable]
    if not unreachable:
        return {}
    consented = consumers_consented(unreachable)
    return {cid: (ERROR_SUPPRESSED if cid in consented else ERROR_CONSENT_WITHDRAWN) for cid in unreachable}


def _product_payload(product_ids: list[int], catalogue: _Catalogue) -> list[dict]:
    catalogue.load(set(product_ids))
    result = []
    for pid in product_ids:
        info = catalogue.products.get(pid)
        if info is not None:
            result.append({"id": pid, "title": info.title, "price": None if info.price is None else str(info.price)})
    return result


def deliveries_dispatch_batch(*, ctx: _RunContext, run_token: int) -> bool:
    """Send the next batch of pending messages. Returns False when every delivery has been dispatched.

    Consent and suppressions are re-checked per batch, so a withdrawal recorded after activation
    stops that consumer's message (status withdrawn).
    """
    campaign = ctx.campaign
    fields = ["id", "consumer_id", "status"]
    if campaign.channel == Channel.WEBHOOK:
        fields += ["title", "body", "product_ids", "consumer__pseudonym"]
    rows = list(
        Delivery.objects.filter(campaign_id=campaign.pk, consumer_id__gt=campaign.dispatch_cursor)
        .order_by("consumer_id")
        .values(*fields)[: batch_size()]
    )
    if not rows:
        return False
    first_id, last_id = campaign.dispatch_cursor, rows[-1]["consumer_id"]
    pending = [r for r in rows if r["status"] == DeliveryStatus.PENDING]
    reachable = consumers_reachable([r["consumer_id"] for r in pending], has_offer=campaign.has_offer)
    withdrawn_reason = _withdrawal_reasons([r["consumer_id"] for r in pending], reachable)
    to_send = [r for r in pending if r["consumer_id"] in reachable]

    # Requests made: (first and last consumer id of the slice sent, webhook result; None for the inbox).
    # The batch's rows are every delivery with first_id < consumer_id <= last_id, so once the
    # unreachable ones are withdrawn, "pending in a consumer-id range" is exactly the slice sent.
    outcomes: list[tuple[int, int, WebhookResult | None]] = []
    stop_reason = ""
    if campaign.channel == Channel.INBOX:
        outcomes.append((first_id + 1, last_id, None))  # publishing to the inbox is the status change itself
    else:
        _ensure_still_running(campaign.pk, run_token)
        chunk = webhook_batch_size()
        for start in range(0, len(to_send), chunk):
            part = to_send[start : start + chunk]
            result = webhook_post(_webhook_payload(campaign, part, ctx.renderer.catalogue))
            outcomes.append((part[0]["consumer_id"], part[-1]["consumer_id"], result))
            if not result.ok:
                stop_reason = (
                    f"The operator's notification service did not accept the messages: {result.error}. "
                    "The remaining messages were not sent."
                )
                break

    now = timezone.now()
    with transaction.atomic():
        _lock_campaign_for_batch(
            campaign.pk, run_token, dispatch_cursor=campaign.dispatch_cursor, phase=Phase.DISPATCHING
        )
        pending_now = Delivery.objects.filter(campaign_id=campaign.pk, status=DeliveryStatus.PENDING)
        dispatched = failed = withdrawn = 0
        for reason in set(withdrawn_reason.values()):
            consumers = [cid for cid, why in withdrawn_reason.items() if why == reason]
            withdrawn += pending_now.filter(consumer_id__in=consumers).update(
                status=DeliveryStatus.WITHDRAWN, last_error=reason
            )
        for lo, hi, result in outcomes:
            sent = pending_now.filter(consumer_id__gte=lo, consumer_id__lte=hi)
            if result is None:
                dispatched += sent.update(status=DeliveryStatus.DISPATCHED, dispatched_at=now)
            elif result.ok:
                dispatched += sent.update(
                    status=DeliveryStatus.DISPATCHED,
                    dispatched_at=now,
                    delivered_at=now,
                    attempts=F("attempts") + result.attempts,
                )
            else:
                failed += sent.update(
                    status=DeliveryStatus.FAILED,
                    last_error=result.error[:500],
                    attempts=F("attempts") + result.attempts,
                )
        Campaign.objects.filter(pk=campaign.pk).update(
            dispatched_count=F("dispatched_count") + dispatched,
            withdrawn_count=F("withdrawn_count") + withdrawn,
            failed_count=F("failed_count") + failed,
            dispatch_cursor=last_id,
            heartbeat_at=now,
            updated_at=now,
        )
    campaign.dispatch_cursor = last_id
    if stop_reason:
        raise ActivationRefused(stop_reason, code="webhook_failed")
    return True


def _webhook_payload(campaign: Campaign, rows: list[dict], catalogue: _Catalogue) -> dict:
    return {
        "campaign_id": campaign.pk,
        "merchant": {"id": campaign.merchant_id, "name": campaign.merchant.name},
        "sent_at": timezone.now().isoformat(),
        "messages": [
            {
                "delivery_id": r["id"],
                "consumer": r["consumer__pseudonym"],
                "title": r["title"],
                "body": r["body"],
                "coupon_code": campaign.coupon_code,
                "products": _product_payload(r["product_ids"], catalogue),
            }
            for r in rows
        ],
    }


def _ensure_still_running(campaign_id: int, run_token: int) -> None:
    """Right before sending to the outside world: stop if the campaign was cancelled meanwhile."""
    status, token = Campaign.objects.filter(pk=campaign_id).values_list("status", "run_token").get()
    if status != CampaignStatus.RUNNING or token != run_token:
        raise _Superseded


# --- the step ---------------------------------------------------------------------------------------


class StepOutcome(Enum):
    MORE = "more"  # budget spent, work remains: enqueue the next step
    DONE = "done"  # completed, failed or cancelled
    BUSY = "busy"  # another worker holds the campaign right now
    SUPERSEDED = "superseded"  # a newer run token took over, or the campaign is not running


def campaign_run_begin(*, campaign_id: int) -> int | None:
    """scheduled → running, with a new run token; None when the campaign is not waiting to start."""
    now = timezone.now()
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if campaign is None or campaign.status != CampaignStatus.SCHEDULED or campaign.is_series:
            return None
        campaign.status = CampaignStatus.RUNNING
        campaign.phase = Phase.RESOLVING
        campaign.started_at = now
        campaign.heartbeat_at = now
        campaign.run_token += 1
        campaign.save(update_fields=["status", "phase", "started_at", "heartbeat_at", "run_token", "updated_at"])
    logger.info("campaign.started", extra={"fields": {"campaign_id": campaign_id}})
    return campaign.run_token


MembersSource = Callable[..., tuple[list[SegmentMembers], list[SegmentMembers]]]


def campaign_activation_step(
    *,
    campaign_id: int,
    run_token: int,
    time_budget_s: float,
    actor: str = "task:campaigns.activate",
    members_source: MembersSource = campaign_segment_members,
) -> StepOutcome:
    """Advance a running campaign by as many batches as fit in the time budget.

    `members_source(campaign=, actor=)` gives the included and excluded segments' fresh members;
    the default refreshes the campaign's segments (tests may pass the bitmaps instead).
    """
    with campaign_run_lock(campaign_id) as acquired:
        if not acquired:
            return StepOutcome.BUSY
        campaign = Campaign.objects.select_related("merchant").filter(pk=campaign_id).first()
        if campaign is None or campaign.run_token != run_token:
            return StepOutcome.SUPERSEDED
        if campaign.status == CampaignStatus.CANCELLED:
            campaign_stop_pending(campaign_id=campaign_id, status=DeliveryStatus.WITHDRAWN, reason=ERROR_CANCELLED)
            return StepOutcome.DONE
        if campaign.status != CampaignStatus.RUNNING:
            return StepOutcome.SUPERSEDED
        Campaign.objects.filter(pk=campaign_id).update(steps=F("steps") + 1, heartbeat_at=timezone.now())
        deadline = time.monotonic() + time_budget_s
        try:
            basis = direct_marketing_basis()
            personalisation_basis_check(campaign)
            if campaign.phase in (Phase.NONE, Phase.RESOLVING):
                include, exclude = members_source(campaign=campaign, actor=actor)
                resolution = audience_resolve(campaign=campaign, include=include, exclude=exclude, now=timezone.now())
                campaign = campaign_audience_freeze(
                    campaign_id=campaign_id, resolution=resolution, basis=basis, actor=campaign.launched_by or actor
                )
                campaign = Campaign.objects.select_related("merchant").get(pk=campaign_id)
            ctx = _run_context(campaign)
            while True:
                if campaign.phase == Phase.WRITING:
                    if not deliveries_write_batch(ctx=ctx, run_token=run_token):
                        Campaign.objects.filter(pk=campaign_id, run_token=run_token).update(phase=Phase.DISPATCHING)
                        campaign.phase = Phase.DISPATCHING
                elif campaign.phase == Phase.DISPATCHING:
                    if not deliveries_dispatch_batch(ctx=ctx, run_token=run_token):
                        campaign_complete(campaign_id=campaign_id, run_token=run_token, basis=basis)
                        return StepOutcome.DONE
                else:
                    return StepOutcome.SUPERSEDED
                if time.monotonic() >= deadline:
                    return StepOutcome.MORE
        except _Superseded:
            return _after_superseded(campaign_id)
        except ActivationRefused as exc:
            campaign_fail(campaign_id=campaign_id, reason=exc.reason, code=exc.code)
            return StepOutcome.DONE


def _after_superseded(campaign_id: int) -> StepOutcome:
    status = Campaign.objects.filter(pk=campaign_id).values_list("status", flat=True).first()
    if status == CampaignStatus.CANCELLED:
        campaign_stop_pending(campaign_id=campaign_id, status=DeliveryStatus.WITHDRAWN, reason=ERROR_CANCELLED)
        return StepOutcome.DONE
    return StepOutcome.SUPERSEDED


def campaign_complete(*, campaign_id: int, run_token: int, basis: ProcessingBasis) -> None:
    now = timezone.now()
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != CampaignStatus.RUNNING or campaign.run_token != run_token:
            return
        campaign.status = CampaignStatus.COMPLETED
        campaign.phase = Phase.DONE
        campaign.completed_at = now
        campaign.heartbeat_at = now
        campaign.save(update_fields=["status", "phase", "completed_at", "heartbeat_at", "updated_at"])
        CampaignAudience.objects.filter(campaign_id=campaign_id).delete()
        audit_record(
            actor="task:campaigns.activate",
            action="campaign.completed",
            merchant_id=campaign.merchant_id,
            purpose=basis.purpose,
            legal_basis=basis.legal_basis,
            activity_id=basis.activity_id,
            object_type="Campaign",
            object_id=campaign.pk,
            counts=campaign_counts(campaign),
        )
    logger.info("campaign.completed", extra={"fields": {"campaign_id": campaign_id, **campaign_counts(campaign)}})


def campaign_counts(campaign: Campaign) -> dict[str, int]:
    return {
        "audience": campaign.audience_count,
        "treatment": campaign.treatment_count,
        "control": campaign.control_count,
        "personalised": campaign.personalised_count,
        "written": campaign.written_count,
        "dispatched": campaign.dispatched_count,
        "withdrawn": campaign.withdrawn_count,
        "failed": campaign.failed_count,
    }


def campaign_stop_pending(*, campaign_id: int, status: str, reason: str, include_unread_inbox: bool = False) -> int:
    """Mark every message not yet sent (and, on cancel, not yet read from the inbox) as not sent."""
    with transaction.atomic():
        Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        pending = Delivery.objects.filter(campaign_id=campaign_id, status=DeliveryStatus.PENDING)
        stopped = pending.update(status=status, last_error=reason)
        unread = 0
        if include_unread_inbox:
            unread = Delivery.objects.filter(
                campaign_id=campaign_id,
                campaign__channel=Channel.INBOX,
                status=DeliveryStatus.DISPATCHED,
                delivered_at__isnull=True,
            ).update(status=status, last_error=reason)
        counter = "failed_count" if status == DeliveryStatus.FAILED else "withdrawn_count"
        Campaign.objects.filter(pk=campaign_id).update(
            **{counter: F(counter) + stopped + unread},
            dispatched_count=F("dispatched_count") - unread,
        )
        CampaignAudience.objects.filter(campaign_id=campaign_id).delete()
    return stopped + unread


def campaign_fail(*, campaign_id: int, reason: str, code: str = "failed") -> None:
    """running/scheduled → failed with a reason the merchant can read; pending messages are not sent."""
    now = timezone.now()
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().filter(pk=campaign_id).first()
        if campaign is None or campaign.status not in (CampaignStatus.SCHEDULED, CampaignStatus.RUNNING):
            return
        campaign.status = CampaignStatus.FAILED
        campaign.failure_reason = reason
        campaign.completed_at = now
        campaign.save(update_fields=["status", "failure_reason", "completed_at", "updated_at"])
        campaign_stop_pending(campaign_id=campaign_id, status=DeliveryStatus.FAILED, reason=f"not sent: {reason}"[:500])
    logger.warning("campaign.failed", extra={"fields": {"campaign_id": campaign_id, "code": code}})
