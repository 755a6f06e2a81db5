"""Launching a campaign to a 1M-consumer audience: resolve, personalise (top-5), write every delivery, dispatch.

Target (issue 5): the launch, personalisation and writing all deliveries ≤ 120 s on PostgreSQL on 2 cores.
BENCH_SCALE shrinks the audience (0.05 → 50 000 consumers). Setting up the population is not timed and is
reused by later runs: consumers with express consent, the merchant's catalogue (2 000 products in 20
categories), a tag whose bitmap holds the audience and a segment on it, and behaviour (four events per
consumer, each consumer drawn to one category) on which an ALS model is trained and activated. Each run
deletes the previous run's deliveries first, so frequency caps do not shrink the audience between runs.

The phases are the same functions a Celery step calls (campaigns.activation), run in this process one after
another, so each phase can be timed. A second figure compares the two ways of writing deliveries side by side:
COPY into a staging table and one INSERT … SELECT … ON CONFLICT DO NOTHING per batch (what PostgreSQL uses)
against Django's bulk_create(ignore_conflicts=True) (what SQLite uses).
"""

from __future__ import annotations

import io
import time
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

from benchmarks import BenchContext, Row

N_FULL = 1_000_000
PSEUDONYM_PREFIX = "bc"  # bench consumers' pseudonyms: "bc" + 62 hex digits of their index
TARGET_S = 120.0
N_PRODUCTS = 2_000
TOP_K = 5


def _pseudonym(i: int) -> str:
    return f"{PSEUDONYM_PREFIX}{i:062x}"


def _copy(table: str, columns: list[str], rows) -> None:
    """COPY rows (tuples) into a table: the fast way to set up a million rows."""
    from django.db import connection

    from dbtools.pgcopy import copy_text

    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join("\\N" if v is None else str(v) for v in row))
        buffer.write("\n")
    with connection.cursor() as cursor:
        copy_text(cursor, table, columns, buffer.getvalue())


def _population(n: int):
    """n bench consumers with express direct-marketing consent, a merchant with a catalogue; returns ids."""
    from django.db import transaction
    from django.utils import timezone
    from pyroaring import BitMap

    from consumers.models import Consumer, Product
    from merchants.models import Merchant
    from privacy.models import ConsentKind, ConsentState, ConsentStatus, Purpose

    merchant, _ = Merchant.objects.get_or_create(slug="bench-campaigns", defaults={"name": "Bench Outdoor"})
    lo, hi = _pseudonym(0), _pseudonym(n)
    existing = set(
        Consumer.objects.filter(pseudonym__gte=lo, pseudonym__lt=hi).values_list("pseudonym", flat=True).iterator()
    )
    now = timezone.now().isoformat()
    missing = [_pseudonym(i) for i in range(n) if _pseudonym(i) not in existing]
    with transaction.atomic():
        if missing:
            _copy(
                Consumer._meta.db_table,
                ["pseudonym", "age_range", "country", "gender", "created_at", "updated_at"],
                ((p, "25-34", "SG", "", now, now) for p in missing),
            )
    ids = BitMap(
        Consumer.objects.filter(pseudonym__gte=lo, pseudonym__lt=hi).values_list("pk", flat=True).iterator(50_000)
    )
    consented = BitMap(
        ConsentState.objects.filter(
            consumer_id__gte=ids.min(), consumer_id__lte=ids.max(), purpose=Purpose.DIRECT_MARKETING
        )
        .values_list("consumer_id", flat=True)
        .iterator(50_000)
    )
    with transaction.atomic():
        lacking = ids - consented
        if lacking:
            _copy(
                ConsentState._meta.db_table,
                ["consumer_id", "purpose", "status", "kind", "occurred_at", "updated_at"],
                (
                    (cid, Purpose.DIRECT_MARKETING, ConsentStatus.GRANTED, ConsentKind.EXPRESS, now, now)
                    for cid in lacking
                ),
            )
    have = Product.objects.filter(merchant=merchant).count()
    if have < N_PRODUCTS:
        Product.objects.bulk_create(
            [
                Product(
                    merchant=merchant,
                    sku=f"B-{i}",
                    title=f"Trail product {i}",
                    category="outdoor",
                    price=Decimal("10") + i % 90,
                )
                for i in range(have, N_PRODUCTS)
            ],
            batch_size=5000,
        )
    return merchant, ids


