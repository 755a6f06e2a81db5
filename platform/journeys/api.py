"""Journey endpoints under /api/v1/ (merchants). Thin: services do the work, selectors release the figures."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings

from campaigns.stats import Z_95
from merchants.api_base import IdField, MerchantAPIView, get_scoped_or_404
from merchants.api_fields import ChoiceField
from merchants.pagination import page_parameters
from privacy.release import ReleasedCount
from segments.api import PublicCountSerializer

from .definition import step_views
from .models import Journey, ReentryPolicy, TriggerKind
from .selectors import journey_report_public, journeys_for_merchant
from .services import FIELDS as JOURNEY_FIELDS
from .services import journey_activate, journey_create, journey_delete, journey_pause, journey_update
from .templates import TEMPLATES, journey_from_template


@extend_schema_field(
    {
        "type": "string",
        "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
        "example": "21:00:00",
        "nullable": True,
        "description": "A local time of day in the journey's time zone, HH:MM or HH:MM:SS, without an offset.",
    }
)
class LocalTimeField(serializers.TimeField):
    """A wall-clock time without an offset (quiet hours): OpenAPI's "time" format would require one."""


class JourneyInputSerializer(serializers.Serializer):
    template = ChoiceField(
        choices=[(k, t.name) for k, t in TEMPLATES.items()],
        required=False,
        help_text="Create from a template (abandoned_cart, win_back, post_purchase); other fields are then optional.",
    )
    name = serializers.CharField(max_length=200, required=False)
    trigger_kind = ChoiceField(choices=TriggerKind.choices, required=False)
    trigger_segment_id = IdField(required=False, allow_null=True, help_text="Your segment, for segment_entered.")
    trigger_event = serializers.CharField(
        max_length=500, required=False, allow_blank=True, help_text='One action, e.g. carted(category="outdoor").'
    )
    exit_condition = serializers.CharField(
        max_length=500,
        required=False,
        allow_blank=True,
        help_text="One action that ends the journey, e.g. purchased().",
    )
    holdout_share = serializers.DecimalField(
        max_digits=4, decimal_places=3, min_value=Decimal("0"), max_value=Decimal("0.5"), required=False
    )
    reentry = ChoiceField(choices=ReentryPolicy.choices, required=False)
    reentry_days = serializers.IntegerField(min_value=1, max_value=3650, required=False, allow_null=True)
    quiet_start = LocalTimeField(required=False, allow_null=True, help_text="Overrides the platform's.")
    quiet_end = LocalTimeField(required=False, allow_null=True)
    frequency_cap = serializers.IntegerField(min_value=1, max_value=1000, required=False, allow_null=True)
    frequency_window_days = serializers.IntegerField(min_value=1, max_value=365, required=False)
    attribution_window_days = serializers.IntegerField(min_value=1, max_value=365, required=False)
    steps = serializers.JSONField(required=False, help_text="The ordered list of steps (docs/journeys.md).")


class JourneyStepSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    type = serializers.CharField()
    summary = serializers.CharField()
    condition = serializers.CharField(help_text="In the segment language's text form; empty when none.")


class JourneyOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    trigger_kind = serializers.CharField()
    trigger_segment_id = serializers.IntegerField(allow_null=True)
    trigger_event = serializers.CharField()
    exit_condition = serializers.CharField()
    holdout_share = serializers.DecimalField(max_digits=4, decimal_places=3)
    reentry = serializers.CharField()
    reentry_days = serializers.IntegerField(allow_null=True)
    quiet_start = LocalTimeField(allow_null=True)
    quiet_end = LocalTimeField(allow_null=True)
    frequency_cap = serializers.IntegerField(allow_null=True)
    frequency_window_days = serializers.IntegerField()
    attribution_window_days = serializers.IntegerField()
    version = serializers.IntegerField(allow_null=True)
    steps = serializers.JSONField()
    flow = JourneyStepSerializer(many=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()


class JourneyListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = JourneyOutputSerializer(many=True)


def journey_data(journey: Journey) -> dict:
    steps = journey.current_version.steps if journey.current_version else []
    return {
        # The fields a merchant writes (services.FIELDS) and the ones the platform keeps.
        **{key: getattr(journey, key) for key in ("id", "status", *JOURNEY_FIELDS, "last_error", "created_at")},
        "version": journey.current_version.number if journey.current_version else None,
        "steps": steps,
        "flow": [vars(view) for view in step_views(steps)],
    }


class _JourneyScoped(MerchantAPIView):
    def scoped_queryset(self, merchant):
        return journeys_for_merchant(merchant)

    def journey(self, pk: int) -> Journey:
        return get_scoped_or_404(self.get_queryset(), pk=pk)

    def respond(self, pk: int, code: int = status.HTTP_200_OK) -> Response:
        return Response(JourneyOutputSerializer(journey_data(self.journey(pk))).data, status=code)


class JourneyListCreateApi(_JourneyScoped):
    """Your journeys: list them, or create a draft (from a template or your own steps)."""

    @extend_schema(
        operation_id="journeys_list",
        summary="Your journeys, newest first",
        responses={200: JourneyListSerializer},
        parameters=page_parameters(),
    )
    def get(self, request):
        paginator = api_settings.DEFAULT_PAGINATION_CLASS()
        page = paginator.paginate_queryset(self.get_queryset(), request, view=self)
        return paginator.get_paginated_response([JourneyOutputSerializer(journey_data(j)).data for j in page])

    @extend_schema(
        operation_id="journeys_create",
        summary="Create a draft journey",
        request=JourneyInputSerializer,
        responses={201: JourneyOutputSerializer},
    )
    def post(self, request):
        data = JourneyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        actor = request.user.actor
        template = values.pop("template", None)
        if template:
            journey = journey_from_template(merchant=self.merchant, key=template, actor=actor, name=values.get("name"))
            if len(values) > (1 if "name" in values else 0):
                journey = journey_update(journey=journey, actor=actor, **values)
        else:
            journey = journey_create(merchant=self.merchant, actor=actor, steps=values.pop("steps", None), **values)
        return self.respond(journey.pk, status.HTTP_201_CREATED)


class JourneyDetailApi(_JourneyScoped):
    """One of your journeys. Changing the steps of a live journey adds a version: consumers in flight finish on the
    version they entered with."""

    @extend_schema(operation_id="journeys_retrieve", summary="One journey", responses=JourneyOutputSerializer)
    def get(self, request, pk: int):
        return self.respond(pk)

    @extend_schema(
        operation_id="journeys_partial_update",
        summary="Change a journey (new steps make a new version)",
        request=JourneyInputSerializer,
        responses=JourneyOutputSerializer,
    )
    def patch(self, request, pk: int):
        journey = self.journey(pk)
        data = JourneyInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        values.pop("template", None)
        journey_update(journey=journey, actor=request.user.actor, **values)
        return self.respond(pk)

    @extend_schema(operation_id="journeys_destroy", summary="Delete a draft journey", responses={204: None})
    def delete(self, request, pk: int):
        journey_delete(journey=self.journey(pk), actor=request.user.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JourneyActivateApi(_JourneyScoped):
    @extend_schema(
        operation_id="journeys_activate",
        summary="Activate (or resume) a journey",
        description="409 when it is already active.",
        request=None,
        responses=JourneyOutputSerializer,
    )
    def post(self, request, pk: int):
        journey_activate(journey=self.journey(pk), actor=request.user.actor)
        return self.respond(pk)


class JourneyPauseApi(_JourneyScoped):
    @extend_schema(
        operation_id="journeys_pause",
        summary="Pause a journey: nobody enters, due steps wait until it is resumed",
        description="409 when it is not active.",
        request=None,
        responses=JourneyOutputSerializer,
    )
    def post(self, request, pk: int):
        journey_pause(journey=self.journey(pk), actor=request.user.actor)
        return self.respond(pk)


class JourneyStepReportSerializer(serializers.Serializer):
    step = JourneyStepSerializer()
    reached = PublicCountSerializer()
    sent = PublicCountSerializer()
    waiting = PublicCountSerializer()


class JourneyGroupSerializer(serializers.Serializer):
    size = PublicCountSerializer()
    converted = PublicCountSerializer()
    conversion_rate = serializers.FloatField(allow_null=True, help_text="From released numbers; null when hidden.")


class JourneyUpliftSerializer(serializers.Serializer):
    absolute = serializers.FloatField()
    ci_low = serializers.FloatField()
    ci_high = serializers.FloatField()
    relative = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField()
    method = serializers.CharField()


class JourneyReportSerializer(serializers.Serializer):
    journey_id = serializers.IntegerField()
    status = serializers.CharField()
    steps = JourneyStepReportSerializer(many=True)
    treatment = JourneyGroupSerializer()
    holdout = JourneyGroupSerializer()
    uplift = JourneyUpliftSerializer(allow_null=True)
    note = serializers.CharField()


def _count(c: ReleasedCount) -> dict:
    return c.public()


class JourneyReportApi(_JourneyScoped):
    """How many consumers reached, were sent and are waiting at each step, and conversions of those in the journey
    against the holdout with the uplift. Every count is released with privacy noise; rates and the uplift are
    computed from released counts, and hidden when a count they need is."""

    @extend_schema(
        operation_id="journeys_report",
        summary="Per-step counts, conversions against the holdout, uplift (all released figures)",
        responses=JourneyReportSerializer,
    )
    def get(self, request, pk: int):
        journey = self.journey(pk)
        report = journey_report_public(journey)
        uplift = None
        if report.uplift is not None and report.uplift.absolute is not None:
            uplift = {
                "absolute": report.uplift.absolute,
                "ci_low": report.uplift.ci_low,
                "ci_high": report.uplift.ci_high,
                "relative": report.uplift.relative,
                "p_value": report.uplift.p_value,
                "method": f"from released counts only; Wald interval ±{Z_95:.4f}·SE; pooled two-proportion z test",
            }
        data = {
            "journey_id": journey.pk,
            "status": journey.status,
            "steps": [
                {
                    "step": vars(s.step),
                    "reached": _count(s.reached),
                    "sent": _count(s.sent),
                    "waiting": _count(s.waiting),
                }
                for s in report.steps
            ],
            "treatment": {
                "size": _count(report.treatment.size),
                "converted": _count(report.treatment.converted),
                "conversion_rate": report.treatment.conversion_rate,
            },
            "holdout": {
                "size": _count(report.holdout.size),
                "converted": _count(report.holdout.converted),
                "conversion_rate": report.holdout.conversion_rate,
            },
            "uplift": uplift,
            "note": report.note,
        }
        return Response(JourneyReportSerializer(data).data)
