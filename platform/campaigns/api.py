"""Campaign endpoints (merchants) and the inbox and tracking endpoints (the operator). Thin: services do the work."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings

from merchants.api_base import IdField, MerchantAPIView, OperatorAPIView, get_scoped_or_404, id_from_text
from merchants.api_errors import ApiError
from merchants.api_fields import ChoiceField
from merchants.pagination import page_parameters
from privacy.pseudonyms import is_pseudonym
from segments.api import PublicCountSerializer, SegmentOutput, segment_payload
from segments.models import Segment

from .export import EXPORT_MAX_PAGE, InvalidCursor, campaign_audience_export
from .inbox import inbox_messages_take
from .models import (
    MAX_CONTROL_SHARE,
    MAX_PERSONALISED_PRODUCTS,
    MAX_VARIANTS,
    VARIANT_LETTERS,
    Campaign,
    Channel,
    ScheduleKind,
    TrackingKind,
)
from .selectors import (
    PublicFunnel,
    campaign_progress,
    campaign_report_public,
    campaign_variants_report_public,
    campaigns_for_merchant,
)
from .services import campaign_cancel, campaign_create, campaign_delete, campaign_launch, campaign_update
from .stats import Z_95
from .tracking import TrackingInput, tracking_events_record

# --- serializers -----------------------------------------------------------------------------------------


class VariantInputSerializer(serializers.Serializer):
    title_template = serializers.CharField(max_length=200)
    body_template = serializers.CharField(max_length=2000)
    share = serializers.IntegerField(
        min_value=1, max_value=100, help_text="Percent of the treatment group; all shares sum to 100."
    )


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A one-off campaign with an offer",
            value={
                "name": "Rainy-season gear",
                "include_segment_ids": [12],
                "title_template": "{store_name}: {offer}",
                "body_template": "Picked for you: {products}. Use {coupon_code} at checkout.",
                "coupon_code": "RAIN10",
                "discount_percent": "10.00",
            },
            request_only=True,
        )
    ]
)
class CampaignInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    include_segment_ids = serializers.ListField(
        child=IdField(), min_length=1, max_length=50, help_text="Your segments to reach."
    )
    exclude_segment_ids = serializers.ListField(child=IdField(), max_length=50, required=False, default=list)
    title_template = serializers.CharField(
        max_length=200,
        required=False,
        help_text="Required unless variants are given. Placeholders: {store_name}, {offer}, {coupon_code}, "
        "{discount}, {products}, {product_N_title}, {product_N_price}. Write {{ and }} for literal braces.",
    )
    body_template = serializers.CharField(
        max_length=2000, required=False, help_text="Required unless variants are given (then variant A's)."
    )
    variants = VariantInputSerializer(
        many=True,
        required=False,
        max_length=MAX_VARIANTS,
        help_text=f"An A/B/n test: 2 to {MAX_VARIANTS} messages, each with a share of the treatment group "
        "(shares sum to 100). Each consumer's variant is fixed by a hash of campaign and consumer id. Variant A's "
        "title and message become the campaign's own. An empty list turns the test off.",
    )
    auto_winner = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Recurring campaigns with variants: once every variant has enough released recipients and one "
        "converts significantly better, later runs send only that one.",
    )
    coupon_code = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")
    discount_percent = serializers.DecimalField(
        max_digits=5,
        decimal_places=2,
        min_value=Decimal("0.01"),
        max_value=Decimal("100"),
        required=False,
        allow_null=True,
        default=None,
    )
    channel = ChoiceField(choices=Channel.choices, default=Channel.INBOX)
    schedule_kind = ChoiceField(choices=ScheduleKind.choices, default=ScheduleKind.NOW)
    scheduled_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    recurrence = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        default="",
        help_text="Crontab in your merchant time zone, e.g. '0 9 * * 1' (Mondays 09:00); runs at least "
        "CAMPAIGN_MIN_RECURRENCE_MINUTES apart.",
    )
    frequency_cap = serializers.IntegerField(
        min_value=1,
        max_value=1000,
        required=False,
        allow_null=True,
        default=None,
        help_text="At most this many messages per consumer per window across your campaigns.",
    )
    frequency_window_days = serializers.IntegerField(min_value=1, max_value=365, default=7)
    control_share = serializers.DecimalField(
        max_digits=4, decimal_places=3, min_value=Decimal("0"), max_value=MAX_CONTROL_SHARE, default=Decimal("0.100")
    )
    personalised_products = serializers.IntegerField(min_value=0, max_value=MAX_PERSONALISED_PRODUCTS, default=3)
    attribution_window_days = serializers.IntegerField(min_value=1, max_value=90, default=7)

    def validate(self, attrs):
        if not self.partial and not attrs.get("variants"):
            missing = {
                key: ["This field is required (or give variants)."]
                for key in ("title_template", "body_template")
                if key not in attrs
            }
            if missing:
                raise serializers.ValidationError(missing)
        return attrs


def _count(n) -> dict | None:
    """The platform's shape for merchant-visible counts (a released count, as tags and segments)."""
    return None if n is None else n.public()


