"""Reads: a merchant's campaigns, their progress, and their results (funnel, conversions, uplift, revenue)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import (
    Count,
    DateTimeField,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, Greatest

from consumers.models import Event, EventType
from merchants.models import Merchant
from tags.reach import public_count as tags_public_count
from tags.reach import round_significant

from .models import Campaign, CampaignStatus, Delivery, DeliveryStatus, Group, Phase, TrackingEvent, TrackingKind
from .stats import Uplift, uplift_two_proportions


def campaigns_for_merchant(merchant: Merchant | int) -> QuerySet[Campaign]:
    """The one way API and portal code reaches campaigns: scoped to a merchant."""
    return Campaign.objects.filter(merchant=merchant).select_related("merchant")


@dataclass(frozen=True)
class PublicCount:
    """A count of consumers as a merchant may see it: hidden below MIN_AUDIENCE, else 2 significant figures."""

    value: int | None
    display: str


def round_2sf(n: int) -> int:
    return round_significant(n, 2)


def public_count(n: int) -> PublicCount:
    """The platform's one rule and wording for counts merchants see (tags.reach.public_count)."""
    shown = tags_public_count(n)
    return PublicCount(shown["size"], shown["display"])


def public_count_or_zero(n: int) -> PublicCount:
    """As public_count, but a true zero is shown as 0 (nothing happened is not a small cell)."""
    return PublicCount(0, "0") if n == 0 else public_count(n)


@dataclass(frozen=True)
class Progress:
    phase: str
    percent_written: int
    percent_dispatched: int
    audience: PublicCount
    written: PublicCount
    dispatched: PublicCount
    withdrawn: PublicCount
    failed: PublicCount


def campaign_progress(campaign: Campaign) -> Progress:
    """Where a launch is, as merchants may see it (counts rounded, small ones hidden)."""
    audience = campaign.audience_count
    treatment = campaign.treatment_count

    def percent(done: int, total: int) -> int:
        if campaign.status == CampaignStatus.COMPLETED:
            return 100
        return min(100, int(100 * done / total)) if total else 0

    settled = campaign.dispatched_count + campaign.withdrawn_count + campaign.failed_count
    return Progress(
        phase=campaign.phase,
        percent_written=percent(campaign.written_count, audience),
        percent_dispatched=percent(settled, treatment),
        audience=public_count_or_zero(audience),
        written=public_count_or_zero(campaign.written_count),
        dispatched=public_count_or_zero(campaign.dispatched_count),
        withdrawn=public_count_or_zero(campaign.withdrawn_count),
        failed=public_count_or_zero(campaign.failed_count),
    )


# --- the report -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupFunnel:
    """Exact figures for one group; the API shows merchants the counts rounded."""

    size: int
    sent: int
    withdrawn: int
    failed: int
    opened: int
    clicked: int
    converted: int
    revenue: Decimal

    @property
    def conversion_rate(self) -> float | None:
        return self.converted / self.size if self.size else None

    @property
    def revenue_per_consumer(self) -> Decimal | None:
        return (self.revenue / self.size).quantize(Decimal("0.01")) if self.size else None


@dataclass(frozen=True)
class PublicFunnel:
    """One group's funnel as merchants may see it: counts through public_count_or_zero, and the per-consumer
    rates hidden for a group under MIN_AUDIENCE (with its size hidden, a rate would give it away)."""

    size: PublicCount
    sent: PublicCount
    withdrawn: PublicCount
    failed: PublicCount
    opened: PublicCount
    clicked: PublicCount
    converted: PublicCount
    conversion_rate: float | None
    revenue: Decimal
    revenue_per_consumer: Decimal | None


def public_funnel(funnel: GroupFunnel) -> PublicFunnel:
    """The one rule for what of a group's funnel merchants see, shared by the API and the portal."""
    large_enough = funnel.size >= settings.MIN_AUDIENCE
    return PublicFunnel(
        size=public_count_or_zero(funnel.size),
        sent=public_count_or_zero(funnel.sent),
        withdrawn=public_count_or_zero(funnel.withdrawn),
        failed=public_count_or_zero(funnel.failed),
        opened=public_count_or_zero(funnel.opened),
        clicked=public_count_or_zero(funnel.clicked),
        converted=public_count_or_zero(funnel.converted),
        conversion_rate=funnel.conversion_rate if large_enough else None,
        revenue=funnel.revenue,
        revenue_per_consumer=funnel.revenue_per_consumer if large_enough else None,
    )


@dataclass(frozen=True)
class CampaignReport:
    campaign_id: int
    status: str
    attribution_window_days: int
    treatment: GroupFunnel
    control: GroupFunnel
    uplift: Uplift
    incremental_revenue: Decimal | None
    uplift_reported: bool
    note: str


def _purchase_value():
    """The value of one ingested purchase event: price × quantity − discount."""
    return ExpressionWrapper(
        Coalesce(F("price"), Value(Decimal("0"))) * F("quantity") - F("discount"),
        output_field=DecimalField(max_digits=14, decimal_places=2),
    )


