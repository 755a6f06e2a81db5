"""Journey endpoints under /api/v1/ (merchants). Thin: services do the work, selectors release the figures."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings

from campaigns.models import Channel
from campaigns.stats import Z_95
from merchants.api_base import IdField, MerchantAPIView, get_scoped_or_404
from merchants.api_fields import ApiErrorSerializer, ChoiceField, LocalTimeField
from merchants.pagination import page_parameters
from privacy.release import ReleasedCount
from segments.api import PublicCountSerializer

from .definition import step_views
from .models import Journey, ReentryPolicy, TriggerKind
from .selectors import journey_report_public, journeys_for_merchant
from .services import FIELDS as JOURNEY_FIELDS
from .services import journey_activate, journey_create, journey_delete, journey_pause, journey_update
from .templates import TEMPLATES, journey_from_template

_JOURNEY_LOCAL_TIME = (
    "A local time of day in the platform's journey time zone (JOURNEY_TIME_ZONE), HH:MM or HH:MM:SS, without an offset."
)
_TARGET = {
    "oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "enum": ["exit"]}],
    "description": 'A later step\'s index, or "exit".',
}
_MESSAGE_PROPERTIES = {
    "title": {"type": "string", "minLength": 1, "description": "The campaigns' placeholders, plus {carted_product}."},
    "body": {"type": "string", "minLength": 1},
    "coupon_code": {"type": "string", "maxLength": 64},
    "discount_percent": {
        "oneOf": [
            {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 100},
            {"type": "string"},
            {"type": "null"},
        ]
    },
}
_VARIANT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **_MESSAGE_PROPERTIES,
        "weight": {
            "type": "integer",
            "minimum": 1,
            "maximum": 99,
            "description": "Percent of the step's consumers; the weights sum to 100 (none given: equal shares).",
        },
    },
    "description": "One message of an A/B/n test; a field it leaves out is the step's.",
}


def _step(kind: str, properties: dict, required: list[str], **extra) -> dict:
    return {
        "type": "object",
        "required": ["type", *required],
        "properties": {"type": {"type": "string", "enum": [kind]}, "next": _TARGET, **properties},
        **extra,
    }


JOURNEY_STEP_SCHEMA = {
    "oneOf": [
        _step(
            "wait",
            {
                "duration": {"type": "string", "pattern": r"^\s*\d{1,5}\s*(m|h|d)\s*$", "example": "2h"},
                "until": {"type": "string", "pattern": r"^([01]?\d|2[0-3]):([0-5]\d)$", "example": "09:00"},
            },
            [],
            oneOf=[{"required": ["duration"]}, {"required": ["until"]}],
        ),
        _step(
            "wait_for",
            {
                "event": {"type": "string", "example": "purchased()"},
                "timeout": {"type": "string", "example": "4h"},
                "on_event": _TARGET,
                "on_timeout": _TARGET,
            },
            ["event", "timeout"],
        ),
        _step(
            "branch",
            {"condition": {"type": "string", "example": "interest:outdoor"}, "then": _TARGET, "else": _TARGET},
            ["condition"],
        ),
        _step(
            "send",
            {
                **_MESSAGE_PROPERTIES,
                "products": {"type": "integer", "minimum": 0, "maximum": 10, "default": 3},
                "variants": {"type": "array", "minItems": 2, "maxItems": 5, "items": _VARIANT},
                "auto_winner": {
                    "type": "boolean",
                    "description": "Send only the winning variant once one converts significantly better.",
                },
            },
            [],
            anyOf=[{"required": ["title", "body"]}, {"required": ["variants"]}],
        ),
        _step("exit", {}, []),
    ],
}


@extend_schema_field(
    {
        "type": "array",
        "minItems": 1,
        "maxItems": 50,
        "items": JOURNEY_STEP_SCHEMA,
        "description": "The ordered list of steps (docs/journeys.md); errors name the step and field.",
    }
)
class JourneyStepsField(serializers.JSONField):
    """The steps as JSON, described step by step in the OpenAPI document (the service checks them in full)."""


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
    quiet_start = LocalTimeField(
        required=False,
        allow_null=True,
        help_text="In the platform's journey time zone (JOURNEY_TIME_ZONE); adds to the platform's and the merchant's "
        "quiet hours.",
    )
    quiet_end = LocalTimeField(required=False, allow_null=True, help_text=_JOURNEY_LOCAL_TIME)
    frequency_cap = serializers.IntegerField(min_value=1, max_value=1000, required=False, allow_null=True)
    frequency_window_days = serializers.IntegerField(min_value=1, max_value=365, required=False)
    attribution_window_days = serializers.IntegerField(min_value=1, max_value=365, required=False)
    channel = ChoiceField(
        choices=Channel.choices,
        required=False,
        help_text="inbox (default) or webhook: the operator's notification service, as campaigns use it.",
    )
    steps = JourneyStepsField(required=False)
    updated_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text=(
            "On a change: the journey's `updated_at` as you read it. When the journey has been saved since (another "
            "edit, an activation, a pause), the change is refused with 409 `edit_conflict` and nothing is written; "
            "read it again and re-apply your change. Without it the change applies to whatever is stored."
        ),
    )


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
    quiet_start = LocalTimeField(allow_null=True, help_text=_JOURNEY_LOCAL_TIME)
    quiet_end = LocalTimeField(allow_null=True, help_text=_JOURNEY_LOCAL_TIME)
    frequency_cap = serializers.IntegerField(allow_null=True)
    frequency_window_days = serializers.IntegerField()
    attribution_window_days = serializers.IntegerField()
    channel = serializers.CharField()
    version = serializers.IntegerField(allow_null=True)
    steps = JourneyStepsField()
    flow = JourneyStepSerializer(many=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField(
        help_text="When the journey was last saved: send it back with a change (PATCH) to refuse it if another one "
        "came first."
    )


class JourneyListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = JourneyOutputSerializer(many=True)


def journey_data(journey: Journey) -> dict:
    steps = journey.current_version.steps if journey.current_version else []
    return {
        # The fields a merchant writes (services.FIELDS) and the ones the platform keeps.
        **{
            key: getattr(journey, key)
            for key in ("id", "status", *JOURNEY_FIELDS, "last_error", "created_at", "updated_at")
        },
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
        values.pop("updated_at", None)  # a new journey has nothing to have changed since
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
        description=(
            "Send `updated_at` as you read it to make the change conditional: a journey saved since is a 409 "
            "(`edit_conflict`, with the current `updated_at` and `version` in `details`) and nothing is written."
        ),
        request=JourneyInputSerializer,
        responses={
            200: JourneyOutputSerializer,
            409: OpenApiResponse(
                ApiErrorSerializer,
                description="`edit_conflict`: the journey was saved after the `updated_at` sent; "
                "`invalid_transition`: the trigger of an active journey cannot change.",
            ),
        },
    )
    def patch(self, request, pk: int):
        journey = self.journey(pk)
        data = JourneyInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        values.pop("template", None)
        expected = values.pop("updated_at", None)
        journey_update(journey=journey, actor=request.user.actor, expected_updated_at=expected, **values)
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


class JourneyVariantReportSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    letter = serializers.CharField()
    weight = serializers.IntegerField()
    title = serializers.CharField(help_text="The variant's title template.")
    sent = PublicCountSerializer()
    opened = PublicCountSerializer()
    clicked = PublicCountSerializer()
    converted = PublicCountSerializer()
    conversion_rate = serializers.FloatField(allow_null=True, help_text="From released numbers; null when hidden.")
    winner = serializers.BooleanField(help_text="The variant this step settled on (auto_winner).")


class JourneyStepReportSerializer(serializers.Serializer):
    step = JourneyStepSerializer()
    reached = PublicCountSerializer()
    sent = PublicCountSerializer()
    waiting = PublicCountSerializer()
    failed = PublicCountSerializer(allow_null=True, help_text="Send steps: messages the webhook did not accept.")
    opened = PublicCountSerializer(allow_null=True, help_text="Send steps: messages opened (tracked once each).")
    clicked = PublicCountSerializer(allow_null=True)
    converted = PublicCountSerializer(
        allow_null=True, help_text="Send steps: a purchase or a tracked conversion within the attribution window."
    )
    variants = JourneyVariantReportSerializer(
        many=True, help_text="The current version's variants of an A/B/n send step (empty otherwise)."
    )
    winner_reason = serializers.CharField(help_text="Why the step settled on a variant; empty until it has.")


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


def _maybe(c: ReleasedCount | None) -> dict | None:
    return None if c is None else c.public()


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
                    **{m: _maybe(getattr(s, m)) for m in ("failed", "opened", "clicked", "converted")},
                    "variants": [
                        {
                            **{k: getattr(v, k) for k in ("position", "letter", "weight", "title", "winner")},
                            **{m: _count(getattr(v, m)) for m in ("sent", "opened", "clicked", "converted")},
                            "conversion_rate": v.conversion_rate,
                        }
                        for v in s.variants
                    ],
                    "winner_reason": s.winner_reason,
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
