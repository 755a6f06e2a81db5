"""REST API for merchants: live audience estimates and segments (CRUD, refresh, insights, overlap, lookalikes).

Thin views: each operation validates its input with a small serializer, calls one service or selector, and
shapes the answer. Every segment is reached through the caller's merchant scope, so another merchant's id is
the same 404 as a missing one. Every count is released through the privacy layer (segments.figures,
segments.insights): noisy, the same number on every page, small ones suppressed.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django_celery_beat.validators import crontab_validator
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.response import Response

from merchants.api_base import MerchantAPIView, get_scoped_or_404
from merchants.api_fields import ChoiceField
from merchants.errors import Conflict
from merchants.pagination import BoundedLimitOffsetPagination, page_parameters
from privacy.release import PRECISIONS, STANDARD
from privacy.services import ProcessingNotPermitted

from .figures import segment_figures
from .insights import SegmentNotComputed, segment_insights, segment_overlap
from .models import RefreshPolicy, Segment, SegmentKind, SegmentScope
from .selectors import (
    SUGGESTED_ARGS,
    action_value_suggestions,
    audience_estimate,
    segment_used_by,
    segments_for_merchant,
)
from .services import (
    CRONTAB_FIELDS,
    lookalike_create,
    segment_clone,
    segment_create,
    segment_crontab,
    segment_delete,
    segment_refresh_request,
    segment_update,
)
from .targeting import MAX_SUGGESTIONS


def _not_permitted(exc: ProcessingNotPermitted) -> Conflict:
    return Conflict(
        "Audience processing needs an approved processing activity for tagging; the platform's privacy officer "
        "has not approved one.",
        code="processing_not_permitted",
        details={"purpose": exc.purpose},
    )


def _request_data(request) -> dict:
    """request.data, as a dict; a body nested too deeply to decode is a 400, not a 500."""
    try:
        data = request.data
    except RecursionError:
        raise ParseError("The JSON body is nested too deeply.") from None
    if not isinstance(data, dict):
        raise ParseError("The body must be a JSON object.")
    return data


# ------------------------------------------------------------------------------------------------ serializers


class PublicCountSerializer(serializers.Serializer):
    size = serializers.IntegerField(
        allow_null=True, help_text="The released (noisy, rounded) count; null when suppressed or withheld."
    )
    display = serializers.CharField(help_text='e.g. "12,000" or "fewer than 170".')
    hidden = serializers.BooleanField(help_text="True when the released count is under the suppression threshold.")
    error_bound = serializers.IntegerField(
        allow_null=True, required=False, help_text="|size - true count| is at most this with probability 95 %."
    )
    precision = serializers.CharField(required=False)
    withheld = serializers.BooleanField(
        required=False, help_text="True when not released because the merchant's privacy budget is spent."
    )


_public_count_field = extend_schema_field(PublicCountSerializer(allow_null=True))


class DefinitionInput(serializers.Serializer):
    expression = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Text form, e.g. country:SG AND (interest:sports OR interest:outdoor) AND NOT "
        "discount_sensitivity:high",
    )
    definition = serializers.JSONField(
        required=False, help_text='JSON form, e.g. {"and": [{"tag": {"family": "country", "value": "SG"}}, ...]}'
    )

    def validate(self, attrs):
        if ("expression" in attrs) == ("definition" in attrs):
            raise serializers.ValidationError("Give exactly one of expression (text) or definition (JSON).")
        return attrs


SCOPE_HELP = (
    "marketplace (default): everyone in the marketplace; my_customers: only consumers who interacted with your "
    "store (any event: a view, a cart, a purchase ...)."
)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Text form",
            value={"expression": 'country:SG AND purchased(category="outdoor", within="30d")', "precision": "preview"},
            request_only=True,
        ),
        OpenApiExample(
            "JSON form",
            value={
                "definition": {
                    "and": [
                        {"tag": {"family": "country", "value": "SG"}},
                        {"not": {"tag": {"family": "discount_sensitivity", "value": "high"}}},
                    ]
                }
            },
            request_only=True,
        ),
    ]
)
class EstimateInput(DefinitionInput):
    scope = ChoiceField(
        choices=SegmentScope.values, required=False, default=SegmentScope.MARKETPLACE, help_text=SCOPE_HELP
    )
    precision = ChoiceField(
        choices=sorted(PRECISIONS),
        required=False,
        default=STANDARD,
        help_text="standard (±44 at 95 %, costs ρ 0.0025 of the period's privacy budget when new) or preview "
        "(±246, coarse, 1/25 of the cost: for estimates while typing). Repeats of a set already released are free.",
    )


class ReleasedCountSerializer(PublicCountSerializer):
    size = serializers.IntegerField(
        allow_null=True, help_text="The released (noisy, rounded) count; null when suppressed."
    )
    hidden = serializers.BooleanField(help_text="True when the released count is under the suppression threshold.")
    error_bound = serializers.IntegerField(
        allow_null=True, help_text="|size - true count| is at most this with probability 95 %; null when hidden."
    )
    precision = serializers.CharField()


class EstimateOutput(serializers.Serializer):
    size = ReleasedCountSerializer()
    reachable = ReleasedCountSerializer(
        help_text="Of those, consumers a message without an offer may reach now: express direct-marketing "
        "consent, no objection or suppression, not under 18 unless privacy officers allow it."
    )
    took_ms = serializers.FloatField()
    expression = serializers.CharField(help_text="The expression in canonical text form.")
    definition = serializers.JSONField(help_text="The same expression in the JSON form.")
    scope = serializers.CharField(help_text="Whom the counts are among: marketplace or my_customers.")


class CrontabField(serializers.CharField):
    """Five crontab fields (minute hour day-of-month month day-of-week, UTC), checked before anything is written."""

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        parts = text.split()
        if len(parts) != len(CRONTAB_FIELDS):
            raise serializers.ValidationError(
                f"Five fields are needed ({' '.join(CRONTAB_FIELDS)}, UTC), e.g. '0 9 * * 1'; {len(parts)} were given."
            )
        text = " ".join(parts)
        try:
            crontab_validator(text)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(f"Not a valid crontab: {'; '.join(exc.messages)}") from None
        return text


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A daily-refreshed segment",
            value={
                "name": "Outdoor shoppers in Singapore",
                "expression": 'country:SG AND (interest:sports OR purchased(category="outdoor", within="90d"))',
                "refresh_policy": "daily",
            },
            request_only=True,
        )
    ]
)
class SegmentInput(DefinitionInput):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    kind = ChoiceField(choices=[SegmentKind.RULE, SegmentKind.PERSONA], required=False, default=SegmentKind.RULE)
    refresh_policy = ChoiceField(choices=RefreshPolicy.choices, required=False, default="manual")
    scope = ChoiceField(
        choices=SegmentScope.values, required=False, default=SegmentScope.MARKETPLACE, help_text=SCOPE_HELP
    )
    crontab = CrontabField(
        required=False,
        help_text='Custom policy only: "minute hour day-of-month month day-of-week" (UTC). Editable later in '
        "the admin as a periodic task.",
    )


class SegmentUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    expression = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    definition = serializers.JSONField(required=False)
    refresh_policy = ChoiceField(choices=RefreshPolicy.choices, required=False)
    scope = ChoiceField(choices=SegmentScope.values, required=False, help_text=SCOPE_HELP)
    crontab = CrontabField(required=False)

    def validate(self, attrs):
        if "expression" in attrs and "definition" in attrs:
            raise serializers.ValidationError("Give at most one of expression (text) or definition (JSON).")
        return attrs


# What a lookalike or persuadable segment's stored spec may show a merchant: the recipe they asked for. The rest
# (a persuadable model's hold-out evaluation, exact counts of treated and converted consumers, the rows it was
# trained on) are exact figures the release layer shows only with noise (campaigns.uplift's public evaluation).
LOOKALIKE_RECIPE_KEYS = ("size", "min_similarity", "method", "campaign", "share", "learner", "response")


def lookalike_recipe(spec: dict | None) -> dict | None:
    if spec is None:
        return None
    return {key: spec[key] for key in LOOKALIKE_RECIPE_KEYS if key in spec}


class SegmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    kind = serializers.CharField()
    expression = serializers.CharField(source="definition")
    definition = serializers.JSONField(source="definition_json", allow_null=True)
    seed_segment_id = serializers.IntegerField(source="seed_id", allow_null=True)
    lookalike = serializers.SerializerMethodField(
        help_text="The recipe a lookalike, persuadable or response segment was made by (size, similarity, method; "
        "campaign, share, learner, response). What it was evaluated on stays stored, unreleased, and is not shown."
    )
    refresh_policy = serializers.CharField()
    scope = serializers.CharField(help_text="Whom it counts (and its size is among): marketplace or my_customers.")
    crontab = serializers.SerializerMethodField()
    status = serializers.CharField()
    last_error = serializers.CharField()
    last_error_at = serializers.DateTimeField(allow_null=True)
    stream_error = serializers.CharField(help_text="Why the last real-time update failed; empty once one succeeds.")
    stream_error_at = serializers.DateTimeField(allow_null=True)
    version = serializers.IntegerField()
    pending_version = serializers.IntegerField()
    size = serializers.SerializerMethodField()
    entered = serializers.SerializerMethodField()
    exited = serializers.SerializerMethodField()
    last_refreshed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_lookalike(self, segment: Segment) -> dict | None:
        return lookalike_recipe(segment.lookalike_spec)

    def get_crontab(self, segment) -> str | None:
        return segment_crontab(segment)

    def _count(self, segment, measure):
        """The released figure (segments.figures): from context["figures"] when the view released a page's
        figures together, else released for this one segment."""
        figures = self.context.get("figures")
        if figures is None or segment.pk not in figures:
            figures = segment_figures(merchant_id=segment.merchant_id, segments=[segment])
        count = figures.get(segment.pk, {}).get(measure)
        return None if count is None else count.public()

    @_public_count_field
    def get_size(self, segment):
        return self._count(segment, "size")

    @_public_count_field
    def get_entered(self, segment):
        return self._count(segment, "entered")

    @_public_count_field
    def get_exited(self, segment):
        return self._count(segment, "exited")


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class UsedBySerializer(serializers.Serializer):
    campaigns = UserSerializer(many=True, help_text="Campaigns that include or exclude the segment, in any status.")
    lookalikes = UserSerializer(many=True, help_text="Lookalike segments seeded from it.")
    segments = UserSerializer(many=True, help_text="Segments whose expression names it as segment:ID.")


class SegmentDetailOutput(SegmentOutput):
    used_by = serializers.SerializerMethodField(
        help_text="What uses the segment; while anything does, deleting it is refused (409)."
    )

    @extend_schema_field(UsedBySerializer)
    def get_used_by(self, segment) -> dict:
        return segment_used_by(segment=segment).as_dict()


class CloneInput(serializers.Serializer):
    name = serializers.CharField(
        max_length=200, required=False, help_text='Defaults to "Copy of <name>", numbered until it is unique.'
    )


class SegmentPageOutput(serializers.Serializer):
    count = serializers.IntegerField(help_text="How many segments you have.")
    next = serializers.URLField(allow_null=True, help_text="The next page, or null on the last.")
    previous = serializers.URLField(allow_null=True, help_text="The previous page, or null on the first.")
    results = SegmentOutput(many=True)


class RefreshOutput(serializers.Serializer):
    segment_id = serializers.IntegerField()
    version = serializers.IntegerField(help_text="The version this refresh will write; older queued runs skip.")
    status = serializers.CharField()


class LookalikeInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    size = serializers.IntegerField(
        required=False, min_value=1, max_value=2**31 - 1, help_text="Take the N most similar consumers."
    )
    min_similarity = serializers.FloatField(
        required=False, help_text="Or take everyone at least this similar (0 to 1)."
    )
    refresh_policy = ChoiceField(choices=RefreshPolicy.choices, required=False, default="manual")

    def validate(self, attrs):
        if ("size" in attrs) == ("min_similarity" in attrs):
            raise serializers.ValidationError("Give exactly one of size or min_similarity.")
        return attrs


class InsightValueSerializer(serializers.Serializer):
    value = serializers.CharField()
    # A field named like Field.label: DRF's metaclass moves declared fields off the class, which the stub cannot see.
    label = serializers.CharField()  # type: ignore[assignment]
    suppressed = serializers.BooleanField(help_text="True when the cell is under the minimum audience: no figures.")
    segment_count = PublicCountSerializer(required=False)
    segment_share = serializers.FloatField(required=False)
    population_count = PublicCountSerializer(required=False)
    population_share = serializers.FloatField(required=False)
    lift = serializers.FloatField(required=False, help_text="segment share / population share")


class InsightFamilySerializer(serializers.Serializer):
    family = serializers.CharField()
    values = InsightValueSerializer(many=True)


class InsightsOutput(serializers.Serializer):
    segment_id = serializers.IntegerField()
    size = PublicCountSerializer()
    families = InsightFamilySerializer(many=True)


class OverlapOutput(serializers.Serializer):
    segment_id = serializers.IntegerField()
    other_id = serializers.IntegerField()
    size = PublicCountSerializer()
    other_size = PublicCountSerializer()
    both = PublicCountSerializer()
    jaccard = serializers.FloatField(allow_null=True, help_text="Null when the intersection is hidden.")


def segment_payload(segment: Segment, merchant) -> dict:
    """A segment as the API shows it, re-read with its latest snapshot's figures."""
    return SegmentOutput(segments_for_merchant(merchant).get(pk=segment.pk)).data


