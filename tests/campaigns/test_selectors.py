from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from campaigns.models import CampaignStatus, Delivery, DeliveryStatus, Group, Phase, TrackingEvent, TrackingKind
from campaigns.selectors import (
    REVENUE_CLAMP_MINOR,
    campaign_progress,
    campaign_report,
    campaign_report_public,
    campaign_subject,
)
from campaigns.stats import Z_95, uplift_two_proportions
from consumers.models import Event, EventType, Product
from privacy.release import clamped_sum, keyed_noise, release_key, released_rate, sum_from_noisy
from tests.release_helpers import released_count, released_public

from .conftest import make_campaign, make_consumers


def _deliveries(campaign, consumer_ids, group, sent_at):
    status = DeliveryStatus.DISPATCHED if group == Group.TREATMENT else DeliveryStatus.HELD_OUT
    Delivery.objects.bulk_create(
        [
            Delivery(
                campaign=campaign,
                consumer_id=cid,
                group=group,
                status=status,
                created_at=sent_at,
                dispatched_at=sent_at if group == Group.TREATMENT else None,
            )
            for cid in consumer_ids
        ]
    )
    return list(Delivery.objects.filter(campaign=campaign, consumer_id__in=consumer_ids).order_by("consumer_id"))


def _purchase(consumer_id, merchant, product, at, price="10.00", quantity=1, discount="0"):
    Event.objects.create(
        source_key=f"p-{consumer_id}-{at.timestamp()}-{merchant.pk}",
        consumer_id=consumer_id,
        merchant=merchant,
        product=product,
        event_type=EventType.PURCHASE,
        occurred_at=at,
        price=Decimal(price),
        quantity=quantity,
        discount=Decimal(discount),
    )


