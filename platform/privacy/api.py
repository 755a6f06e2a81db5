"""Operator endpoints for data-subject rights and risk control.

The raw consumer identifier arrives once, in the body of a POST; it is
pseudonymised before anything else happens and never stored, logged or sent
back (not even in a validation error). Responses carry request ids, statuses,
dates and results only.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from merchants.api_base import IdField, MerchantAPIView, OperatorAPIView
from merchants.api_fields import ChoiceField
from merchants.errors import Conflict, Invalid, Unprocessable
from merchants.pagination import MAX_OFFSET

from .models import BudgetPeriod, CounterStatement, DataSubjectRequest, RequestKind, RequestStatus
from .pseudonyms import InvalidIdentifier, normalise_identifier, pseudonymise
from .risk_flags import (
    RiskReviewError,
    UnknownFlag,
    UnknownSubject,
    blacklist_page,
    blacklist_summary,
    counter_statement_file,
)
from .selectors import budget_remaining
from .subject_rights import DuplicateOpenRequest, SubjectRequestError, subject_request_submit

RAW_ID_MAX_LENGTH = 320  # the longest e-mail address


class RawIdentifierField(serializers.CharField):
    """The consumer's raw identifier: validated for shape only; errors never quote it."""

    def __init__(self, **kwargs):
        super().__init__(max_length=RAW_ID_MAX_LENGTH, trim_whitespace=True, write_only=True, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            normalise_identifier(value)  # a phone-shaped id must be a possible phone number
        except InvalidIdentifier as exc:
            raise serializers.ValidationError(f"This identifier {exc}.", code=exc.code) from None
        return value


class SubjectRequestInput(serializers.Serializer):
    kind = ChoiceField(choices=RequestKind.choices)
    consumer_id = RawIdentifierField(help_text="The consumer's identifier at the marketplace; pseudonymised at once.")


class SubjectRequestOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    received_at = serializers.DateTimeField()
    due_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    rejection_reason = serializers.CharField(allow_blank=True)
    result = serializers.SerializerMethodField(
        help_text="When completed: the access document, the erasure's counts per table, or the objection's outcome."
    )

    def get_result(self, obj: DataSubjectRequest) -> dict | None:
        return obj.result if obj.status == RequestStatus.COMPLETED else None


class SubjectRequestCreate(OperatorAPIView):
    """Submit an access, erasure or objection request for one consumer."""

    @extend_schema(
        request=SubjectRequestInput,
        responses={201: SubjectRequestOutput},
        summary="Submit a data-subject request",
        description="An objection to direct marketing takes effect at once (consent withdrawn, every future send "
        "suppressed); access and erasure are handled by a privacy officer by `due_at`. A second open request of "
        "the same kind for the same consumer is refused with 409 and the open request's id.",
    )
    def post(self, request):
        data = SubjectRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            created = subject_request_submit(
                kind=data.validated_data["kind"],
                raw_identifier=data.validated_data["consumer_id"],
                actor=request.user.actor,
            )
        except DuplicateOpenRequest as exc:
            raise Conflict(str(exc), code=exc.code, details={"existing_request": exc.existing_id}) from None
        except SubjectRequestError as exc:
            raise Invalid(str(exc), code=exc.code) from None
        return Response(SubjectRequestOutput(created).data, status=status.HTTP_201_CREATED)


class SubjectRequestDetail(OperatorAPIView):
    """The request's status and due date; once completed, its result (an access document, or what erasure removed)."""

    @extend_schema(responses={200: SubjectRequestOutput}, summary="A data-subject request and its result")
    def get(self, request, pk: int):
        found = DataSubjectRequest.objects.filter(pk=pk).first()
        if found is None:
            raise Http404
        return Response(SubjectRequestOutput(found).data)


class CounterStatementInput(serializers.Serializer):
    consumer_id = RawIdentifierField(help_text="The consumer's identifier at the marketplace; pseudonymised at once.")
    statement = serializers.CharField(max_length=10_000, trim_whitespace=True)
    flag = IdField(required=False, allow_null=True, help_text="The risk flag contested; omit for all of them.")


class CounterStatementOutput(serializers.Serializer):
    id = serializers.IntegerField()
    flag = serializers.IntegerField(source="flag_id", allow_null=True)
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    reviewed_at = serializers.DateTimeField(allow_null=True)
    review_note = serializers.CharField(allow_blank=True)


class CounterStatementCreate(OperatorAPIView):
    @extend_schema(
        request=CounterStatementInput,
        responses={201: CounterStatementOutput},
        summary="File a consumer's counter statement against a risk flag",
        description="A privacy officer reviews it; an upheld statement lifts the flag and its offer suppression.",
    )
    def post(self, request):
        data = CounterStatementInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            created = counter_statement_file(
                pseudonym=pseudonymise(data.validated_data["consumer_id"]),
                statement=data.validated_data["statement"],
                flag_id=data.validated_data.get("flag"),
                actor=request.user.actor,
            )
        except (UnknownSubject, UnknownFlag) as exc:
            raise Unprocessable(str(exc), code=exc.code) from None
        except RiskReviewError as exc:
            raise Invalid(str(exc), code=exc.code) from None
        return Response(CounterStatementOutput(created).data, status=status.HTTP_201_CREATED)


class CounterStatementDetail(OperatorAPIView):
    """The statement's review status, and the officer's decision once it has been reviewed."""

    @extend_schema(responses={200: CounterStatementOutput}, summary="A counter statement and its review")
    def get(self, request, pk: int):
        found = CounterStatement.objects.filter(pk=pk).first()
        if found is None:
            raise Http404
        return Response(CounterStatementOutput(found).data)


class BlacklistQuery(serializers.Serializer):
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=1000)
    offset = serializers.IntegerField(required=False, default=0, min_value=0, max_value=MAX_OFFSET)