def _approve_activities() -> None:
    from django.contrib.auth import get_user_model

    from privacy.models import ActivityStatus, LegalBasis, ProcessingActivity, Purpose
    from privacy.services import activity_approve

    officer, _ = get_user_model().objects.get_or_create(username="bench-officer", defaults={"is_staff": True})
    wanted = {
        Purpose.DIRECT_MARKETING: dict(legal_basis=LegalBasis.CONSENT),
        Purpose.RECOMMENDATION: dict(legal_basis=LegalBasis.BUSINESS_IMPROVEMENT, assessment="Benchmark."),
        Purpose.TAGGING: dict(legal_basis=LegalBasis.BUSINESS_IMPROVEMENT, assessment="Benchmark."),
    }
    for purpose, fields in wanted.items():
        if not ProcessingActivity.objects.filter(purpose=purpose, status=ActivityStatus.APPROVED).exists():
            activity = ProcessingActivity.objects.create(
                name=f"bench {purpose}", purpose=purpose, description="benchmark", **fields
            )
            activity_approve(activity=activity, officer=officer)


BENCH_TAG = ("country", "XB")  # a user-assigned ISO code: no real country's tag
CATEGORIES = 20
EVENTS_PER_CONSUMER = 4


def _segment(merchant, members):
    """A segment whose fresh snapshot is the bench audience (tag bitmap as tagging leaves it), or None."""
    try:
        from segments.models import Segment
        from segments.services import segment_create
    except ImportError:
        return None
    from pyroaring import BitMap

    from tags.bitmaps import DIRECT_MARKETING_CONSENT_KEY, LIVE_CONSUMERS_KEY, bitmap_load, bitmap_store, tag_key
    from tags.models import Tag

    family, value = BENCH_TAG
    tag, _ = Tag.objects.get_or_create(
        family=family,
        value=value,
        defaults=dict(label="Bench", definition="Benchmark consumers.", rule_version="bench"),
    )
    if len(bitmap_load(tag_key(tag.pk))) != len(members):
        bitmap_store(key=tag_key(tag.pk), bitmap=members)
        bitmap_store(key=LIVE_CONSUMERS_KEY, bitmap=BitMap(bitmap_load(LIVE_CONSUMERS_KEY)) | members)
        bitmap_store(
            key=DIRECT_MARKETING_CONSENT_KEY, bitmap=BitMap(bitmap_load(DIRECT_MARKETING_CONSENT_KEY)) | members
        )
        Tag.objects.filter(pk=tag.pk).update(consumer_count=len(members))
    segment = Segment.objects.filter(merchant=merchant, name="bench audience").first()
    return segment or segment_create(
        merchant=merchant, name="bench audience", actor="bench", expression=f"{family}:{value}"
    )


def _behaviour_and_model(merchant, members) -> str:
    """Events for every bench consumer and an active recommender trained on them; returns a note."""
    try:
        from recommend.selectors import serving_model
        from recommend.services import recommender_train, training_config
    except ImportError:
        return "recommender not on main yet: no model"
    import numpy as np
    from django.db import transaction
    from django.utils import timezone

    from consumers.models import Event, EventType, Product

    products = np.array(Product.objects.filter(merchant=merchant).order_by("pk").values_list("pk", flat=True))
    have = Event.objects.filter(merchant=merchant).count()
    wanted = len(members) * EVENTS_PER_CONSUMER
    if have < wanted:
        Event.objects.filter(merchant=merchant).delete()
        rng = np.random.default_rng(7)
        ids = np.frombuffer(members.to_array(), dtype=np.uint32).astype(np.int64)
        per_category = len(products) // CATEGORIES
        # Each consumer is drawn to one category (its index modulo 20): structure ALS can learn and
        # global popularity cannot, so the trained model beats the baseline and is activated.
        category = np.arange(len(ids)) % CATEGORIES
        picks = category[:, None] * per_category + rng.integers(0, per_category, (len(ids), EVENTS_PER_CONSUMER))
        types = rng.choice([EventType.VIEW, EventType.CART, EventType.PURCHASE], size=picks.shape, p=[0.6, 0.3, 0.1])
        ages = rng.integers(60, 60 * 86_400, size=picks.shape).astype("timedelta64[s]")
        occurred = np.datetime_as_string(np.datetime64(int(timezone.now().timestamp()), "s") - ages) + "+00:00"
        with transaction.atomic():
            _copy(
                Event._meta.db_table,
                [
                    "source_key",
                    "consumer_id",
                    "merchant_id",
                    "product_id",
                    "event_type",
                    "occurred_at",
                    "quantity",
                    "price",
                    "discount",
                    "order_ref",
                    "device",
                ],
                (
                    (
                        f"bc{i:010x}{j:x}",
                        int(ids[i]),
                        merchant.pk,
                        int(products[picks[i, j]]),
                        int(types[i, j]),
                        occurred[i, j],
                        1,
                        "20.00",
                        "0",
                        "",
                        "",
                    )
                    for i in range(len(ids))
                    for j in range(EVENTS_PER_CONSUMER)
                ),
            )
    model = serving_model()
    if model is None or model.consumers < len(members):
        started = time.perf_counter()
        run = recommender_train(
            config=training_config(algorithm="als", params={"factors": 32, "iterations": 8}), actor="bench"
        )
        return f"ALS trained in {time.perf_counter() - started:.0f} s (untimed), activated: {run.beats_baseline}"
    return f"ALS model {model.pk} on {model.consumers:,} consumers"