def test_report_reads_conversions_for_both_groups_and_matches_the_formula(merchant, other_merchant):
    sent = timezone.now() - timedelta(days=10)
    campaign = make_campaign(merchant, status=CampaignStatus.COMPLETED, phase=Phase.DONE, attribution_window_days=7)
    product = Product.objects.create(merchant=merchant, sku="T1", title="Tent")
    foreign = Product.objects.create(merchant=other_merchant, sku="L1", title="Lipstick")
    ids = make_consumers(500)
    treatment = _deliveries(campaign, ids[:300], Group.TREATMENT, sent)
    control = _deliveries(campaign, ids[300:], Group.CONTROL, sent)

    # treatment: 40 tracked conversions (order value 25), 20 ingested purchases (2 × 10 = 20: the price is the unit
    # price paid, its discount already taken off; subtracting it again gave 19)
    for d in treatment[:40]:
        TrackingEvent.objects.create(
            delivery=d,
            kind=TrackingKind.CONVERTED,
            order_value=Decimal("25"),
            occurred_at=sent + timedelta(days=1),
            idempotency_key="converted",
        )
    for d in treatment[40:60]:
        _purchase(d.consumer_id, merchant, product, sent + timedelta(days=2), quantity=2, discount="1")
    # one order reported both ways is counted once, at the larger value
    _purchase(treatment[0].consumer_id, merchant, product, sent + timedelta(days=1), price="30")
    for d in treatment[:150]:
        TrackingEvent.objects.create(delivery=d, kind=TrackingKind.OPENED, occurred_at=sent, idempotency_key="opened")
    for d in treatment[:70]:
        TrackingEvent.objects.create(delivery=d, kind=TrackingKind.CLICKED, occurred_at=sent, idempotency_key="c")
    # control: 20 real purchases inside the window...
    for d in control[:20]:
        _purchase(d.consumer_id, merchant, product, sent + timedelta(days=3))
    # ...and ones that must not count: after the window, before the send, another merchant's products
    for d in control[20:30]:
        _purchase(d.consumer_id, merchant, product, sent + timedelta(days=8))
    for d in control[30:40]:
        _purchase(d.consumer_id, merchant, product, sent - timedelta(hours=1))
    for d in control[40:50]:
        _purchase(d.consumer_id, other_merchant, foreign, sent + timedelta(days=1))

    report = campaign_report(campaign)  # exact: what the release layer is given, never shown to merchants
    t, c = report.treatment, report.control
    assert (t.size, t.sent, t.opened, t.clicked, t.converted) == (300, 300, 150, 70, 60)
    assert (c.size, c.converted) == (200, 20)
    assert t.revenue == Decimal("30") + 39 * Decimal("25") + 20 * Decimal("20")
    assert c.revenue == Decimal("200.00")
    p_t, p_c = 60 / 300, 20 / 200
    se = ((p_t * (1 - p_t) / 300) + (p_c * (1 - p_c) / 200)) ** 0.5
    assert report.uplift.absolute == pytest.approx(0.1)
    assert report.uplift.ci_low == pytest.approx(0.1 - Z_95 * se)
    assert report.uplift.ci_high == pytest.approx(0.1 + Z_95 * se)
    assert report.uplift_reported
    expected_incremental = (t.revenue / 300 - c.revenue / 200) * 300
    assert report.incremental_revenue == expected_incremental.quantize(Decimal("0.01"))

    # What the merchant sees: every count released under its subject, rates and uplift from released counts only.
    shown = campaign_report_public(campaign)
    for group, exact in (("treatment", t), ("control", c)):
        funnel = getattr(shown, group)
        for measure in ("size", "sent", "opened", "clicked", "converted"):
            subject = campaign_subject(campaign.pk, measure, group)
            assert getattr(funnel, measure).public() == released_public(subject, getattr(exact, measure))
        size = released_count(campaign_subject(campaign.pk, "size", group), exact.size)
        converted = released_count(campaign_subject(campaign.pk, "converted", group), exact.converted)
        assert funnel.conversion_rate == released_rate(converted, size)
        assert funnel.conversion_rate != exact.conversion_rate
    # Revenue: a per-consumer clamped sum (one order reported both ways counts once, at 30).
    per_consumer = [30_00] + [25_00] * 39 + [19_00] * 20
    total = clamped_sum(per_consumer, clamp=REVENUE_CLAMP_MINOR)
    subject = campaign_subject(campaign.pk, "converted", "treatment")
    key = release_key(subject=subject, value=total, measure=f"sum:revenue:{REVENUE_CLAMP_MINOR}", precision="standard")
    noisy = total + REVENUE_CLAMP_MINOR * keyed_noise(key=key, sigma=20)
    expected = sum_from_noisy(
        noisy=noisy, clamp=REVENUE_CLAMP_MINOR, precision="standard", count=released_count(subject, 60)
    )
    assert shown.treatment.revenue.value == expected.value
    t_size = released_count(campaign_subject(campaign.pk, "size", "treatment"), 300)
    c_size = released_count(campaign_subject(campaign.pk, "size", "control"), 200)
    t_conv = released_count(campaign_subject(campaign.pk, "converted", "treatment"), 60)
    c_conv = released_count(campaign_subject(campaign.pk, "converted", "control"), 20)
    if not c_conv.suppressed:
        expected_uplift = uplift_two_proportions(
            treatment_conversions=t_conv._noisy,
            treatment_size=t_size._noisy,
            control_conversions=c_conv._noisy,
            control_size=c_size._noisy,
        )
        assert shown.uplift == expected_uplift
    else:  # control's 20 buyers are below the threshold: no uplift, no rate that would give them away
        assert shown.uplift is None and shown.control.conversion_rate is None and shown.incremental_revenue is None


def test_uplift_is_not_reported_for_a_control_group_under_the_minimum(merchant):
    campaign = make_campaign(merchant, status=CampaignStatus.COMPLETED, phase=Phase.DONE)
    ids = make_consumers(250)
    now = timezone.now()
    _deliveries(campaign, ids[:200], Group.TREATMENT, now)
    _deliveries(campaign, ids[200:], Group.CONTROL, now)
    report = campaign_report(campaign)
    assert not report.uplift_reported and "at least 100" in report.note
    shown = campaign_report_public(campaign)
    assert shown.uplift is None and "large enough to be shown" in shown.note


def test_progress_shows_rounded_counts_and_percentages(merchant):
    campaign = make_campaign(
        merchant,
        status=CampaignStatus.RUNNING,
        phase=Phase.DISPATCHING,
        audience_count=12_345,
        treatment_count=11_111,
        control_count=1_234,
        written_count=12_345,
        dispatched_count=5_555,
        withdrawn_count=12,
    )
    progress = campaign_progress(campaign)
    # While the launch runs, no count is released (a moving count would be a new release at every poll).
    assert progress.audience is None and progress.dispatched is None and progress.withdrawn is None
    assert progress.percent_written == 100 and progress.percent_dispatched == 50

    campaign.phase, campaign.status = Phase.DONE, CampaignStatus.COMPLETED
    progress = campaign_progress(campaign)
    assert progress.audience.public() == released_public(campaign_subject(campaign.pk, "audience"), 12_345)
    assert progress.dispatched.public() == released_public(campaign_subject(campaign.pk, "dispatched"), 5_555)
    assert progress.withdrawn.value is None and progress.withdrawn.display.startswith("fewer than")