def _not_computed(exc: SegmentNotComputed) -> Conflict:
    return Conflict(str(exc), code="segment_not_computed")


# ------------------------------------------------------------------------------------------------ views

_BAD_EXPRESSION = OpenApiResponse(
    description="A bad expression: error.details has position (1-based character position, or a JSON path for "
    "the JSON form), line, column, found and expected."
)


class OwnSegmentsApi(MerchantAPIView):
    """A view over the caller's own segments: another merchant's id is the same 404 as a missing one."""

    def scoped_queryset(self, merchant):
        return Segment.objects.for_merchant(merchant)


def _computed_response(output: type[serializers.Serializer], compute) -> Response:
    """compute() serialised, or 409 when the segment has no snapshot yet or no legal basis covers the reading."""
    try:
        return Response(output(compute()).data)
    except SegmentNotComputed as exc:
        raise _not_computed(exc) from None
    except ProcessingNotPermitted as exc:
        raise _not_permitted(exc) from None


class AudienceEstimateApi(OwnSegmentsApi):
    @extend_schema(
        operation_id="audiences_estimate",
        summary="Estimate an audience",
        description="How many live consumers match an expression, and how many of them have express "
        "direct-marketing consent, released with differential privacy: noisy (the same set always gets the same "
        "number), rounded, with a 95 % error bound, and hidden under a threshold calibrated to the noise. Each "
        "new set released spends from the merchant's privacy budget for the period; repeats are free. When the "
        "budget is spent: 429 privacy_budget_exhausted with renews_at and Retry-After.",
        request=EstimateInput,
        responses={
            200: EstimateOutput,
            400: _BAD_EXPRESSION,
            409: OpenApiResponse(description="No legal basis."),
            429: OpenApiResponse(description="The privacy budget for the period is spent; details.renews_at."),
        },
    )
    def post(self, request):
        payload = EstimateInput(data=_request_data(request))
        payload.is_valid(raise_exception=True)
        try:
            estimate = audience_estimate(merchant=self.merchant, **payload.validated_data)
        except ProcessingNotPermitted as exc:
            raise _not_permitted(exc) from None
        return Response(
            EstimateOutput(
                {
                    "size": estimate.size,
                    "reachable": estimate.reachable,
                    "took_ms": estimate.took_ms,
                    "expression": estimate.expression,
                    "definition": estimate.definition,
                    "scope": estimate.scope,
                }
            ).data
        )


