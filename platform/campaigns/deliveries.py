"""Writing deliveries: personalise, render and write one delivery per consumer of the frozen audience, one batch
at a time, under the cross-campaign frequency-cap lock."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Field
from django.utils import timezone
from pyroaring import BitMap

from consumers.models import Product
from dbtools.backend import on_postgresql
from dbtools.locks import CAMPAIGN_CAPS
from dbtools.pgcopy import copy_rows, staging_table
from privacy.services import ProcessingNotPermitted
from recommend.services import recommend_for_consumers

from .assignment import control_mask, variant_positions
from .audience import consumers_in, frequency_capped_consumers, members_array
from .basis import ActivationRefused
from .messages import CompiledTemplate, ProductInfo, campaign_constants
from .models import (
    Campaign,
    CampaignAudience,
    CampaignStatus,
    CampaignVariant,
    Delivery,
    DeliveryStatus,
    Group,
    Phase,
)

ERROR_FREQUENCY_CAP = "not sent: the consumer reached a frequency cap while the campaign was being written"


def batch_size() -> int:
    return max(1, int(settings.CAMPAIGN_BATCH_SIZE))


def personalise_window() -> int:
    """Consumers per recommender call (a multiple of the write batch is best)."""
    return max(1, settings.CAMPAIGN_PERSONALISE_WINDOW)


def _caps_lock() -> None:
    """Inside a transaction: serialise cap checks and delivery writes across all campaigns (so frequency caps
    hold under concurrent launches)."""
    CAMPAIGN_CAPS.hold_for_transaction(0)


class Catalogue:
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
class Renderer:
    campaign: Campaign
    title: CompiledTemplate
    body: CompiledTemplate
    catalogue: Catalogue
    # A/B/n: position → (title, body) templates, and the shares the positions are picked by. Empty: one message.
    variants: dict[int, tuple[CompiledTemplate, CompiledTemplate]] = field(default_factory=dict)
    shares: list[int] = field(default_factory=list)
    winner: int | None = None

    @classmethod
    def for_campaign(cls, campaign: Campaign) -> Renderer:
        constants = campaign_constants(
            store_name=campaign.merchant.name,
            coupon_code=campaign.coupon_code,
            discount_percent=campaign.discount_percent,
        )
        variants = list(campaign_variants(campaign))
        return cls(
            campaign=campaign,
            title=CompiledTemplate(campaign.title_template, constants=constants),
            body=CompiledTemplate(campaign.body_template, constants=constants),
            catalogue=Catalogue(campaign.merchant_id),
            variants={
                v.position: (
                    CompiledTemplate(v.title_template, constants=constants),
                    CompiledTemplate(v.body_template, constants=constants),
                )
                for v in variants
            },
            shares=[v.share for v in variants],
            winner=campaign_winner(campaign) if variants else None,
        )

    def positions(self, consumer_ids: np.ndarray) -> np.ndarray | None:
        """Each treatment consumer's variant (None for a one-message campaign); everyone gets a chosen winner."""
        if not self.variants:
            return None
        if self.winner is not None:
            return np.full(len(consumer_ids), self.winner, dtype=np.uint8)
        return variant_positions(self.campaign.pk, consumer_ids, self.shares)

    def templates(self, position: int | None) -> tuple[CompiledTemplate, CompiledTemplate]:
        if position is None or position not in self.variants:
            return self.title, self.body
        return self.variants[position]


def campaign_variants(campaign: Campaign) -> list[CampaignVariant]:
    """A campaign's message variants in order; empty for a one-message campaign."""
    return list(CampaignVariant.objects.filter(campaign_id=campaign.pk).order_by("position"))


def campaign_winner(campaign: Campaign) -> int | None:
    """The variant every treatment consumer gets: this campaign's chosen winner, or its series' one."""
    if campaign.winner_variant is not None:
        return campaign.winner_variant
    if campaign.parent_id is not None:
        return Campaign.objects.filter(pk=campaign.parent_id).values_list("winner_variant", flat=True).first()
    return None


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
    variant: int | None = None


_STAGE_TABLE = "campaigns_delivery_stage"
_STAGE_COLUMNS = ("consumer", "group", "product_ids", "title", "body", "status", "last_error", "variant")
_STAGE_COLUMNS_SQL = (
    'consumer_id bigint, "group" text, product_ids jsonb, title text, body text, status text, last_error text, '
    "variant smallint"
)


def _db_column(name: str) -> str:
    """The database column of one of Delivery's concrete fields."""
    field = Delivery._meta.get_field(name)
    if not isinstance(field, Field) or not field.column:
        raise LookupError(f"Delivery.{name} is not a column")
    return field.column