def _clear_previous_runs(merchant) -> None:
    from django.db import connection

    from campaigns.models import Campaign, Delivery, TrackingEvent

    ids = list(Campaign.objects.filter(merchant=merchant).values_list("pk", flat=True))
    if ids:
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {TrackingEvent._meta.db_table} WHERE delivery_id IN "
                f"(SELECT id FROM {Delivery._meta.db_table} WHERE campaign_id = ANY(%s))",
                [ids],
            )
            cursor.execute(f"DELETE FROM {Delivery._meta.db_table} WHERE campaign_id = ANY(%s)", [ids])
        Campaign.objects.filter(pk__in=ids).delete()


def _personalisation_available() -> tuple[bool, str]:
    try:
        from recommend.services import recommend_for_consumers  # noqa: F401
    except ImportError:
        return False, "recommender not on main yet: no personalisation"
    return True, ""


@contextmanager
def _timed_recommender():
    """Adds up the time spent inside the recommender during the write phase (measurement only)."""
    from campaigns import deliveries

    spent = [0.0]
    original = deliveries._recommendations

    def timed(campaign, consumer_ids):
        started = time.perf_counter()
        try:
            return original(campaign, consumer_ids)
        finally:
            spent[0] += time.perf_counter() - started

    deliveries._recommendations = timed
    try:
        yield spent
    finally:
        deliveries._recommendations = original


def _launch(merchant, members, segment, *, personalised: int) -> dict[str, float]:
    """One launch, phase by phase, exactly as a step runs them; returns seconds per phase.

    With segments available the audience comes from a fresh refresh of the segment (as in production);
    otherwise from the audience bitmap directly.
    """
    from django.utils import timezone

    from campaigns.activation import campaign_complete, campaign_run_begin
    from campaigns.audience import SegmentMembers, audience_resolve, campaign_audience_freeze, campaign_segment_members
    from campaigns.basis import direct_marketing_basis
    from campaigns.deliveries import deliveries_write_batch, run_context
    from campaigns.dispatch import deliveries_dispatch_batch
    from campaigns.models import Campaign, CampaignStatus, Phase

    campaign = Campaign.objects.create(
        merchant=merchant,
        name=f"bench {timezone.now():%H:%M:%S}",
        title_template="{store_name}: picked for you" + (" — {product_1_title}" if personalised else ""),
        body_template="New this week" + (": {products}." if personalised else "."),
        personalised_products=personalised,
        control_share=Decimal("0.1"),
        status=CampaignStatus.SCHEDULED,
        launched_by="bench",
        launched_at=timezone.now(),
    )
    if segment is not None:
        campaign.include_segments.set([segment])
    timings: dict[str, float] = {}
    start = time.perf_counter()
    token = campaign_run_begin(campaign_id=campaign.pk)
    basis = direct_marketing_basis()
    if segment is not None:
        include, exclude = campaign_segment_members(campaign=campaign, actor="bench")
    else:
        include, exclude = [SegmentMembers(0, members, "0" * 64)], []
    resolution = audience_resolve(campaign=campaign, include=include, exclude=exclude, now=timezone.now())
    campaign = campaign_audience_freeze(campaign_id=campaign.pk, resolution=resolution, basis=basis, actor="bench")
    timings["resolve"] = time.perf_counter() - start

    mark = time.perf_counter()
    ctx = run_context(Campaign.objects.select_related("merchant").get(pk=campaign.pk))
    with _timed_recommender() as recommender_seconds:
        while deliveries_write_batch(ctx=ctx, run_token=token):
            pass
    timings["write"] = time.perf_counter() - mark
    timings["recommender"] = recommender_seconds[0]

    mark = time.perf_counter()
    Campaign.objects.filter(pk=campaign.pk).update(phase=Phase.DISPATCHING)
    ctx.campaign.phase = Phase.DISPATCHING
    while deliveries_dispatch_batch(ctx=ctx, run_token=token):
        pass
    campaign_complete(campaign_id=campaign.pk, run_token=token, basis=basis)
    timings["dispatch"] = time.perf_counter() - mark
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    assert campaign.written_count == len(members), (campaign.written_count, len(members))
    timings["personalised"] = campaign.personalised_count

    from campaigns.selectors import campaign_report

    mark = time.perf_counter()
    report = campaign_report(campaign)
    timings["report"] = time.perf_counter() - mark
    assert report.treatment.size + report.control.size == len(members)
    timings.update(_report_page(campaign))
    return timings