class ActionValuesQuery(serializers.Serializer):
    argument = ChoiceField(choices=list(SUGGESTED_ARGS), help_text="category, brand or product (your own SKUs)")
    prefix = serializers.CharField(required=False, default="", allow_blank=True, max_length=200, trim_whitespace=False)
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=MAX_SUGGESTIONS)
    scope = ChoiceField(
        choices=SegmentScope.values, required=False, default=SegmentScope.MARKETPLACE, help_text=SCOPE_HELP
    )


class ValueItemOutput(serializers.Serializer):
    value = serializers.CharField(help_text="What to write in the action: a category, a brand or a SKU.")
    display = serializers.CharField(help_text="What to show: a product's title, else the value.")
    reach = ReleasedCountSerializer(
        help_text="Consumers with any event on it (in the scope), released with privacy noise at the preview "
        "precision; never exact."
    )


class ActionValuesOutput(serializers.Serializer):
    argument = serializers.CharField()
    scope = serializers.CharField()
    values = serializers.ListField(child=serializers.CharField(), help_text="The values alone, as in items.")
    items = ValueItemOutput(many=True)


class ActionValuesApi(OwnSegmentsApi):
    @extend_schema(
        operation_id="audiences_values",
        summary="Categories, brands and products you may target, with their reach",
        description="Suggestions for the category, brand and product arguments of actions such as "
        'purchased(brand="...") : categories and brands in your own catalogue or sold by at least '
        f"{settings.SEGMENT_SHARED_VALUE_MIN_MERCHANTS} merchants, and your own products (by SKU or title). "
        "Other values are refused in expressions. Each comes with its reach (consumers with any event on it, "
        "in the scope), released with privacy noise.",
        parameters=[ActionValuesQuery],
        responses=ActionValuesOutput,
    )
    def get(self, request):
        query = ActionValuesQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        items = action_value_suggestions(merchant_id=self.merchant.pk, **data)
        return Response(
            ActionValuesOutput(
                {
                    "argument": data["argument"],
                    "scope": data["scope"],
                    "values": [item.value for item in items],
                    "items": [{"value": i.value, "display": i.label, "reach": i.reach} for i in items],
                }
            ).data
        )


