"""Day-by-day figures: opens, clicks and purchases per finished day (merchant's time zone), released per day."""

from datetime import UTC, datetime, timedelta

from campaigns.models import CampaignStatus, Group, Phase, TrackingEvent, TrackingKind
from campaigns.timeseries import campaign_daily_exact, campaign_daily_public, day_subject
from consumers.models import Product
from tests.release_helpers import released_public

from .conftest import make_campaign, make_consumers
from .test_selectors import _deliveries, _purchase


def test_days_count_opens_clicks_and_attributed_purchases_in_local_days(merchant, other_merchant):
    merchant.time_zone = "Asia/Singapore"  # UTC+8: 20:00 UTC is the next local day
    merchant.save()
    sent = datetime(2030, 5, 1, 2, 0, tzinfo=UTC)  # 1 May, 10:00 in Singapore
    campaign = make_campaign(
        merchant, status=CampaignStatus.COMPLETED, phase=Phase.DONE, attribution_window_days=3, started_at=sent
    )
    product = Product.objects.create(merchant=merchant, sku="T1", title="Tent")
    foreign = Product.objects.create(merchant=other_merchant, sku="L1", title="Lipstick")
    ids = make_consumers(300)
    treatment = _deliveries(campaign, ids[:200], Group.TREATMENT, sent)
    _deliveries(campaign, ids[200:], Group.CONTROL, sent)
    for d in treatment[:120]:
        TrackingEvent.objects.create(delivery=d, kind=TrackingKind.OPENED, occurred_at=sent, idempotency_key="o")
    for d in treatment[:30]:  # 20:00 UTC on 1 May is 2 May in Singapore
        at = sent + timedelta(hours=18)
        TrackingEvent.objects.create(delivery=d, kind=TrackingKind.CLICKED, occurred_at=at, idempotency_key="c")
    for cid in ids[:10]:
        _purchase(cid, merchant, product, sent + timedelta(days=1))
    _purchase(ids[10], merchant, product, sent + timedelta(days=5))  # after the window: not counted
    _purchase(ids[11], other_merchant, foreign, sent + timedelta(days=1))  # another merchant's: not counted
    for cid in ids[200:205]:
        _purchase(cid, merchant, product, sent + timedelta(days=2))

    now = sent + timedelta(days=10)
    days = [d.day for d in campaign_daily_public(campaign, now=now)]
    assert days[0].isoformat() == "2030-05-01" and len(days) == 5  # the window (3 days) and one more, then stops
    exact = campaign_daily_exact(campaign, days=days, zone=merchant.zone)
    may = {n: days[n - 1] for n in range(1, 6)}
    assert exact[(Group.TREATMENT, "opened", may[1])] == 120
    assert exact[(Group.TREATMENT, "clicked", may[2])] == 30
    assert exact[(Group.TREATMENT, "purchased", may[2])] == 10
    assert exact[(Group.CONTROL, "purchased", may[3])] == 5
    assert sum(n for (g, m, _), n in exact.items() if m == "purchased") == 15
    daily = campaign_daily_public(campaign, now=now)
    shown = daily[0].figures[(Group.TREATMENT, "opened")].public()
    assert shown == released_public(day_subject(campaign.pk, Group.TREATMENT, "opened", may[1]), 120)


def test_only_finished_days_are_shown(merchant):
    sent = datetime(2030, 5, 1, 2, 0, tzinfo=UTC)
    campaign = make_campaign(merchant, status=CampaignStatus.RUNNING, phase=Phase.DISPATCHING, started_at=sent)
    assert campaign_daily_public(campaign, now=sent + timedelta(hours=3)) == []
    assert len(campaign_daily_public(campaign, now=sent + timedelta(days=1, hours=1))) == 1