class ProgressSerializer(serializers.Serializer):
    phase = serializers.CharField()
    percent_written = serializers.IntegerField()
    percent_dispatched = serializers.IntegerField()
    audience = PublicCountSerializer(allow_null=True, help_text="Released once the launch is done; null before.")
    written = PublicCountSerializer(allow_null=True)
    dispatched = PublicCountSerializer(allow_null=True)
    withdrawn = PublicCountSerializer(allow_null=True)
    failed = PublicCountSerializer(allow_null=True)


CHOSEN_BY = ["most_similar", "most_recent", "picked"]
CHOSEN_BY_HELP = (
    "How the campaign learned from was chosen. most_similar: automatically, the largest audience overlap "
    f"among those sharing at least {settings.MIN_AUDIENCE} consumers with this audience; most_recent: "
    "automatically, the most recently completed, because none shares that many"
)


class FrozenForecastSerializer(serializers.Serializer):
    """The forecast frozen at launch: released figures, or why none could be made (refused)."""

    campaign_id = serializers.IntegerField()
    refused = serializers.BooleanField(help_text="True when no forecast could be made; `reason` says why.")
    reason = serializers.CharField(required=False, help_text="Why no forecast was made (refused only).")
    like_campaign_id = serializers.IntegerField(
        required=False, help_text="The completed campaign the uplift model learned from."
    )
    chosen_by = serializers.ChoiceField(
        choices=CHOSEN_BY,
        required=False,
        help_text=f"{CHOSEN_BY_HELP}; picked: you chose it.",
    )
    audience = PublicCountSerializer(required=False)
    incremental_conversions = PublicCountSerializer(required=False, help_text="Expected extra conversions.")
    incremental_low = PublicCountSerializer(required=False)
    incremental_high = PublicCountSerializer(required=False)
    confidence = serializers.FloatField(required=False)
    model = serializers.CharField(required=False)
    made_at = serializers.DateTimeField(help_text="When it was frozen (just after the launch).")


def frozen_forecast_data(forecast: dict | None) -> dict | None:
    return None if forecast is None else {"refused": False, **forecast}


class CampaignOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    failure_reason = serializers.CharField()
    include_segment_ids = serializers.ListField(child=serializers.IntegerField())
    exclude_segment_ids = serializers.ListField(child=serializers.IntegerField())
    title_template = serializers.CharField()
    body_template = serializers.CharField()
    coupon_code = serializers.CharField()
    discount_percent = serializers.DecimalField(max_digits=5, decimal_places=2, allow_null=True)
    channel = serializers.CharField()
    schedule_kind = serializers.CharField()
    scheduled_at = serializers.DateTimeField(allow_null=True)
    recurrence = serializers.CharField()
    frequency_cap = serializers.IntegerField(allow_null=True)
    frequency_window_days = serializers.IntegerField()
    control_share = serializers.DecimalField(max_digits=4, decimal_places=3)
    personalised_products = serializers.IntegerField()
    attribution_window_days = serializers.IntegerField()
    variants = VariantInputSerializer(many=True)
    auto_winner = serializers.BooleanField()
    winner_variant = serializers.CharField(allow_null=True, help_text="The chosen winner's letter, once picked.")
    winner_picked_at = serializers.DateTimeField(allow_null=True)
    winner_reason = serializers.CharField()
    parent_id = serializers.IntegerField(allow_null=True, help_text="The recurring series this run belongs to.")
    occurrence_at = serializers.DateTimeField(allow_null=True)
    launched_at = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    progress = ProgressSerializer()
    forecast = FrozenForecastSerializer(
        allow_null=True,
        help_text="The forecast of incremental conversions frozen at launch (null for drafts, and until it is made).",
    )


