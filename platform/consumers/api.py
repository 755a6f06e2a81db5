"""Operator ingestion endpoints: events, profiles and consents, as a JSON array or NDJSON.

Rows are validated by the ingestion services, not by DRF serializers (one
serializer per row would cost more than the whole write); the serializers here
document the row shapes in the OpenAPI schema. Responses: 200 with the report
when every row was accepted; 422 with each rejected row's number, field and
reason otherwise (the report says how many rows were written); `?atomic=true`
writes nothing when any row is bad.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.response import Response

from merchants.api_base import OperatorAPIView
from merchants.api_errors import ApiError, error_response
from merchants.api_fields import ApiErrorSerializer
from privacy.models import ConsentKind, ConsentStatus, Purpose

from .consents import consents_ingest
from .events import events_ingest
from .ingestion import IngestReport
from .profiles import profiles_ingest


def max_rows() -> int:
    return settings.INGEST_MAX_ROWS_PER_REQUEST


def max_body_bytes() -> int:
    return settings.INGEST_MAX_BODY_BYTES


class PayloadTooLarge(ApiError):
    def __init__(self, message: str):
        super().__init__(message, code="too_large", status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)


def _too_many_rows() -> PayloadTooLarge:
    return PayloadTooLarge(f"At most {max_rows():,} rows per request; split the batch.")


def _read_text(stream) -> str:
    """The body as text, refusing more than the byte limit before reading it all into memory."""
    limit = max_body_bytes()
    data = stream.read(limit + 1) if stream is not None else b""
    if len(data) > limit:
        raise PayloadTooLarge(f"The body is larger than {limit:,} bytes; split the batch.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"The body is not UTF-8 text (byte {exc.start}).") from None


def _loads(text: str, line: int | None = None):
    """json.loads with an error that says where (line, column), never what."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {line if line is not None else exc.lineno}, column {exc.colno}"
        raise ParseError(f"Malformed JSON on {where}: {exc.msg}.") from None
    except RecursionError:
        where = f" on line {line}" if line is not None else ""
        raise ParseError(f"Malformed JSON{where}: nested too deeply.") from None
    except ValueError:  # e.g. an integer with more digits than Python converts
        where = f" on line {line}" if line is not None else ""
        raise ParseError(f"Malformed JSON{where}: a number is out of range.") from None


