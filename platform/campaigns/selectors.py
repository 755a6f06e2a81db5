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
from django.utils import timezone
from pyroaring import BitMap

from consumers.models import Event, EventType
from merchants.errors import NotFound
from merchants.models import Merchant
from privacy.release import (
    STANDARD,
    ReleasedCount,
    ReleasedSum,
    precision_spec,
    released_rate,
    suppression_threshold,
)
from privacy.services import release_figure_sum, release_figures
from segments.selectors import segment_latest_snapshot, snapshot_members

from .models import (
    VARIANT_LETTERS,
    Campaign,
    CampaignStatus,
    CampaignVariant,
    Delivery,
    DeliveryStatus,
    Group,
    Phase,
    TrackingEvent,
    TrackingKind,
)
from .stats import Uplift, uplift_two_proportions


def campaigns_for_merchant(merchant: Merchant | int) -> QuerySet[Campaign]:
    """The one way API and portal code reaches campaigns: scoped to a merchant."""
    return Campaign.objects.filter(merchant=merchant).select_related("merchant")


def forecast_like_campaign(*, merchant_id: int, campaign_id: int) -> Campaign:
    """The campaign a forecast is asked to learn from: one of the merchant's completed campaigns. Another
    merchant's, a missing and an unfinished one are the same NotFound, wherever the pick is given (the review page,
    its forecast card, the API's forecast and launch)."""
    like = Campaign.objects.filter(pk=campaign_id, merchant_id=merchant_id, status=CampaignStatus.COMPLETED).first()
    if like is None:
        raise NotFound("No completed campaign with that id to learn the forecast from.", code="not_found")
    return like


def campaign_segments_audience(*, campaign: Campaign) -> BitMap | None:
    """The campaign's include segments' members minus its exclude segments', from their latest snapshots (only
    the merchant's own segments, as the activation takes them); None while one of them has none yet. The one rule
    for the audience before launch: the review's reach (services.audience_precheck) and the forecast
    (uplift.campaign_forecast_exact) narrow it further each in its own way."""

    def union(segments) -> BitMap | None:
        members = BitMap()
        for segment_id in segments.filter(merchant_id=campaign.merchant_id).values_list("pk", flat=True):
            snapshot = segment_latest_snapshot(segment_id=segment_id)
            if snapshot is None:
                return None
            members |= snapshot_members(snapshot)
        return members

    include = union(campaign.include_segments)
    exclude = union(campaign.exclude_segments) if include is not None else None
    return None if include is None or exclude is None else include - exclude


# Every figure of a campaign a merchant sees is released through the privacy layer (privacy.services
# .release_figures) under a subject naming what is counted, so the list, the page, the report and the API agree:
#   campaign:<id>:audience / :written / :dispatched / :withdrawn / :failed      progress (once the launch is done)
#   campaign:<id>:group:<treatment|control>:<size|sent|...|converted>          the report's funnels
# A campaign's figures stop changing once it is done, so each is paid for once and then read back free.
CAMPAIGN_PRECISION = STANDARD
# Revenue is released as a per-consumer clamped sum (minor units): one consumer adds at most this much, and the
# noise is scaled to it (±39 × clamp at 95 %, two significant figures of that bound for display).
REVENUE_CLAMP_MINOR = 100_00


def campaign_subject(campaign_id: int, measure: str, group: str | None = None) -> str:
    return f"campaign:{campaign_id}:group:{group}:{measure}" if group else f"campaign:{campaign_id}:{measure}"


@dataclass(frozen=True)
class Progress:
    """Where a launch is. Counts are released once the launch is done (None before: a moving count would be a
    new release at every poll); while it runs, the percentages are the job's progress in 10 % steps."""

    phase: str
    percent_written: int
    percent_dispatched: int
    audience: ReleasedCount | None
    written: ReleasedCount | None
    dispatched: ReleasedCount | None
    withdrawn: ReleasedCount | None
    failed: ReleasedCount | None