class SegmentsApi(MerchantAPIView):
    def scoped_queryset(self, merchant):
        return segments_for_merchant(merchant)

    @extend_schema(
        operation_id="segments_list",
        summary="List segments",
        description="Your segments with their latest snapshot's size, who entered and who left (counts as "
        "merchants may see them), refresh status and last error.",
        parameters=page_parameters(),
        responses=SegmentPageOutput,
    )
    def get(self, request):
        paginator = BoundedLimitOffsetPagination()
        page = paginator.paginate_queryset(self.get_queryset(), request, view=self)
        figures = segment_figures(merchant_id=self.merchant.pk, segments=page)
        return paginator.get_paginated_response(SegmentOutput(page, many=True, context={"figures": figures}).data)

    @extend_schema(
        operation_id="segments_create",
        summary="Create a segment",
        description="From an expression or a JSON definition. Its first refresh is queued at once.",
        request=SegmentInput,
        responses={201: SegmentOutput, 400: _BAD_EXPRESSION, 409: OpenApiResponse(description="Name in use.")},
    )
    def post(self, request):
        payload = SegmentInput(data=_request_data(request))
        payload.is_valid(raise_exception=True)
        segment = segment_create(merchant=self.merchant, actor=request.user.actor, **payload.validated_data)
        return Response(segment_payload(segment, self.merchant), status=status.HTTP_201_CREATED)


