"""Uplift: incremental conversions from targeting persuadables against targeting by propensity.

On a campaign with a planted heterogeneous effect (campaigns.uplift.planted_campaign: loyal buyers who buy
anyway, persuadables, lost causes and sleeping dogs; 80 % treatment, 20 % control), a meta-learner is fitted on
70 % of the rows and evaluated on the held-out 30 % (treatment and control): the incremental conversions of the
top 20 % by predicted uplift against the top 20 % by predicted propensity (the conversion probability when
messaged), with the Qini coefficient and uplift@20 %. The planted truth (ranking by the true effect) is printed
beside them as the ceiling. Goal: uplift / propensity >= 1.5x. BENCH_SCALE shrinks the campaign.

The forecast on a draft's review step (campaigns.uplift.campaign_forecast_exact) learns from a completed campaign
of FORECAST_DELIVERIES deliveries (consumers who browsed respond to the message; earlier buyers buy anyway) and
scores the draft's audience: timed cold (the model fitted) with every core for OpenMP, as the web process did
before the fit was pinned, cold with BLAS_THREADS (default 1), and warm (the fitted model found in the cache).
The world is made once in the configured database and reused by later runs; each cold run drops the cached model.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

from benchmarks import BenchContext, Row, median_time

NAME = "uplift"
FORECAST_DELIVERIES = 600  # the campaign size colleagues reported the slow review page with
FORECAST_PREFIX = "bu"  # bench consumers' pseudonyms: "bu" + 62 hex digits of their index


def run(ctx: BenchContext) -> list[Row]:
    from campaigns.uplift import UpliftModel, incremental_at, planted_campaign, split_holdout, uplift_evaluate

    n = max(5_000, int(60_000 * ctx.scale))
    data = planted_campaign(n=n, seed=7)
    held = split_holdout(n, fraction=0.3, seed=0)
    rows: list[Row] = []
    truth = incremental_at(data.true_uplift[held], data.treatment[held], data.converted[held], 0.2)
    for learner in ("t", "x"):
        started = time.perf_counter()
        model = UpliftModel(learner=learner).fit(data.features[~held], data.treatment[~held], data.converted[~held])
        result = uplift_evaluate(model, data.features[held], data.treatment[held], data.converted[held])
        seconds = time.perf_counter() - started
        by_propensity = result.incremental_top_20_by_propensity
        rows += [
            Row(
                NAME,
                f"{learner}-learner: incremental conversions, top 20 % by uplift",
                result.incremental_top_20,
                "conversions",
                target=">= 1.5x propensity",
                ratio=f"{result.incremental_top_20 / by_propensity:.2f}x propensity"
                if by_propensity > 0
                else "propensity earns <= 0",
                note=f"{int(held.sum()):,} held-out rows; planted truth {truth:.0f}; fit+score {seconds:.1f} s",
            ),
            Row(NAME, f"{learner}-learner: incremental, top 20 % by propensity", by_propensity, "conversions"),
            Row(NAME, f"{learner}-learner: Qini coefficient", result.qini, ""),
            Row(NAME, f"{learner}-learner: uplift@20 %", result.uplift_at_20, ""),
        ]
    return rows + _forecast_rows()


def _forecast_world():
    """A merchant with a completed campaign of FORECAST_DELIVERIES deliveries (70 % treated) and a draft whose
    audience is the campaign's browsers and buyers; made once, found again by later runs."""
    import numpy as np
    from django.core.management import call_command
    from django.utils import timezone

    from benchmarks.bench_campaigns import _approve_activities
    from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, Group
    from consumers.models import Consumer, Event, EventType, Product
    from merchants.models import Merchant
    from segments.models import Segment
    from segments.selectors import segment_latest_snapshot
    from segments.services import segment_members_write

    call_command("migrate", verbosity=0)
    _approve_activities()
    merchant, _ = Merchant.objects.get_or_create(slug="bench-uplift", defaults={"name": "Bench Uplift"})
    n = FORECAST_DELIVERIES
    pseudonyms = [f"{FORECAST_PREFIX}{i:062x}" for i in range(n)]
    Consumer.objects.bulk_create([Consumer(pseudonym=p) for p in pseudonyms], ignore_conflicts=True)
    ids = list(Consumer.objects.filter(pseudonym__in=pseudonyms).order_by("pseudonym").values_list("pk", flat=True))
    browsers, buyers = ids[: n // 2], ids[n // 2 : n // 2 + n // 4]
    like = Campaign.objects.filter(merchant=merchant, name="Bench spring sale").first()
    if like is None:
        product, _ = Product.objects.get_or_create(merchant=merchant, sku="BU-1", defaults={"title": "Bench"})
        started = timezone.now() - timedelta(days=20)
        like = Campaign.objects.create(
            merchant=merchant,
            name="Bench spring sale",
            title_template="Hello from {store_name}",
            body_template="Something new for you.",
            status=CampaignStatus.COMPLETED,
            launched_at=started,
            started_at=started,
            completed_at=started,
        )
        rng = np.random.default_rng(5)
        deliveries, events = [], []
        for consumer_id in ids:
            treated = rng.random() < 0.7
            deliveries.append(
                Delivery(
                    campaign=like,
                    consumer_id=consumer_id,
                    group=Group.TREATMENT if treated else Group.CONTROL,
                    status=DeliveryStatus.DISPATCHED if treated else DeliveryStatus.PENDING,
                    created_at=started,
                    dispatched_at=started if treated else None,
                )
            )
            before = started - timedelta(days=10)
            if consumer_id in browsers:
                events += [(consumer_id, EventType.VIEW, before)] * 3
            if consumer_id in buyers:
                events.append((consumer_id, EventType.PURCHASE, before))
            rate = (0.6 if treated else 0.05) if consumer_id in browsers else 0.5 if consumer_id in buyers else 0.02
            if rng.random() < rate:
                events.append((consumer_id, EventType.PURCHASE, started + timedelta(days=1)))
        Delivery.objects.bulk_create(deliveries)
        Event.objects.bulk_create(
            Event(
                source_key=f"bench-uplift-{k}",
                consumer_id=c,
                merchant=merchant,
                product=product,
                event_type=t,
                occurred_at=when,
            )
            for k, (c, t, when) in enumerate(events)
        )
    segment, _ = Segment.objects.get_or_create(
        merchant=merchant, name="Bench browsers and buyers", defaults={"definition": "fixed", "created_by": "bench"}
    )
    if segment_latest_snapshot(segment_id=segment.pk) is None:
        segment_members_write(
            segment_id=segment.pk, members=sorted(browsers + buyers), method="bench", definition="t", actor="bench"
        )
    draft, _ = Campaign.objects.get_or_create(
        merchant=merchant,
        name="Bench next sale",
        defaults={"title_template": "Hi", "body_template": "Hi", "status": CampaignStatus.DRAFT},
    )
    draft.include_segments.set([segment])
    return draft, like


def _forecast_rows() -> list[Row]:
    from django.core.cache import cache
    from django.test import override_settings

    from campaigns.uplift import campaign_forecast_exact, campaign_rows, rows_model_key

    draft, like = _forecast_world()
    key = rows_model_key(
        data=campaign_rows(campaign_ids=[like.pk], merchant_id=draft.merchant_id), merchant_id=draft.merchant_id
    )

    def cold():
        cache.delete(key)
        return campaign_forecast_exact(campaign=draft, like_campaign_id=like.pk)

    def warm():
        return campaign_forecast_exact(campaign=draft, like_campaign_id=like.pk)

    cores = os.cpu_count() or 1
    with override_settings(BLAS_THREADS=cores):
        every_core, _ = median_time(cold, repeat=3, warmup=0)
    pinned, _ = median_time(cold, repeat=3, warmup=0)
    cold()
    cached, _ = median_time(warm, repeat=5, warmup=0)
    note = f"{FORECAST_DELIVERIES} deliveries learned from, {FORECAST_DELIVERIES * 3 // 4} consumers scored"
    return [
        Row(
            NAME,
            f"forecast, cold: model fitted on every core ({cores} OpenMP threads, as before)",
            every_core,
            "s",
            note=note,
        ),
        Row(
            NAME,
            "forecast, cold: model fitted on BLAS_THREADS threads",
            pinned,
            "s",
            ratio=f"{every_core / pinned:.1f}x faster" if pinned else "",
            note=note,
        ),
        Row(
            NAME,
            "forecast, warm: fitted model from the cache",
            cached,
            "s",
            ratio=f"{pinned / cached:.1f}x faster than cold" if cached else "",
            note=note,
        ),
    ]