class BlacklistFlagOutput(serializers.Serializer):
    id = serializers.IntegerField()
    reason = serializers.CharField()
    score = serializers.IntegerField()
    evidence = serializers.DictField()
    flagged_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()


class BlacklistEntryOutput(serializers.Serializer):
    pseudonym = serializers.CharField()
    flags = BlacklistFlagOutput(many=True)


class BlacklistSummaryOutput(serializers.Serializer):
    consumers = serializers.IntegerField()
    flags = serializers.IntegerField()
    by_reason = serializers.DictField(child=serializers.IntegerField())


class BlacklistOutput(serializers.Serializer):
    summary = BlacklistSummaryOutput()
    count = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    results = BlacklistEntryOutput(many=True)


class Blacklist(OperatorAPIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 1000},
                description="Consumers per page (1–1000, default 100).",
            ),
            OpenApiParameter(
                "offset",
                {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                description="Consumers to skip.",
            ),
        ],
        responses={200: BlacklistOutput},
        summary="The platform blacklist: consumers with active risk flags",
        description="Pseudonyms, reason codes and evidence counts only. Flagged consumers are kept out of every "
        "campaign that carries an offer until the flag is lifted.",
    )
    def get(self, request):
        query = BlacklistQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        limit, offset = query.validated_data["limit"], query.validated_data["offset"]
        summary = blacklist_summary()
        body = {
            "summary": summary,
            "count": summary["consumers"],
            "limit": limit,
            "offset": offset,
            "results": blacklist_page(limit=limit, offset=offset),
        }
        return Response(BlacklistOutput(body).data)


# ------------------------------------------------------------------------------------------------ privacy budget


class BudgetOutput(serializers.Serializer):
    allowance = serializers.FloatField(help_text="Privacy loss (zCDP ρ) new releases may spend this period.")
    spent = serializers.FloatField()
    remaining = serializers.FloatField()
    releases = serializers.IntegerField(help_text="New distinct figures released this period (repeats are free).")
    period_start = serializers.DateField()
    renews_at = serializers.DateTimeField()


class PrivacyBudgetApi(MerchantAPIView):
    """The calling merchant's privacy budget: what is left this period and when it renews."""

    def scoped_queryset(self, merchant):
        return BudgetPeriod.objects.filter(merchant=merchant)

    @extend_schema(
        operation_id="privacy_budget",
        summary="Your privacy budget",
        description="Every new figure the platform releases to you (an estimate of a set not asked about before "
        "in this period) spends from a privacy budget; repeats are free. When it is spent, new estimates answer "
        "429 privacy_budget_exhausted until renews_at. See docs/privacy.md.",
        responses=BudgetOutput,
    )
    def get(self, request):
        return Response(BudgetOutput(budget_remaining(merchant_id=self.merchant.pk).as_dict()).data)
