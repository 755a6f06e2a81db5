"""Reads: a campaign's results day by day (opens, clicks and purchases per day, per group), released.

A day is a calendar day in the merchant's time zone. Only finished days are shown (today's figures would change
with every visit and each change would be a new release); each day's figure is released under
`campaign:<id>:group:<g>:<measure>:day:<YYYY-MM-DD>`, so it is paid for once and reads back the same afterwards.

- opened, clicked: consumers of the group with a tracked open (click) that day;
- purchased: consumers of the group who bought that day within their attribution window (an ingested purchase of
  this merchant's products, or a conversion the operator tracked), as the report's "bought" counts them.
The held-out group gets no message, so it has purchases only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db.models import DateTimeField, F, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from consumers.models import Event, EventType
from privacy.release import ReleasedCount
from privacy.services import release_figures

from .models import Campaign, Delivery, Group, TrackingEvent, TrackingKind
from .selectors import CAMPAIGN_PRECISION

MAX_DAYS = 120
SERIES = (
    (Group.TREATMENT, "opened"),
    (Group.TREATMENT, "clicked"),
    (Group.TREATMENT, "purchased"),
    (Group.CONTROL, "purchased"),
)


def day_subject(campaign_id: int, group: str, measure: str, day: date) -> str:
    return f"campaign:{campaign_id}:group:{group}:{measure}:day:{day.isoformat()}"


@dataclass(frozen=True)
class DailyFigures:
    day: date
    figures: dict[tuple[str, str], ReleasedCount]  # (group, measure) → released count


def _days(campaign: Campaign, zone: ZoneInfo, now: datetime) -> list[date]:
    start = campaign.started_at or campaign.launched_at
    if start is None:
        return []
    first = timezone.localtime(start, zone).date()
    last = timezone.localtime(now, zone).date() - timedelta(days=1)  # finished days only
    end_of_window = first + timedelta(days=campaign.attribution_window_days + 1)
    last = min(last, end_of_window, first + timedelta(days=MAX_DAYS - 1))
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def campaign_daily_exact(campaign: Campaign, *, days: list[date], zone: ZoneInfo) -> dict[tuple[str, str, date], int]:
    """Exact counts {(group, measure, day): consumers} (for the release layer and officers)."""
    if not days:
        return {}
    lo = datetime.combine(days[0], datetime.min.time(), zone)
    hi = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), zone)
    window = timedelta(days=campaign.attribution_window_days)
    seen: dict[tuple[str, str, date], set[int]] = defaultdict(set)

    measure_of = {TrackingKind.OPENED: "opened", TrackingKind.CLICKED: "clicked", TrackingKind.CONVERTED: "purchased"}
    tracked = (
        TrackingEvent.objects.filter(delivery__campaign_id=campaign.pk, occurred_at__gte=lo, occurred_at__lt=hi)
        .annotate(sent_at=Coalesce("delivery__dispatched_at", "delivery__created_at"))
        .values_list("kind", "occurred_at", "delivery__consumer_id", "delivery__group", "sent_at")
    )
    for kind, occurred_at, consumer_id, group, sent_at in tracked.iterator(chunk_size=5000):
        if kind == TrackingKind.CONVERTED and not sent_at <= occurred_at < sent_at + window:
            continue  # outside the attribution window: not one of the campaign's purchases
        seen[(group, measure_of[kind], timezone.localtime(occurred_at, zone).date())].add(consumer_id)

    # Ingested purchases of this merchant's products within each consumer's window after their message: read per
    # purchase (through the (campaign, consumer) unique index), never per member of the audience.
    delivery = Delivery.objects.filter(campaign_id=campaign.pk, consumer_id=OuterRef("consumer_id"))
    purchases = (
        Event.objects.filter(
            merchant_id=campaign.merchant_id,
            event_type=EventType.PURCHASE,
            occurred_at__gte=lo,
            occurred_at__lt=hi,
        )
        .annotate(
            group=Subquery(delivery.values("group")[:1]),
            sent_at=Subquery(
                delivery.annotate(at=Coalesce("dispatched_at", "created_at")).values("at")[:1],
                output_field=DateTimeField(),
            ),
        )
        .filter(group__isnull=False, occurred_at__gte=F("sent_at"))
        .order_by()
        .values_list("consumer_id", "group", "occurred_at", "sent_at")
    )
    for consumer_id, group, occurred_at, sent_at in purchases.iterator(chunk_size=20000):
        if occurred_at < sent_at + window:
            seen[(group, "purchased", timezone.localtime(occurred_at, zone).date())].add(consumer_id)
    return {key: len(ids) for key, ids in seen.items()}


def campaign_daily_public(campaign: Campaign, *, now: datetime | None = None) -> list[DailyFigures]:
    """Each finished day's opens, clicks and purchases per group, every figure released."""
    zone = campaign.merchant.zone
    days = _days(campaign, zone, now or timezone.now())
    exact = campaign_daily_exact(campaign, days=days, zone=zone)
    figures = [
        (day_subject(campaign.pk, group, measure, day), exact.get((group, measure, day), 0))
        for day in days
        for group, measure in SERIES
    ]
    released = release_figures(merchant_id=campaign.merchant_id, figures=figures, precision=CAMPAIGN_PRECISION)
    result = []
    for i, day in enumerate(days):
        chunk = released[i * len(SERIES) : (i + 1) * len(SERIES)]
        result.append(DailyFigures(day=day, figures=dict(zip(SERIES, chunk, strict=True))))
    return result