def _report_page(campaign) -> dict[str, float]:
    """What the report page computes, at the campaign's size: the released report, the A/B rows and the daily
    series, after a realistic week of tracking (a fifth of the treatment opened two days ago, a twentieth clicked)."""
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Campaign, CampaignVariant, Delivery
    from campaigns.selectors import campaign_report_public, campaign_variants_report_public
    from campaigns.timeseries import campaign_daily_public

    now = timezone.now()
    Campaign.objects.filter(pk=campaign.pk).update(started_at=now - timedelta(days=3))
    campaign.refresh_from_db()
    for position in (1, 2):
        CampaignVariant.objects.create(
            campaign=campaign, position=position, title_template=f"v{position}", body_template="x", share=50
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_delivery SET variant = 1 + (consumer_id %% 2) WHERE campaign_id = %s AND "
            "\"group\" = 'treatment'",
            [campaign.pk],
        )
        for kind, modulus in (("opened", 5), ("clicked", 20)):
            cursor.execute(
                "INSERT INTO campaigns_trackingevent (delivery_id, kind, occurred_at, idempotency_key, recorded_at) "
                "SELECT id, %s, %s, %s, %s FROM campaigns_delivery WHERE campaign_id = %s AND "
                "\"group\" = 'treatment' AND consumer_id %% %s = 0",
                [kind, now - timedelta(days=2), kind, now, campaign.pk, modulus],
            )
    timings = {}
    mark = time.perf_counter()
    campaign_report_public(campaign)
    timings["report_public"] = time.perf_counter() - mark
    mark = time.perf_counter()
    rows = campaign_variants_report_public(campaign)
    timings["variants"] = time.perf_counter() - mark
    assert len(rows) == 2
    mark = time.perf_counter()
    days = campaign_daily_public(campaign)
    timings["daily"] = time.perf_counter() - mark
    assert days, "the daily series has no finished day"
    timings["tracking_rows"] = Delivery.objects.filter(campaign_id=campaign.pk, tracking_events__isnull=False).count()
    return timings