def campaign_data(campaign: Campaign) -> dict:
    progress = campaign_progress(campaign)
    return {
        **{name: getattr(campaign, name) for name in CampaignOutputSerializer().fields if hasattr(campaign, name)},
        "include_segment_ids": sorted(s.pk for s in campaign.include_segments.all()),
        "exclude_segment_ids": sorted(s.pk for s in campaign.exclude_segments.all()),
        "variants": [
            {"title_template": v.title_template, "body_template": v.body_template, "share": v.share}
            for v in campaign.variants.all()
        ],
        "winner_variant": None if campaign.winner_variant is None else VARIANT_LETTERS[campaign.winner_variant - 1],
        "forecast": frozen_forecast_data(campaign.forecast),
        "progress": {
            "phase": progress.phase,
            "percent_written": progress.percent_written,
            "percent_dispatched": progress.percent_dispatched,
            "audience": _count(progress.audience),
            "written": _count(progress.written),
            "dispatched": _count(progress.dispatched),
            "withdrawn": _count(progress.withdrawn),
            "failed": _count(progress.failed),
        },
    }


def _campaign_response(campaign: Campaign, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(CampaignOutputSerializer(campaign_data(campaign)).data, status=status_code)


class CampaignListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = CampaignOutputSerializer(many=True)


# --- merchant endpoints --------------------------------------------------------------------------------


class _CampaignScoped(MerchantAPIView):
    """A merchant's campaign endpoints: everything is reached through the merchant's own campaigns."""

    def scoped_queryset(self, merchant):
        return campaigns_for_merchant(merchant).prefetch_related("include_segments", "exclude_segments", "variants")

    def campaign(self, pk: int) -> Campaign:
        return get_scoped_or_404(self.get_queryset(), pk=pk)


class _CampaignSegmentApi(_CampaignScoped):
    """A merchant's endpoints that make a segment out of one of its campaigns."""

    def segment_created(
        self, request, pk: int, *, body: type[serializers.Serializer], make: Callable[..., Segment]
    ) -> Response:
        """Check the body, make the segment from the caller's campaign `pk` with the body's fields
        (`make(campaign_id=, merchant_id=, actor=, **fields)`), and answer with it as a created segment."""
        campaign = self.campaign(pk)
        checked = body(data=request.data)
        checked.is_valid(raise_exception=True)
        segment = make(
            campaign_id=campaign.pk, merchant_id=self.merchant.pk, actor=request.user.actor, **checked.validated_data
        )
        return Response(segment_payload(segment, self.merchant), status=status.HTTP_201_CREATED)


class CampaignListCreateApi(_CampaignScoped):
    """Your campaigns: list them, or create a draft."""

    @extend_schema(
        operation_id="campaigns_list",
        summary="Your campaigns, newest first",
        responses={200: CampaignListSerializer},
        parameters=page_parameters(),
    )
    def get(self, request):
        paginator = api_settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(self.get_queryset(), request, view=self)
        return paginator.get_paginated_response([CampaignOutputSerializer(campaign_data(c)).data for c in page])

    @extend_schema(
        operation_id="campaigns_create",
        summary="Create a draft campaign",
        request=CampaignInputSerializer,
        responses={201: CampaignOutputSerializer},
    )
    def post(self, request):
        data = CampaignInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        campaign = campaign_create(merchant=self.merchant, actor=request.user.actor, **data.validated_data)
        return _campaign_response(self.campaign(campaign.pk), status.HTTP_201_CREATED)


class CampaignDetailApi(_CampaignScoped):
    """One of your campaigns. Drafts can be changed and deleted; launched ones are kept as they were."""

    @extend_schema(
        operation_id="campaigns_retrieve", summary="One campaign, with its progress", responses=CampaignOutputSerializer
    )
    def get(self, request, pk: int):
        return _campaign_response(self.campaign(pk))

    @extend_schema(
        operation_id="campaigns_partial_update",
        summary="Change a draft campaign (409 once it is launched)",
        request=CampaignInputSerializer(partial=True),
        responses=CampaignOutputSerializer,
    )
    def patch(self, request, pk: int):
        campaign = self.campaign(pk)
        data = CampaignInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        campaign_update(campaign=campaign, actor=request.user.actor, **data.validated_data)
        return _campaign_response(self.campaign(pk))

    @extend_schema(
        operation_id="campaigns_update",
        summary="Replace a draft campaign's settings (409 once it is launched)",
        request=CampaignInputSerializer,
        responses=CampaignOutputSerializer,
    )
    def put(self, request, pk: int):
        campaign = self.campaign(pk)
        data = CampaignInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        campaign_update(campaign=campaign, actor=request.user.actor, **data.validated_data)
        return _campaign_response(self.campaign(pk))

    @extend_schema(operation_id="campaigns_destroy", summary="Delete a draft campaign", responses={204: None})
    def delete(self, request, pk: int):
        campaign_delete(campaign=self.campaign(pk), actor=request.user.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LaunchInput(serializers.Serializer):
    forecast_like_campaign_id = IdField(
        required=False,
        allow_null=True,
        default=None,
        help_text="The completed campaign the forecast frozen at launch learns from (default: the most similar "
        "one, by audience overlap). Another merchant's or a missing campaign is a 404.",
    )


class CampaignLaunchApi(_CampaignScoped):
    """Launch a draft: now, at its time, or on its recurrence."""

    @extend_schema(
        operation_id="campaigns_launch",
        summary="Launch a draft campaign",
        description="Starts it now, at its time, or on its recurrence, and then freezes the forecast of incremental "
        "conversions on it (see `forecast`; the report compares it with the result). 409 when it is not a draft or "
        "no approved direct-marketing activity based on consent exists; 422 when its audience is under the minimum.",
        request=LaunchInput,
        responses={202: CampaignOutputSerializer},
    )
    def post(self, request, pk: int):
        body = LaunchInput(data=request.data or {})
        body.is_valid(raise_exception=True)
        campaign_launch(
            campaign=self.campaign(pk),
            actor=request.user.actor,
            forecast_like_campaign_id=body.validated_data["forecast_like_campaign_id"],
        )
        return _campaign_response(self.campaign(pk), status.HTTP_202_ACCEPTED)


class CampaignCancelApi(_CampaignScoped):
    """Cancel a campaign that has not finished; unsent and unread messages are withdrawn."""

    @extend_schema(
        operation_id="campaigns_cancel",
        summary="Cancel a campaign: nothing more is sent",
        request=None,
        responses=CampaignOutputSerializer,
    )
    def post(self, request, pk: int):
        campaign_cancel(campaign=self.campaign(pk), actor=request.user.actor)
        return _campaign_response(self.campaign(pk))


class GroupReportSerializer(serializers.Serializer):
    size = PublicCountSerializer()
    sent = PublicCountSerializer()
    withdrawn = PublicCountSerializer()
    failed = PublicCountSerializer()
    opened = PublicCountSerializer()
    clicked = PublicCountSerializer()
    converted = PublicCountSerializer()
    conversion_rate = serializers.FloatField(
        allow_null=True, help_text="Released converted / released size; null when either is hidden."
    )
    attributed_revenue = serializers.DecimalField(
        max_digits=16,
        decimal_places=2,
        allow_null=True,
        help_text="Released sum of each converted consumer's revenue, clamped per consumer; null when hidden.",
    )
    revenue_per_consumer = serializers.DecimalField(max_digits=16, decimal_places=2, allow_null=True)


class UpliftSerializer(serializers.Serializer):
    absolute = serializers.FloatField(help_text="Treatment conversion rate minus control conversion rate.")
    ci_low = serializers.FloatField()
    ci_high = serializers.FloatField()
    confidence = serializers.FloatField()
    relative = serializers.FloatField(allow_null=True)
    z = serializers.FloatField()
    p_value = serializers.FloatField()
    method = serializers.CharField()


class VariantReportSerializer(serializers.Serializer):
    variant = serializers.CharField(help_text="A, B, ...")
    share = serializers.IntegerField(help_text="Percent of the treatment group it was assigned.")
    title_template = serializers.CharField()
    size = PublicCountSerializer()
    sent = PublicCountSerializer()
    opened = PublicCountSerializer()
    clicked = PublicCountSerializer()
    converted = PublicCountSerializer()
    conversion_rate = serializers.FloatField(allow_null=True)
    versus_first = UpliftSerializer(
        allow_null=True,
        help_text="Its conversion rate minus variant A's, from released figures; null for A and while too early.",
    )
    too_early = serializers.BooleanField(
        help_text="True while either this variant or A has fewer than CAMPAIGN_REPORT_MIN_RELEASED released "
        "recipients, or a hidden conversion count."
    )


class ForecastComparisonSerializer(serializers.Serializer):
    forecast = FrozenForecastSerializer(allow_null=True, help_text="Frozen at launch; null if none was.")
    measured_incremental_conversions = serializers.FloatField(
        allow_null=True,
        help_text="Uplift (from released counts) x the released number who received it; null while too early.",
    )
    measured_low = serializers.FloatField(allow_null=True, help_text="The same with the uplift's 95% interval.")
    measured_high = serializers.FloatField(allow_null=True)
    verdict = serializers.ChoiceField(choices=["inside", "above", "below", "too_early", "no_forecast"])
    words = serializers.CharField(help_text="The comparison in plain words.")


class ReportSerializer(serializers.Serializer):
    campaign_id = serializers.IntegerField()
    status = serializers.CharField()
    attribution_window_days = serializers.IntegerField()
    treatment = GroupReportSerializer()
    control = GroupReportSerializer()
    uplift = UpliftSerializer(allow_null=True)
    incremental_revenue = serializers.DecimalField(max_digits=16, decimal_places=2, allow_null=True)
    currency = serializers.CharField(help_text="ISO 4217 code of every amount in the report (your merchant's).")
    note = serializers.CharField()
    too_early = serializers.BooleanField(
        help_text="Sent, but uplift is not reported yet: too early to tell (see docs/campaigns.md)."
    )
    variants = VariantReportSerializer(many=True, help_text="A/B/n tests only: one row per variant.")
    winner = serializers.CharField(allow_null=True, help_text="The automatically chosen winner (series only).")
    winner_reason = serializers.CharField()
    forecast_comparison = ForecastComparisonSerializer(
        help_text="The forecast frozen at launch next to the measured incremental conversions (released only)."
    )


def _uplift_data(uplift) -> dict | None:
    if uplift is None or uplift.absolute is None:
        return None
    return {
        "absolute": uplift.absolute,
        "ci_low": uplift.ci_low,
        "ci_high": uplift.ci_high,
        "confidence": 0.95,
        "relative": uplift.relative,
        "z": uplift.z,
        "p_value": uplift.p_value,
        "method": "from released counts only; difference of two proportions; "
        f"Wald interval ±{Z_95:.4f}·SE (unpooled); pooled two-proportion z test",
    }


def _group_data(shown: PublicFunnel) -> dict:
    return {
        "size": _count(shown.size),
        "sent": _count(shown.sent),
        "withdrawn": _count(shown.withdrawn),
        "failed": _count(shown.failed),
        "opened": _count(shown.opened),
        "clicked": _count(shown.clicked),
        "converted": _count(shown.converted),
        "conversion_rate": shown.conversion_rate,
        "attributed_revenue": None if shown.revenue.value is None else Decimal(shown.revenue.value) / 100,
        "revenue_per_consumer": shown.revenue_per_consumer,
    }


class CampaignReportApi(_CampaignScoped):
    """Results: the funnel per group, conversion rates, uplift with a 95% interval, attributed revenue."""

    @extend_schema(
        operation_id="campaigns_report",
        summary="Funnel per group, conversion rates, uplift with a 95% interval, attributed revenue",
        responses=ReportSerializer,
    )
    def get(self, request, pk: int):
        campaign = self.campaign(pk)
        report = campaign_report_public(campaign)
        uplift = _uplift_data(report.uplift)
        series = campaign.parent if campaign.parent_id else campaign
        variants = [
            {
                "variant": v.letter,
                "share": v.share,
                "title_template": v.title_template,
                **{m: _count(getattr(v, m)) for m in ("size", "sent", "opened", "clicked", "converted")},
                "conversion_rate": v.conversion_rate,
                "versus_first": _uplift_data(v.versus_first),
                "too_early": v.too_early,
            }
            for v in campaign_variants_report_public(campaign)
        ]
        data = {
            "campaign_id": report.campaign_id,
            "status": report.status,
            "attribution_window_days": report.attribution_window_days,
            "treatment": _group_data(report.treatment),
            "control": _group_data(report.control),
            "uplift": uplift,
            "incremental_revenue": report.incremental_revenue,
            "currency": campaign.merchant.currency,
            "note": report.note,
            "too_early": report.too_early,
            "variants": variants,
            "winner": None if series.winner_variant is None else VARIANT_LETTERS[series.winner_variant - 1],
            "winner_reason": series.winner_reason,
            "forecast_comparison": _comparison_data(report.forecast),
        }
        return Response(ReportSerializer(data).data)


def _comparison_data(comparison) -> dict:
    return {
        "forecast": frozen_forecast_data(comparison.forecast),
        "measured_incremental_conversions": comparison.measured,
        "measured_low": comparison.measured_low,
        "measured_high": comparison.measured_high,
        "verdict": comparison.verdict,
        "words": comparison.words,
    }


class ForecastSerializer(serializers.Serializer):
    campaign_id = serializers.IntegerField()
    like_campaign_id = serializers.IntegerField(help_text="The completed campaign the uplift model learned from.")
    chosen_by = serializers.ChoiceField(choices=CHOSEN_BY, help_text=f"{CHOSEN_BY_HELP}; picked: given as `like`.")
    audience = PublicCountSerializer(help_text="Current members of the include segments, minus the excluded.")
    incremental_conversions = PublicCountSerializer(help_text="Expected extra conversions from messaging them.")
    incremental_low = PublicCountSerializer()
    incremental_high = PublicCountSerializer()
    confidence = serializers.FloatField()
    method = serializers.CharField()


class CampaignForecastApi(_CampaignScoped):
    """Before launch: the incremental conversions an uplift model expects from this audience, with an interval."""

    @extend_schema(
        operation_id="campaigns_forecast",
        summary="Expected incremental conversions of the chosen audience (released figures, 95% interval)",
        parameters=[
            OpenApiParameter(
                "like",
                int,
                description="A completed campaign to learn from (default: of your 10 most recently completed "
                "ones with at least 50 consumers in each group, the one whose audience overlaps this one's most "
                f"among those sharing at least {settings.MIN_AUDIENCE} consumers with it, else the most recent).",
            )
        ],
        responses=ForecastSerializer,
    )
    def get(self, request, pk: int):
        from .uplift import campaign_forecast

        campaign = self.campaign(pk)
        like = request.query_params.get("like")
        if like is not None and id_from_text(like) is None:
            raise ApiError("like must be a campaign id.", code="invalid", details={"like": ["Not a campaign id."]})
        forecast = campaign_forecast(campaign=campaign, like_campaign_id=int(like) if like else None)
        data = {
            **forecast.public(),
            "method": "T-learner uplift model (campaigns/uplift.py) trained on the like campaign's treatment and "
            "control; (1 - control share) x summed predicted uplift; interval ±1.96 x the outcome noise",
        }
        return Response(ForecastSerializer(data).data)


class ResponseSegmentInput(serializers.Serializer):
    response = ChoiceField(
        choices=["clicked_not_bought", "opened_not_clicked", "bought"],
        help_text="Who to keep, among those who received the campaign: clicked_not_bought (clicked the message "
        "but bought nothing in the attribution window), opened_not_clicked, or bought.",
    )
    name = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="Default: “<campaign>: <response in words>”."
    )


class CampaignResponseSegmentApi(_CampaignSegmentApi):
    """A fixed segment of those who reacted to this campaign in one way, to reach them again: for example those
    who clicked but did not buy. Its size is released like any segment's; its members never leave the platform."""

    @extend_schema(
        operation_id="campaigns_response_segment",
        summary="Make a segment of those who reacted to the campaign in one way (e.g. clicked but did not buy)",
        request=ResponseSegmentInput,
        responses={201: SegmentOutput},
    )
    def post(self, request, pk: int):
        from .responses import response_segment_create

        return self.segment_created(request, pk, body=ResponseSegmentInput, make=response_segment_create)


class PersuadablesInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    size = serializers.IntegerField(
        min_value=1, max_value=10_000_000, required=False, help_text="How many consumers at most (or give share)."
    )
    share = serializers.IntegerField(
        min_value=1,
        max_value=100,
        required=False,
        help_text="Percent: the top part of your store's consumers by predicted uplift (or give size).",
    )

    def validate(self, attrs):
        if ("size" in attrs) == ("share" in attrs):
            raise serializers.ValidationError({"size": ["Give either size or share."]})
        return attrs


class CampaignPersuadablesApi(_CampaignSegmentApi):
    """Persuadables for a campaign like this one: the consumers of your store an uplift model, trained on this
    completed campaign's treatment and control groups, expects to gain most from receiving it."""

    @extend_schema(
        operation_id="campaigns_persuadables",
        summary="Make a segment of the persuadables for a campaign like this completed one",
        request=PersuadablesInput,
        responses={201: SegmentOutput},
    )
    def post(self, request, pk: int):
        from .uplift import persuadables_create

        def make(*, share: int | None = None, **fields) -> Segment:
            # The API takes a percent; the service a share of the whole.
            return persuadables_create(share=None if share is None else share / 100, **fields)

        return self.segment_created(request, pk, body=PersuadablesInput, make=make)


class AudiencePageSerializer(serializers.Serializer):
    results = serializers.ListField(child=serializers.CharField(), help_text="Merchant-scoped pseudonyms.")
    next = serializers.CharField(allow_null=True)


class CampaignAudienceApi(_CampaignScoped):
    """The consented treatment audience as your own pseudonyms, a page at a time."""

    @extend_schema(
        operation_id="campaigns_audience",
        summary="Export the consented treatment audience as your own pseudonyms (cursor-paginated, audited)",
        parameters=[
            OpenApiParameter("cursor", str, description="From the previous page's 'next'."),
            OpenApiParameter("limit", int, description=f"Page size, at most {EXPORT_MAX_PAGE} (default 1000)."),
        ],
        responses=AudiencePageSerializer,
    )
    def get(self, request, pk: int):
        campaign = self.campaign(pk)
        try:
            limit = int(request.query_params.get("limit", 1000))
        except ValueError:
            raise ApiError(
                "limit must be a whole number.", code="invalid", details={"limit": ["Not a number."]}
            ) from None
        if not 1 <= limit <= EXPORT_MAX_PAGE:
            raise ApiError(
                f"limit must be between 1 and {EXPORT_MAX_PAGE}.", code="invalid", details={"limit": ["Out of range."]}
            )
        try:
            page = campaign_audience_export(
                campaign=campaign, actor=request.user.actor, cursor=request.query_params.get("cursor"), limit=limit
            )
        except InvalidCursor as exc:
            raise ApiError(str(exc), code="invalid", details={"cursor": [str(exc)]}) from None
        next_url = None
        if page.next_cursor:
            query = request.query_params.copy()
            query["cursor"] = page.next_cursor
            query["limit"] = str(limit)
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response(AudiencePageSerializer({"results": page.pseudonyms, "next": next_url}).data)


# --- operator endpoints ----------------------------------------------------------------------------------


class InboxMessageSerializer(serializers.Serializer):
    delivery_id = serializers.IntegerField(
        help_text="A campaign message's delivery id: send it back with tracking events. For a journey message "
        "(kind journey), the message's id within journeys."
    )
    kind = serializers.ChoiceField(
        choices=["campaign", "journey"], help_text="Who sent it: a campaign or a step of a journey."
    )
    message_ref = serializers.CharField(
        help_text="A journey message's signed reference: send it back with tracking events (empty for a campaign's)."
    )
    campaign_id = serializers.IntegerField(allow_null=True)
    journey_id = serializers.IntegerField(allow_null=True)
    store_name = serializers.CharField()
    title = serializers.CharField()
    body = serializers.CharField()
    coupon_code = serializers.CharField()
    products = serializers.ListField(
        child=inline_serializer(
            "InboxProduct",
            {
                "id": serializers.IntegerField(),
                "sku": serializers.CharField(),
                "title": serializers.CharField(),
                "price": serializers.CharField(allow_null=True),
            },
        )
    )
    sent_at = serializers.DateTimeField()


class InboxSerializer(serializers.Serializer):
    messages = InboxMessageSerializer(many=True)


class InboxApi(OperatorAPIView):
    """The operator's app reads a consumer's in-app messages here."""

    @extend_schema(
        operation_id="inbox_take",
        summary="A consumer's unread in-app messages (each returned once, then marked delivered)",
        responses=InboxSerializer,
    )
    def get(self, request, pseudonym: str):
        if not is_pseudonym(pseudonym):
            raise ApiError(
                "The consumer is named by their pseudonym: 64 lower-case hexadecimal characters.",
                code="invalid",
                details={"pseudonym": ["Not a pseudonym."]},
            )
        messages = inbox_messages_take(pseudonym=pseudonym)
        if messages is None:
            raise ApiError("No consumer has this pseudonym.", code="not_found", status_code=404)
        return Response(InboxSerializer({"messages": [m.__dict__ for m in messages]}).data)


class TrackingEventSerializer(serializers.Serializer):
    delivery_id = IdField(
        required=False, allow_null=True, help_text="A campaign message's delivery id (or give message_ref)."
    )
    message_ref = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="A journey message's signed reference, as the inbox and the webhook give it (or give delivery_id).",
    )
    kind = ChoiceField(choices=TrackingKind.choices)
    occurred_at = serializers.DateTimeField(required=False, help_text="Defaults to now.")
    order_value = serializers.DecimalField(max_digits=12, decimal_places=2, required=False, allow_null=True)
    idempotency_key = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text="Repeating a key for a delivery records nothing new. "
        "Defaults to the kind (one of each per delivery).",
    )

    def validate(self, attrs):
        if bool(attrs.get("delivery_id")) == bool(attrs.get("message_ref")):
            raise serializers.ValidationError(
                "Name the message by exactly one of delivery_id (a campaign's) or message_ref (a journey's)."
            )
        return attrs


class TrackingInputSerializer(serializers.Serializer):
    events = TrackingEventSerializer(many=True, allow_empty=False, max_length=1000)


class TrackingOutputSerializer(serializers.Serializer):
    recorded = serializers.IntegerField()
    duplicates = serializers.IntegerField()


class TrackingApi(OperatorAPIView):
    """The operator reports opens, clicks and conversions of delivered messages here."""

    @extend_schema(
        operation_id="tracking_record",
        summary="Record opens, clicks and conversions of delivered messages (idempotent)",
        request=TrackingInputSerializer,
        responses=TrackingOutputSerializer,
    )
    def post(self, request):
        data = TrackingInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        now = timezone.now()
        result = tracking_events_record(
            events=[
                TrackingInput(
                    delivery_id=e.get("delivery_id"),
                    message_ref=e.get("message_ref") or "",
                    kind=e["kind"],
                    occurred_at=e.get("occurred_at") or now,
                    order_value=e.get("order_value"),
                    idempotency_key=e.get("idempotency_key") or "",
                )
                for e in data.validated_data["events"]
            ]
        )
        return Response(TrackingOutputSerializer(result.__dict__).data)