def _insert_rows(campaign_id: int, rows: list[_Row], created_at: datetime) -> None:
    """Write a batch of deliveries with ON CONFLICT (campaign, consumer) DO NOTHING.

    On PostgreSQL the rows are COPYed into a temporary staging table (emptied at commit) and moved with
    one INSERT … SELECT … ON CONFLICT DO NOTHING: about three times faster than binding arrays or
    bulk_create (benchmarks/bench_campaigns.py compares them). Elsewhere, bulk_create(ignore_conflicts).
    """
    if not rows:
        return
    if on_postgresql():
        quote = connection.ops.quote_name
        columns = [quote(_db_column(name)) for name in _STAGE_COLUMNS]
        with connection.cursor() as cursor, staging_table(cursor, _STAGE_TABLE, _STAGE_COLUMNS_SQL) as stage:
            copy_rows(
                cursor,
                stage,
                columns,
                (
                    (
                        r.consumer_id,
                        r.group,
                        json.dumps(r.product_ids),
                        r.title,
                        r.body,
                        r.status,
                        r.last_error,
                        r.variant,
                    )
                    for r in rows
                ),
            )
            target = ", ".join([*columns, quote(_db_column("campaign")), quote("created_at"), quote("attempts")])
            cursor.execute(
                f"INSERT INTO {quote(Delivery._meta.db_table)} ({target}) "  # noqa: S608 - names from model metadata only
                f"SELECT {', '.join(columns)}, %s, %s, 0 FROM {stage} "
                f"ON CONFLICT ({quote(_db_column('campaign'))}, {quote(_db_column('consumer'))}) "
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
                variant=r.variant,
            )
            for r in rows
        ],
        ignore_conflicts=True,
        batch_size=2000,
    )


@dataclass
class RunContext:
    """What a step loads once and reuses for all its batches."""

    campaign: Campaign
    members: np.ndarray
    renderer: Renderer
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


def run_context(campaign: Campaign) -> RunContext:
    audience = CampaignAudience.objects.filter(campaign_id=campaign.pk).values_list("members", flat=True).first()
    members = members_array(BitMap.deserialize(bytes(audience))) if audience is not None else np.empty(0, np.uint32)
    return RunContext(campaign=campaign, members=members, renderer=Renderer.for_campaign(campaign))


class Superseded(Exception):
    """The campaign changed under this step (cancelled, resumed elsewhere): stop quietly."""


def lock_campaign_for_batch(campaign_id: int, run_token: int, **expected) -> Campaign:
    campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
    if campaign.status != CampaignStatus.RUNNING or campaign.run_token != run_token:
        raise Superseded
    for name, value in expected.items():
        if getattr(campaign, name) != value:
            raise Superseded
    return campaign


def deliveries_write_batch(*, ctx: RunContext, run_token: int) -> bool:
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

    positions = renderer.positions(ids)
    variant_of = positions.tolist() if positions is not None else [None] * len(ids)
    rows_by_consumer: dict[int, _Row] = {}
    personalised_ids: set[int] = set()
    for consumer_id, control, variant in zip(ids.tolist(), in_control.tolist(), variant_of, strict=True):
        if control:
            rows_by_consumer[consumer_id] = _Row(consumer_id, Group.CONTROL, [], "", "", DeliveryStatus.HELD_OUT)
            continue
        product_ids = [pid for pid in recommended.get(consumer_id, ())[: n_products * 2] if products.get(pid)]
        product_ids = product_ids[:n_products]
        infos = [info for pid in product_ids if (info := products[pid]) is not None]
        if product_ids:
            personalised_ids.add(consumer_id)
        title, body = renderer.templates(variant)
        rows_by_consumer[consumer_id] = _Row(
            consumer_id,
            Group.TREATMENT,
            product_ids,
            _clip(title.render(infos), TITLE_MAX),
            body.render(infos),
            DeliveryStatus.PENDING,
            variant=variant,
        )

    last_id = int(ids[-1])
    now = timezone.now()
    with transaction.atomic():
        lock_campaign_for_batch(campaign.pk, run_token, write_cursor=campaign.write_cursor, phase=Phase.WRITING)
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
                row = _Row(
                    consumer_id,
                    Group.TREATMENT,
                    [],
                    "",
                    "",
                    DeliveryStatus.WITHDRAWN,
                    ERROR_FREQUENCY_CAP,
                    variant=row.variant,
                )
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