def _write_comparison(merchant, members, n: int) -> tuple[float, float]:
    """Seconds to write n deliveries: COPY + INSERT … ON CONFLICT per batch vs Django's bulk_create."""
    from django.db import connection, transaction
    from django.utils import timezone

    from campaigns import deliveries
    from campaigns.models import Campaign, Delivery, DeliveryStatus, Group

    ids = [int(i) for i in members[:n]]
    rows = [
        deliveries._Row(cid, Group.TREATMENT, [1, 2, 3, 4, 5], "Bench Outdoor: picked for you", "x" * 80, "pending")
        for cid in ids
    ]
    results = []
    for method in ("copy_staged", "bulk_create"):
        campaign = Campaign.objects.create(merchant=merchant, name=f"bench write {method}", title_template="t")
        start = time.perf_counter()
        for offset in range(0, len(rows), 10_000):
            with transaction.atomic():
                if method == "copy_staged":
                    deliveries._insert_rows(campaign.pk, rows[offset : offset + 10_000], timezone.now())
                else:
                    Delivery.objects.bulk_create(
                        [
                            Delivery(
                                campaign_id=campaign.pk,
                                consumer_id=r.consumer_id,
                                group=r.group,
                                product_ids=r.product_ids,
                                title=r.title,
                                body=r.body,
                                status=DeliveryStatus.PENDING,
                                created_at=timezone.now(),
                            )
                            for r in rows[offset : offset + 10_000]
                        ],
                        ignore_conflicts=True,
                        batch_size=2000,
                    )
        results.append(time.perf_counter() - start)
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {Delivery._meta.db_table} WHERE campaign_id = %s", [campaign.pk])
        campaign.delete()
    return results[0], results[1]


def run(ctx: BenchContext) -> list[Row]:
    if not ctx.on_postgres:
        return [Row("campaigns", "launch to 1M consumers", None, "s", skipped="needs PostgreSQL (DATABASE_URL)")]
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    n = max(2_000, int(N_FULL * ctx.scale))
    setup_start = time.perf_counter()
    _approve_activities()
    merchant, members = _population(n)
    segment = _segment(merchant, members)
    model_note = _behaviour_and_model(merchant, members)
    _clear_previous_runs(merchant)
    setup_s = time.perf_counter() - setup_start
    can_personalise, why_not = _personalisation_available()
    timings = _launch(merchant, members, segment, personalised=TOP_K if can_personalise else 0)
    total = timings["resolve"] + timings["write"] + timings["dispatch"]
    personalised_note = why_not or f"{int(timings['personalised']):,} personalised; {model_note}"
    launch_and_write = timings["resolve"] + timings["write"]
    scale_note = f"{len(members):,} consumers" + ("" if n == N_FULL else f" (BENCH_SCALE={ctx.scale})")
    rows = [
        Row(
            "campaigns",
            f"launch: resolve + personalise top-{TOP_K} + write all deliveries",
            launch_and_write,
            "s",
            target=f"≤ {TARGET_S:.0f} s at 1M",
            note=f"{scale_note}; {personalised_note}",
        ),
        Row(
            "campaigns",
            "  resolve: fresh segment snapshot, caps, consent, suppressions"
            if segment is not None
            else "  resolve: caps, consent, suppressions (no segments on main yet)",
            timings["resolve"],
            "s",
            note=scale_note,
        ),
        Row(
            "campaigns",
            "  personalise, render, write deliveries",
            timings["write"],
            "s",
            note=f"{scale_note}; of which in the recommender {timings['recommender']:.1f} s",
        ),
        Row("campaigns", "  dispatch to the inbox (consent re-checked)", timings["dispatch"], "s", note=scale_note),
        Row("campaigns", "launch end to end, incl. dispatch", total, "s", note=f"setup (untimed) {setup_s:.0f} s"),
        Row(
            "campaigns",
            "report: funnel, conversions from purchases for both groups, uplift",
            timings["report"],
            "s",
            note=scale_note,
        ),
        Row(
            "campaigns",
            "report page: released report (funnels, revenue, uplift)",
            timings["report_public"],
            "s",
            note=f"{scale_note}; {int(timings['tracking_rows']):,} tracking events",
        ),
        Row("campaigns", "report page: A/B rows (2 variants)", timings["variants"], "s", note=scale_note),
        Row(
            "campaigns", "report page: daily series (opens, clicks, purchases)", timings["daily"], "s", note=scale_note
        ),
    ]
    compare_n = max(1_000, min(len(members), int(100_000 * max(ctx.scale, 0.1))))
    copy_s, bulk_s = _write_comparison(merchant, members, compare_n)
    rows.append(
        Row(
            "campaigns",
            f"write {compare_n:,} deliveries: COPY + INSERT…ON CONFLICT vs bulk_create",
            copy_s,
            "s",
            ratio=f"{bulk_s / copy_s:.1f}× faster" if copy_s else "",
            note=f"bulk_create {bulk_s:.2f} s",
        )
    )
    _clear_previous_runs(merchant)
    return rows