def campaign_funnels(campaign: Campaign) -> dict[str, GroupFunnel]:
    """Per group: size, sent, opened, clicked, converted and attributed revenue.

    A delivery converts when, within the attribution window after its send (the dispatch time for
    treatment, the assignment time for the held-out control), the operator tracked a conversion for
    it or the consumer made an ingested purchase of this merchant's products. Its revenue is the
    larger of the two sources, so one order reported both ways is not counted twice.
    """
    window = timedelta(days=campaign.attribution_window_days)
    deliveries = Delivery.objects.filter(campaign_id=campaign.pk).annotate(
        sent_at=Coalesce("dispatched_at", "created_at"),
    )
    deliveries = deliveries.annotate(
        window_end=ExpressionWrapper(F("sent_at") + Value(window), output_field=DateTimeField())
    )
    purchases = Event.objects.filter(
        consumer_id=OuterRef("consumer_id"),
        merchant_id=campaign.merchant_id,
        event_type=EventType.PURCHASE,
        occurred_at__gte=OuterRef("sent_at"),
        occurred_at__lt=OuterRef("window_end"),
    )
    purchase_value = (
        purchases.order_by().values("consumer_id").annotate(total=Sum(_purchase_value())).values("total")[:1]
    )
    tracked = TrackingEvent.objects.filter(delivery_id=OuterRef("pk"))
    tracked_conversions = tracked.filter(
        kind=TrackingKind.CONVERTED, occurred_at__gte=OuterRef("sent_at"), occurred_at__lt=OuterRef("window_end")
    )
    tracked_value = (
        tracked_conversions.order_by()
        .values("delivery_id")
        .annotate(total=Sum(Coalesce(F("order_value"), Value(Decimal("0")))))
        .values("total")[:1]
    )
    money = DecimalField(max_digits=14, decimal_places=2)
    rows = deliveries.annotate(
        has_purchase=Exists(purchases),
        has_tracked=Exists(tracked_conversions),
        opened=Exists(tracked.filter(kind=TrackingKind.OPENED)),
        clicked=Exists(tracked.filter(kind=TrackingKind.CLICKED)),
        value=Greatest(
            Coalesce(Subquery(purchase_value, output_field=money), Value(Decimal("0")), output_field=money),
            Coalesce(Subquery(tracked_value, output_field=money), Value(Decimal("0")), output_field=money),
            output_field=money,
        ),
    )
    converted = Q(has_purchase=True) | Q(has_tracked=True)
    aggregated = rows.values("group").annotate(
        size=Count("pk"),
        sent=Count("pk", filter=Q(status=DeliveryStatus.DISPATCHED)),
        withdrawn_n=Count("pk", filter=Q(status=DeliveryStatus.WITHDRAWN)),
        failed_n=Count("pk", filter=Q(status=DeliveryStatus.FAILED)),
        opened_n=Count("pk", filter=Q(opened=True)),
        clicked_n=Count("pk", filter=Q(clicked=True)),
        converted_n=Count("pk", filter=converted),
        revenue=Sum("value", filter=converted),
    )
    funnels: dict[str, GroupFunnel] = {
        group: GroupFunnel(0, 0, 0, 0, 0, 0, 0, Decimal("0")) for group in (Group.TREATMENT, Group.CONTROL)
    }
    for row in aggregated.order_by():
        funnels[row["group"]] = GroupFunnel(
            size=row["size"],
            sent=row["sent"],
            withdrawn=row["withdrawn_n"],
            failed=row["failed_n"],
            opened=row["opened_n"],
            clicked=row["clicked_n"],
            converted=row["converted_n"],
            revenue=Decimal(row["revenue"] or 0).quantize(Decimal("0.01")),
        )
    return funnels


def campaign_report(campaign: Campaign) -> CampaignReport:
    funnels = campaign_funnels(campaign)
    treatment, control = funnels[Group.TREATMENT], funnels[Group.CONTROL]
    uplift = uplift_two_proportions(
        treatment_conversions=treatment.converted,
        treatment_size=treatment.size,
        control_conversions=control.converted,
        control_size=control.size,
    )
    minimum = settings.MIN_AUDIENCE
    uplift_reported = treatment.size >= minimum and control.size >= minimum
    note = ""
    if campaign.phase in (Phase.NONE, Phase.RESOLVING) and campaign.status != CampaignStatus.COMPLETED:
        note = "The campaign has not been sent yet."
    elif not uplift_reported:
        note = (
            f"Uplift is reported only when both the treatment and the control group have at least {minimum} "
            "consumers; raise the control share or widen the audience."
        )
    incremental = None
    if uplift_reported and treatment.revenue_per_consumer is not None and control.revenue_per_consumer is not None:
        incremental = ((treatment.revenue / treatment.size - control.revenue / control.size) * treatment.size).quantize(
            Decimal("0.01")
        )
    return CampaignReport(
        campaign_id=campaign.pk,
        status=campaign.status,
        attribution_window_days=campaign.attribution_window_days,
        treatment=treatment,
        control=control,
        uplift=uplift,
        incremental_revenue=incremental,
        uplift_reported=uplift_reported,
        note=note,
    )


def consumer_deliveries(consumer_id: int) -> QuerySet[Delivery]:
    return (
        Delivery.objects.filter(consumer_id=consumer_id)
        .select_related("campaign", "campaign__merchant")
        .prefetch_related("tracking_events")
        .order_by("created_at", "pk")
    )