class JSONRowsParser(BaseParser):
    """`application/json`: one JSON array of row objects."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        text = _read_text(stream)
        if not text.strip():
            raise ParseError("The body is empty: send a JSON array of rows.")
        rows = _loads(text)
        if not isinstance(rows, list):
            raise ParseError(
                "Expected a JSON array of rows (or NDJSON, one row per line, with Content-Type application/x-ndjson)."
            )
        if len(rows) > max_rows():
            raise _too_many_rows()
        return rows


class NDJSONRowsParser(BaseParser):
    """`application/x-ndjson`: one JSON object per line; blank lines are skipped."""

    media_type = "application/x-ndjson"

    def parse(self, stream, media_type=None, parser_context=None):
        text = _read_text(stream)
        rows = []
        limit = max_rows()
        # Split on newlines only: str.splitlines() would also split inside strings at U+2028 and friends.
        for number, line in enumerate(text.split("\n"), start=1):
            line = line.strip()
            if not line:
                continue
            if len(rows) >= limit:
                raise _too_many_rows()
            rows.append(_loads(line, number))
        return rows


def _rows_from(request) -> list:
    rows = request.data
    if not isinstance(rows, list):  # an empty body reaches the view as {}
        raise ParseError("The body is empty: send a JSON array of rows.")
    return rows


def _atomic_flag(request) -> bool:
    value = request.query_params.get("atomic", "false").strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no", ""):
        return False
    raise ApiError("The atomic parameter must be true or false.", code="invalid_parameter")


def _report_response(report: IngestReport, noun: str) -> Response:
    body = report.as_dict()
    if report.ok:
        return Response(body, status=status.HTTP_200_OK)
    if report.rolled_back:
        message = (
            f"{report.rejected_rows} of {report.received} {noun} were rejected; nothing was written "
            "(atomic request). Fix the rows named in details.errors and send the batch again."
        )
    else:
        message = (
            f"{report.rejected_rows} of {report.received} {noun} were rejected and not written; "
            f"{report.accepted} were written and {report.duplicates} were already present. "
            "Rows named in details.errors can be fixed and sent again; re-sending written rows is harmless."
        )
    return error_response(status.HTTP_422_UNPROCESSABLE_ENTITY, "rows_rejected", message, body)


# ---------------------------------------------------------------- schema documentation


class RowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="1-based position of the row in the request")
    field = serializers.CharField(help_text="the field at fault; empty when the row itself is not an object")
    reason = serializers.CharField(help_text="what is wrong; never repeats the value")


class IngestReportSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    valid = serializers.IntegerField(help_text="rows that passed validation")
    accepted = serializers.IntegerField(help_text="rows written by this request")
    duplicates = serializers.IntegerField(help_text="valid rows already stored, or repeated in the request")
    rejected_rows = serializers.IntegerField()
    consumers_created = serializers.IntegerField()
    products_created = serializers.IntegerField()
    atomic = serializers.BooleanField()
    rolled_back = serializers.BooleanField(help_text="true when an atomic request had bad rows and wrote nothing")
    errors = RowErrorSerializer(many=True)


class EventRowSerializer(serializers.Serializer):
    event_id = serializers.CharField(help_text="the source's event id; stored only as a keyed digest")
    consumer_id = serializers.CharField(
        help_text="user id, e-mail address or phone number; pseudonymised on arrival, never stored"
    )
    merchant = serializers.SlugField(help_text="merchant slug")
    sku = serializers.CharField(max_length=64)
    event_type = serializers.ChoiceField(choices=["view", "click", "cart", "favourite", "purchase", "cancel"])
    occurred_at = serializers.DateTimeField(help_text="ISO 8601; no offset means UTC")
    quantity = serializers.IntegerField(required=False, default=1, min_value=1)
    price = serializers.DecimalField(max_digits=12, decimal_places=2, required=False, help_text="unit price paid")
    discount = serializers.DecimalField(
        max_digits=12, decimal_places=2, required=False, help_text="amount taken off the unit price"
    )
    title = serializers.CharField(required=False, max_length=300, help_text="product title (updates the catalogue)")
    category_path = serializers.CharField(required=False, max_length=300, help_text="e.g. beauty/skincare/serums")
    brand = serializers.CharField(required=False, max_length=100)
    order_id = serializers.CharField(required=False, help_text="stored only as a keyed digest")
    device_id = serializers.CharField(required=False, help_text="stored only as a keyed digest")


class ProfileRowSerializer(serializers.Serializer):
    consumer_id = serializers.CharField(help_text="pseudonymised on arrival, never stored")
    age = serializers.IntegerField(required=False, help_text="stored only as an age range")
    birth_date = serializers.DateField(required=False, help_text="stored only as an age range; wins over age")
    country = serializers.CharField(required=False, help_text="ISO code (SG, SGP) or English name (United Kingdom)")
    address = serializers.CharField(required=False, help_text="used only to find the country; never stored")
    gender = serializers.ChoiceField(required=False, choices=["f", "m", "x"])


class ConsentRowSerializer(serializers.Serializer):
    consumer_id = serializers.CharField(help_text="pseudonymised on arrival, never stored")
    purpose = serializers.ChoiceField(choices=Purpose.values)
    status = serializers.ChoiceField(choices=ConsentStatus.values)
    kind = serializers.ChoiceField(choices=ConsentKind.values, required=False, default=ConsentKind.EXPRESS)
    source = serializers.CharField(max_length=100, help_text="where it was captured, e.g. app:settings:v3")
    occurred_at = serializers.DateTimeField()


_ATOMIC = OpenApiParameter(
    "atomic",
    OpenApiTypes.BOOL,
    OpenApiParameter.QUERY,
    description="true: write nothing unless every row is valid. Default false: write the valid rows.",
)


def _schema(*, summary: str, description: str, row: type[serializers.Serializer], example: dict) -> Callable:
    return extend_schema(
        summary=summary,
        description=description
        + f" Send a JSON array (`application/json`) or NDJSON (`application/x-ndjson`), at most "
        f"{settings.INGEST_MAX_ROWS_PER_REQUEST:,} rows (INGEST_MAX_ROWS_PER_REQUEST). Operator API keys only.",
        parameters=[_ATOMIC],
        request={"application/json": row(many=True), "application/x-ndjson": row},
        responses={
            200: IngestReportSerializer,
            400: OpenApiResponse(ApiErrorSerializer, description="malformed JSON (the error names line and column)"),
            401: OpenApiResponse(ApiErrorSerializer, description="missing, invalid or revoked API key"),
            403: OpenApiResponse(ApiErrorSerializer, description="not an operator key"),
            413: OpenApiResponse(ApiErrorSerializer, description="too many rows or too large a body"),
            422: OpenApiResponse(
                ApiErrorSerializer,
                description="some rows were rejected: details holds the report, with each rejected row's "
                "number, field and reason",
            ),
        },
        examples=[OpenApiExample("one row", value=[example], request_only=True)],
        tags=["ingestion"],
    )


class EventsIngestAPI(OperatorAPIView):
    parser_classes = [JSONRowsParser, NDJSONRowsParser]

    @_schema(
        summary="Ingest behaviour events",
        description="Views, clicks, carts, favourites, purchases and cancellations. Idempotent by event_id: "
        "re-sending a batch creates no duplicates.",
        row=EventRowSerializer,
        example={
            "event_id": "evt-000123",
            "consumer_id": "someone@example.com",
            "merchant": "acme",
            "sku": "TENT-2P",
            "event_type": "purchase",
            "occurred_at": "2024-05-01T12:30:00Z",
            "quantity": 1,
            "price": "129.00",
            "discount": "20.00",
            "title": "Two-person tent",
            "category_path": "outdoor/camping/tents",
            "brand": "Trailhead",
        },
    )
    def post(self, request):
        report = events_ingest(rows=_rows_from(request), actor=request.user.actor, atomic=_atomic_flag(request))
        return _report_response(report, "events")


class ProfilesIngestAPI(OperatorAPIView):
    parser_classes = [JSONRowsParser, NDJSONRowsParser]

    @_schema(
        summary="Ingest consumer profiles",
        description="Age (or birth date) becomes an age range, country (or address) an ISO 3166 alpha-2 code; "
        "the raw values are never stored. Attributes a row leaves out keep their stored value.",
        row=ProfileRowSerializer,
        example={"consumer_id": "+65 9123 4567", "age": 31, "country": "Singapore", "gender": "f"},
    )
    def post(self, request):
        report = profiles_ingest(rows=_rows_from(request), actor=request.user.actor, atomic=_atomic_flag(request))
        return _report_response(report, "profiles")


class ConsentsIngestAPI(OperatorAPIView):
    parser_classes = [JSONRowsParser, NDJSONRowsParser]

    @_schema(
        summary="Record consent decisions",
        description="Appends to the consent ledger; the current state per consumer and purpose follows the "
        "latest decision by occurred_at. Direct marketing uses express opt-ins only.",
        row=ConsentRowSerializer,
        example={
            "consumer_id": "someone@example.com",
            "purpose": "direct_marketing",
            "status": "granted",
            "kind": "express",
            "source": "app:settings:v3",
            "occurred_at": "2024-05-01T12:30:00Z",
        },
    )
    def post(self, request):
        report = consents_ingest(rows=_rows_from(request), actor=request.user.actor, atomic=_atomic_flag(request))
        return _report_response(report, "consents")