PROGRESS_MEASURES = ("audience", "written", "dispatched", "withdrawn", "failed")


def campaigns_audience(campaigns: list[Campaign]) -> dict[int, ReleasedCount]:
    """The released audience of each launched campaign (the number its page and the API show)."""
    launched = [c for c in campaigns if c.phase == Phase.DONE or c.status in _FINISHED]
    released = release_figures(
        merchant_id=launched[0].merchant_id if launched else None,
        figures=[(campaign_subject(c.pk, "audience"), c.audience_count) for c in launched],
        precision=CAMPAIGN_PRECISION,
    )
    return {c.pk: count for c, count in zip(launched, released, strict=True)}


_FINISHED = (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED, CampaignStatus.FAILED)


def campaign_progress(campaign: Campaign) -> Progress:
    """Where a launch is, as merchants may see it: released counts once done, coarse percentages while running."""
    done = campaign.phase == Phase.DONE or campaign.status in _FINISHED
    if done:
        exact = {
            "audience": campaign.audience_count,
            "written": campaign.written_count,
            "dispatched": campaign.dispatched_count,
            "withdrawn": campaign.withdrawn_count,
            "failed": campaign.failed_count,
        }
        released = release_figures(
            merchant_id=campaign.merchant_id,
            figures=[(campaign_subject(campaign.pk, m), exact[m]) for m in PROGRESS_MEASURES],
            precision=CAMPAIGN_PRECISION,
        )
        counts: dict[str, ReleasedCount | None] = dict(zip(PROGRESS_MEASURES, released, strict=True))
    else:
        counts = dict.fromkeys(PROGRESS_MEASURES)

    def percent(done_n: int, total: int) -> int:
        if campaign.status == CampaignStatus.COMPLETED:
            return 100
        return min(100, 10 * int(10 * done_n / total)) if total else 0

    settled = campaign.dispatched_count + campaign.withdrawn_count + campaign.failed_count
    return Progress(
        phase=campaign.phase,
        percent_written=percent(campaign.written_count, campaign.audience_count),
        percent_dispatched=percent(settled, campaign.treatment_count),
        **counts,
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


FUNNEL_MEASURES = ("size", "sent", "withdrawn", "failed", "opened", "clicked", "converted")


@dataclass(frozen=True)
class PublicFunnel:
    """One group's funnel as merchants may see it: every count released, the revenue a released clamped sum, and
    the rates computed from released figures only (hidden with either side, so a rate never gives a hidden count
    away: "bought: fewer than 170" comes with no conversion rate)."""

    size: ReleasedCount
    sent: ReleasedCount
    withdrawn: ReleasedCount
    failed: ReleasedCount
    opened: ReleasedCount
    clicked: ReleasedCount
    converted: ReleasedCount
    conversion_rate: float | None
    revenue: ReleasedSum
    revenue_per_consumer: Decimal | None

    def share(self, measure: str) -> float | None:
        """A step's share of the group, from released figures."""
        return released_rate(getattr(self, measure), self.size)


@dataclass(frozen=True)
class PublicReport:
    """The report as merchants see it (API, portal): released figures and what is computed from them only."""

    campaign_id: int
    status: str
    attribution_window_days: int
    treatment: PublicFunnel
    control: PublicFunnel
    uplift: Uplift | None
    incremental_revenue: Decimal | None
    note: str
    too_early: bool = False  # sent, but not enough released data for a verdict yet (see enough_to_compare)
    forecast: ForecastComparison | None = None


TOO_EARLY = "too early to tell"


@dataclass(frozen=True)
class ForecastComparison:
    """The forecast frozen at launch next to the measured incremental conversions, released numbers only.

    `forecast` is what was frozen (campaign.forecast: released figures, or why none could be made; None when the
    campaign was launched before forecasts were frozen, or while the launch's forecast is still being made).
    `measured` and its interval are the report's uplift (computed from released counts) times the released number
    of consumers who received it; None while the report gives no uplift. `verdict` is "inside", "above",
    "below", "no_forecast" or "too_early"; `words` says it plainly.
    """

    forecast: dict | None
    measured: float | None
    measured_low: float | None
    measured_high: float | None
    verdict: str
    words: str


def _forecast_bounds(forecast: dict) -> tuple[int, int] | None:
    """The frozen interval as released: a hidden low end is below the suppression threshold (so 0 at the least),
    a hidden high end means the whole forecast was under it. None when it was withheld (privacy budget spent)."""
    low, high = forecast["incremental_low"], forecast["incremental_high"]
    if low.get("withheld") or high.get("withheld"):
        return None
    top = high["size"] if not high["hidden"] else suppression_threshold(high["precision"])
    bottom = low["size"] if not low["hidden"] else 0
    return bottom, top


FORECAST_FREEZE_WINDOW = timedelta(hours=1)  # beyond the freeze task's retries: after this, none is coming


def forecast_being_made(campaign: Campaign) -> bool:
    """Whether a forecast may still be frozen for this campaign: one launched itself (a recurring series' runs
    never get one) within the freeze task's retries, and not finished."""
    return (
        campaign.forecast is None
        and campaign.parent_id is None
        and campaign.launched_at is not None
        and campaign.launched_at > timezone.now() - FORECAST_FREEZE_WINDOW
        and campaign.status != CampaignStatus.COMPLETED
    )


def forecast_comparison(*, campaign: Campaign, uplift: Uplift | None, treated: ReleasedCount) -> ForecastComparison:
    """Post-processing of released figures only: the frozen forecast and the report's released uplift."""
    forecast = campaign.forecast
    measured = low = high = None
    if uplift is not None and uplift.absolute is not None and not treated.suppressed:
        n = max(0, treated._noisy)
        measured, low, high = uplift.absolute * n, (uplift.ci_low or 0.0) * n, (uplift.ci_high or 0.0) * n
    if forecast is None:
        words = (
            "The forecast is still being made."
            if forecast_being_made(campaign)
            else "No forecast was frozen when this campaign was launched."
        )
        return ForecastComparison(None, measured, low, high, "no_forecast", words)
    if forecast.get("refused"):
        return ForecastComparison(
            forecast, measured, low, high, "no_forecast", f"No forecast was made at launch: {forecast['reason']}"
        )
    bounds = _forecast_bounds(forecast)
    if bounds is None:
        return ForecastComparison(
            forecast, measured, low, high, "no_forecast", "The forecast was not released (privacy budget spent)."
        )
    f_low, f_high = bounds
    interval = f"{forecast['incremental_low']['display']} to {forecast['incremental_high']['display']}"
    if measured is None:
        return ForecastComparison(
            forecast,
            None,
            None,
            None,
            "too_early",
            f"Forecast before launch: {interval} extra purchases. The result is {TOO_EARLY}.",
        )
    got = (
        f"about {round(measured):,} extra purchases"
        if measured >= 0
        else f"about {round(-measured):,} fewer purchases than without it"
    )
    if f_low <= measured <= f_high:
        verdict, words = "inside", f"The result, {got}, fell inside the forecast interval ({interval})."
    elif measured > f_high:
        verdict, words = "above", f"The result, {got}, beat the forecast: above its interval ({interval})."
    else:
        verdict, words = "below", f"The result, {got}, fell short of the forecast: below its interval ({interval})."
    return ForecastComparison(forecast, measured, low, high, verdict, words)


def enough_to_compare(*counts: ReleasedCount, sizes: tuple[ReleasedCount, ...]) -> bool:
    """Whether a comparison of groups (treatment and control, or two variants) may be reported.

    Enough means: every count compared is released (none hidden under the suppression threshold, none withheld),
    and every group's released size is at least CAMPAIGN_REPORT_MIN_RELEASED. Before that the interval is
    dominated by noise and a just-sent campaign would read "+0.0 to +0.0 pp"; the report says "too early to
    tell" instead. Decided on released figures only, so it reveals nothing the figures themselves do not.
    """
    if any(c.suppressed or c.value is None for c in (*counts, *sizes)):
        return False
    return all((c.value or 0) >= settings.CAMPAIGN_REPORT_MIN_RELEASED for c in sizes)


def uplift_from_released(
    *, a_converted: ReleasedCount, a_size: ReleasedCount, b_converted: ReleasedCount, b_size: ReleasedCount
) -> Uplift:
    """The difference of a's and b's conversion rates and its interval, from the released (noisy) figures only.
    The interval counts the release layer's noise on the conversions as well as sampling, so two variants that
    convert alike are not told apart by the noise alone."""
    n_a, n_b = max(1, a_size._noisy), max(1, b_size._noisy)
    return uplift_two_proportions(
        treatment_conversions=min(n_a, max(0, a_converted._noisy)),
        treatment_size=n_a,
        control_conversions=min(n_b, max(0, b_converted._noisy)),
        control_size=n_b,
        conversions_noise_sd=precision_spec(a_converted.precision).sigma,
    )


def _minor_to_money(minor: float) -> Decimal:
    return (Decimal(str(minor)) / 100).quantize(Decimal("0.01"))


def _public_funnel(campaign: Campaign, group: str, funnel: GroupFunnel, revenue_values: dict[int, int]) -> PublicFunnel:
    released = release_figures(
        merchant_id=campaign.merchant_id,
        figures=[(campaign_subject(campaign.pk, m, group), getattr(funnel, m)) for m in FUNNEL_MEASURES],
        precision=CAMPAIGN_PRECISION,
    )
    counts = dict(zip(FUNNEL_MEASURES, released, strict=True))
    revenue, _ = release_figure_sum(
        merchant_id=campaign.merchant_id,
        subject=campaign_subject(campaign.pk, "converted", group),
        members=BitMap(revenue_values),
        values=[revenue_values[c] for c in sorted(revenue_values)],
        clamp=REVENUE_CLAMP_MINOR,
        name="revenue",
        precision=CAMPAIGN_PRECISION,
    )
    per_consumer = released_rate(revenue, counts["size"])
    return PublicFunnel(
        **counts,
        conversion_rate=released_rate(counts["converted"], counts["size"]),
        revenue=revenue,
        revenue_per_consumer=None if per_consumer is None else _minor_to_money(per_consumer),
    )


def campaign_report_public(campaign: Campaign) -> PublicReport:
    """The report a merchant sees: the funnels released, uplift and its interval and incremental revenue computed
    from released numbers only (never from exact ones)."""
    report = campaign_report(campaign)
    values = campaign_conversion_values(campaign)
    treatment = _public_funnel(campaign, Group.TREATMENT, report.treatment, values[Group.TREATMENT])
    control = _public_funnel(campaign, Group.CONTROL, report.control, values[Group.CONTROL])
    uplift = None
    not_sent = campaign.phase in (Phase.NONE, Phase.RESOLVING) and campaign.status != CampaignStatus.COMPLETED
    enough = enough_to_compare(treatment.converted, control.converted, sizes=(treatment.size, control.size))
    if not not_sent and enough:
        uplift = uplift_from_released(
            a_converted=treatment.converted,
            a_size=treatment.size,
            b_converted=control.converted,
            b_size=control.size,
        )
    if not_sent:
        note = "The campaign has not been sent yet."
    elif uplift is None:
        note = (
            f"Uplift: {TOO_EARLY}. It is reported once both the group that received it and the control group "
            f"have at least {settings.CAMPAIGN_REPORT_MIN_RELEASED:,} consumers and their purchases are large "
            "enough to be shown. Purchases keep counting for the attribution window; a small control group may "
            "never get there (raise the control share or widen the audience next time)."
        )
    else:
        note = ""
    incremental = None
    if uplift is not None and treatment.revenue.value is not None and control.revenue.value is not None:
        t_rate = released_rate(treatment.revenue, treatment.size)
        c_rate = released_rate(control.revenue, control.size)
        if t_rate is not None and c_rate is not None:
            incremental = _minor_to_money((t_rate - c_rate) * treatment.size._noisy)
    return PublicReport(
        campaign_id=report.campaign_id,
        status=report.status,
        attribution_window_days=report.attribution_window_days,
        treatment=treatment,
        control=control,
        uplift=uplift,
        incremental_revenue=incremental,
        note=note,
        too_early=not not_sent and uplift is None,
        forecast=forecast_comparison(campaign=campaign, uplift=uplift, treated=treatment.size),
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
    """The value of one ingested purchase event: price × quantity. `price` is the unit price paid, the discount
    already taken off (docs/ingestion.md: list price = price + discount), so subtracting it again undercounted
    revenue; segments' spend conditions count the same way."""
    return ExpressionWrapper(
        Coalesce(F("price"), Value(Decimal("0"))) * F("quantity"),
        output_field=DecimalField(max_digits=14, decimal_places=2),
    )


def delivery_rows(campaign: Campaign):
    """The campaign's deliveries annotated with opened, clicked, converted (Q) and value: see campaign_funnels."""
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
    return rows, converted


def campaign_conversion_values(campaign: Campaign) -> dict[str, dict[int, int]]:
    """Per group: {consumer id: attributed revenue in minor units} of each converted delivery (one per consumer),
    the per-consumer values the released revenue clamps."""
    rows, converted = delivery_rows(campaign)
    values: dict[str, dict[int, int]] = {Group.TREATMENT: {}, Group.CONTROL: {}}
    for group, consumer_id, value in rows.filter(converted).values_list("group", "consumer_id", "value"):
        minor = int((Decimal(value or 0) * 100).to_integral_value())
        values.setdefault(group, {})[consumer_id] = values.get(group, {}).get(consumer_id, 0) + minor
    return values


def campaign_funnels(campaign: Campaign) -> dict[str, GroupFunnel]:
    """Per group: size, sent, opened, clicked, converted and attributed revenue (exact: for the release layer and
    officers; merchants see campaign_report_public).

    A delivery converts when, within the attribution window after its send (the dispatch time for
    treatment, the assignment time for the held-out control), the operator tracked a conversion for
    it or the consumer made an ingested purchase of this merchant's products. Its revenue is the
    larger of the two sources, so one order reported both ways is not counted twice.
    """
    rows, converted = delivery_rows(campaign)
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


# --- A/B/n variants -----------------------------------------------------------------------------------
# Each variant's funnel is released under campaign:<id>:variant:<position>:<measure>; the difference of each
# variant's conversion rate against variant A, and its interval, are computed from those released figures only.
VARIANT_MEASURES = ("size", "sent", "opened", "clicked", "converted")


def variant_subject(campaign_id: int, position: int, measure: str) -> str:
    return f"campaign:{campaign_id}:variant:{position}:{measure}"


@dataclass(frozen=True)
class PublicVariant:
    position: int
    letter: str
    share: int
    title_template: str
    size: ReleasedCount
    sent: ReleasedCount
    opened: ReleasedCount
    clicked: ReleasedCount
    converted: ReleasedCount
    conversion_rate: float | None
    versus_first: Uplift | None  # None for variant A, and while it is too early to tell
    too_early: bool


def campaign_variant_funnels(campaign: Campaign) -> dict[int, dict[str, int]]:
    """Exact per-variant counts of the treatment group (for the release layer): {position: {measure: n}}."""
    rows, converted = delivery_rows(campaign)
    aggregated = (
        rows.filter(group=Group.TREATMENT, variant__isnull=False)
        .values("variant")
        .annotate(
            size=Count("pk"),
            sent=Count("pk", filter=Q(status=DeliveryStatus.DISPATCHED)),
            opened_n=Count("pk", filter=Q(opened=True)),
            clicked_n=Count("pk", filter=Q(clicked=True)),
            converted_n=Count("pk", filter=converted),
        )
        .order_by()
    )
    return {
        row["variant"]: {
            "size": row["size"],
            "sent": row["sent"],
            "opened": row["opened_n"],
            "clicked": row["clicked_n"],
            "converted": row["converted_n"],
        }
        for row in aggregated
    }


def campaign_variants_report_public(campaign: Campaign) -> list[PublicVariant]:
    """One row per variant, as merchants see it: released counts, the conversion rate from released figures, and
    the difference against variant A with its 95% interval once there is enough data (enough_to_compare)."""
    variants = list(CampaignVariant.objects.filter(campaign_id=campaign.pk).order_by("position"))
    if not variants:
        return []
    exact = campaign_variant_funnels(campaign)
    figures = [
        (variant_subject(campaign.pk, v.position, m), exact.get(v.position, {}).get(m, 0))
        for v in variants
        for m in VARIANT_MEASURES
    ]
    released = release_figures(merchant_id=campaign.merchant_id, figures=figures, precision=CAMPAIGN_PRECISION)
    per_variant = [
        dict(zip(VARIANT_MEASURES, released[i * len(VARIANT_MEASURES) : (i + 1) * len(VARIANT_MEASURES)], strict=True))
        for i in range(len(variants))
    ]
    first = per_variant[0]
    result = []
    for variant, counts in zip(variants, per_variant, strict=True):
        enough = enough_to_compare(counts["converted"], first["converted"], sizes=(counts["size"], first["size"]))
        versus = None
        if variant.position != variants[0].position and enough:
            versus = uplift_from_released(
                a_converted=counts["converted"],
                a_size=counts["size"],
                b_converted=first["converted"],
                b_size=first["size"],
            )
        result.append(
            PublicVariant(
                position=variant.position,
                letter=VARIANT_LETTERS[variant.position - 1],
                share=variant.share,
                title_template=variant.title_template,
                conversion_rate=released_rate(counts["converted"], counts["size"]),
                versus_first=versus,
                too_early=variant.position != variants[0].position and not enough,
                **counts,
            )
        )
    return result


@dataclass(frozen=True)
class CampaignKpis:
    """A finished campaign's headline figures for the list: the report's own released figures."""

    sent: ReleasedCount
    bought: ReleasedCount
    conversion_rate: float | None


LIST_KPI_LIMIT = 50


def campaigns_kpis(campaigns: list[Campaign]) -> dict[int, CampaignKpis]:
    """Sent, bought and the conversion rate (released bought / released size, as the report computes it) of the
    first LIST_KPI_LIMIT sent campaigns; the subjects are the report's, so the list and the report agree."""
    sent = [c for c in campaigns if c.phase == Phase.DONE or c.status in _FINISHED][:LIST_KPI_LIMIT]
    sent = [c for c in sent if c.written_count]
    result = {}
    for campaign in sent:
        funnel = campaign_funnels(campaign)[Group.TREATMENT]
        dispatched, size, converted = release_figures(
            merchant_id=campaign.merchant_id,
            figures=[
                (campaign_subject(campaign.pk, "dispatched"), campaign.dispatched_count),
                (campaign_subject(campaign.pk, "size", Group.TREATMENT), funnel.size),
                (campaign_subject(campaign.pk, "converted", Group.TREATMENT), funnel.converted),
            ],
            precision=CAMPAIGN_PRECISION,
        )
        result[campaign.pk] = CampaignKpis(
            sent=dispatched, bought=converted, conversion_rate=released_rate(converted, size)
        )
    return result