class SegmentDetailApi(MerchantAPIView):
    def scoped_queryset(self, merchant):
        return segments_for_merchant(merchant)

    @extend_schema(
        operation_id="segments_retrieve",
        summary="Get a segment",
        description="One of your segments, with what uses it (used_by); another merchant's id is a 404 like a "
        "missing one.",
        responses=SegmentDetailOutput,
    )
    def get(self, request, segment_id: int):
        return Response(SegmentDetailOutput(get_scoped_or_404(self.get_queryset(), pk=segment_id)).data)

    @extend_schema(
        operation_id="segments_update",
        summary="Edit a segment",
        description="A changed expression or definition is checked (unknown tags, other segments, cycles) and "
        "triggers a refresh.",
        request=SegmentUpdateInput,
        responses={200: SegmentOutput, 400: _BAD_EXPRESSION},
    )
    def patch(self, request, segment_id: int):
        segment = get_scoped_or_404(self.get_queryset(), pk=segment_id)
        payload = SegmentUpdateInput(data=_request_data(request), partial=True)
        payload.is_valid(raise_exception=True)
        segment = segment_update(segment=segment, actor=request.user.actor, **payload.validated_data)
        return Response(segment_payload(segment, self.merchant))

    @extend_schema(
        operation_id="segments_destroy",
        summary="Delete a segment",
        description="Refused (409) while another segment names it, it seeds a lookalike, or a campaign uses it.",
        responses={204: None, 409: OpenApiResponse(description="Used by another segment, lookalike or campaign.")},
    )
    def delete(self, request, segment_id: int):
        segment = get_scoped_or_404(self.get_queryset(), pk=segment_id)
        segment_delete(segment=segment, actor=request.user.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SegmentCloneApi(OwnSegmentsApi):
    @extend_schema(
        operation_id="segments_clone",
        summary="Copy a segment",
        description="A new segment with the same definition (or lookalike recipe), scope, description, refresh "
        'policy and schedule, named "Copy of <name>" (numbered until unique) unless a name is given. Its first '
        "refresh is queued at once.",
        request=CloneInput,
        responses={201: SegmentOutput, 409: OpenApiResponse(description="The name given is in use.")},
    )
    def post(self, request, segment_id: int):
        segment = get_scoped_or_404(self.get_queryset(), pk=segment_id)
        payload = CloneInput(data=_request_data(request))
        payload.is_valid(raise_exception=True)
        clone = segment_clone(segment=segment, actor=request.user.actor, **payload.validated_data)
        return Response(segment_payload(clone, self.merchant), status=status.HTTP_201_CREATED)


class SegmentRefreshApi(OwnSegmentsApi):
    @extend_schema(
        operation_id="segments_refresh",
        summary="Refresh a segment",
        description="Queues a refresh and answers at once. The segment's status and last_error say how it went.",
        request=None,
        responses={202: RefreshOutput},
    )
    def post(self, request, segment_id: int):
        segment = get_scoped_or_404(self.get_queryset(), pk=segment_id)
        version = segment_refresh_request(segment_id=segment.pk, actor=request.user.actor)
        return Response(
            RefreshOutput({"segment_id": segment.pk, "version": version, "status": "pending"}).data,
            status=status.HTTP_202_ACCEPTED,
        )


class SegmentInsightsApi(OwnSegmentsApi):
    @extend_schema(
        operation_id="segments_insights",
        summary="Segment insights",
        description="For each tag family, the segment's distribution against all live consumers, with lift. "
        "Every count is released with privacy noise (cells coarse, at the preview precision); shares and lift are "
        "computed from released counts; a cell whose released count is under the threshold is suppressed.",
        responses={200: InsightsOutput, 409: OpenApiResponse(description="Not computed yet, or no legal basis.")},
    )
    def get(self, request, segment_id: int):
        segment = get_scoped_or_404(self.get_queryset(), pk=segment_id)
        return _computed_response(
            InsightsOutput, lambda: segment_insights(segment=segment, merchant_id=self.merchant.pk)
        )


class SegmentOverlapApi(OwnSegmentsApi):
    @extend_schema(
        operation_id="segments_overlap",
        summary="Overlap of two segments",
        description="Released sizes of both segments (the numbers on the list) and of their intersection, and the "
        "Jaccard index computed from those three; hidden with any of them.",
        responses={200: OverlapOutput, 409: OpenApiResponse(description="Not computed yet, or no legal basis.")},
    )
    def get(self, request, segment_id: int, other_id: int):
        segment = get_scoped_or_404(self.get_queryset(), pk=segment_id)
        other = get_scoped_or_404(self.get_queryset(), pk=other_id)
        return _computed_response(
            OverlapOutput, lambda: segment_overlap(segment=segment, other=other, merchant_id=self.merchant.pk)
        )


class SegmentLookalikeApi(OwnSegmentsApi):
    @extend_schema(
        operation_id="segments_lookalike",
        summary="Make a lookalike segment",
        description="A new segment of the consumers most similar to this one's members (the seed needs at least "
        f"{settings.MIN_AUDIENCE}): the top `size`, or everyone at or above `min_similarity`. Similarity uses "
        "the active recommendation model's consumer factors where there is one, else a classifier on tags.",
        request=LookalikeInput,
        responses={
            201: SegmentOutput,
            409: OpenApiResponse(description="Seed not computed or name in use."),
            422: OpenApiResponse(description="Seed too small or bad size."),
        },
    )
    def post(self, request, segment_id: int):
        seed = get_scoped_or_404(self.get_queryset(), pk=segment_id)
        payload = LookalikeInput(data=_request_data(request))
        payload.is_valid(raise_exception=True)
        segment = lookalike_create(seed=seed, actor=request.user.actor, **payload.validated_data)
        return Response(segment_payload(segment, self.merchant), status=status.HTTP_201_CREATED)
