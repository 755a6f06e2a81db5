"""The calling merchant's own settings under /api/v1/ (merchant keys): read them, and set the quiet hours.

Thin: the write is `merchants.services.merchant_quiet_hours_set`, the one the portal's Settings page calls, so both
doors refuse the same windows with the same words.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from .api_base import MerchantAPIView
from .api_fields import ApiErrorSerializer, LocalTimeField
from .models import Merchant
from .services import merchant_quiet_hours_set

# What PATCH may change. The time zone and the currency are the operator's (recurring campaigns are scheduled in
# that zone), as on the portal's page: sending them is refused rather than quietly ignored.
WRITABLE = ("quiet_start", "quiet_end")
READ_ONLY = ("time_zone", "currency")


class MerchantSettingsOutput(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    time_zone = serializers.CharField(
        help_text="IANA time zone; quiet hours are local times in it. The operator sets it."
    )
    currency = serializers.CharField(help_text="ISO 4217 code reports show money in. Set by the operator.")
    quiet_start = LocalTimeField(
        allow_null=True, help_text="When journey messages stop, in your time zone; null with quiet_end: none."
    )
    quiet_end = LocalTimeField(
        allow_null=True, help_text="When they may go again; earlier than quiet_start means the next morning."
    )


class MerchantSettingsInput(serializers.Serializer):
    quiet_start = LocalTimeField(
        required=False, allow_null=True, help_text="Local time (your time zone) when journey messages stop."
    )
    quiet_end = LocalTimeField(
        required=False, allow_null=True, help_text="Local time when they may go again (the next day if earlier)."
    )

    def validate(self, attrs):
        sent = self.initial_data if isinstance(self.initial_data, dict) else {}
        problems: dict[str, list[str]] = {
            name: ["Set by the platform's operator; it cannot be changed here."] for name in READ_ONLY if name in sent
        }
        if any(name not in WRITABLE and name not in READ_ONLY for name in sent):
            # Named without repeating what was sent (no error echoes its input): a misspelt key must not be a
            # silent no-op that answers 200.
            problems["non_field_errors"] = ["Unknown field: the settings you can change are quiet_start and quiet_end."]
        if problems:
            raise serializers.ValidationError(problems)
        return attrs


def _settings(merchant: Merchant) -> dict:
    return MerchantSettingsOutput(merchant).data


_OUTPUT_EXAMPLE = OpenApiExample(
    "Quiet from 21:00 to 08:00",
    value={
        "slug": "acme",
        "name": "Acme",
        "time_zone": "Asia/Singapore",
        "currency": "SGD",
        "quiet_start": "21:00:00",
        "quiet_end": "08:00:00",
    },
    response_only=True,
)


class MerchantSettingsApi(MerchantAPIView):
    """Your store's settings. Quiet hours are a daily window in your time zone when journey messages wait (they are
    deferred to the window's end, never dropped); they add to the platform's quiet hours and to a journey's own."""

    def scoped_queryset(self, merchant):
        return Merchant.objects.filter(pk=merchant.pk)

    @extend_schema(
        operation_id="merchant_settings_retrieve",
        summary="Your settings: time zone, currency, quiet hours",
        responses=MerchantSettingsOutput,
        examples=[_OUTPUT_EXAMPLE],
    )
    def get(self, request):
        return Response(_settings(self.get_queryset().get()))

    @extend_schema(
        operation_id="merchant_settings_partial_update",
        summary="Set or clear your quiet hours",
        description=(
            "Send `quiet_start` and `quiet_end` (HH:MM or HH:MM:SS, local times in your time zone) to set the "
            "window, both null to remove it. A field left out keeps its stored value, so sending one alone moves "
            "that end of an existing window. The result must be both times or neither, and not the same time "
            "(an empty window): otherwise a 400 whose `details.field` names the field, and nothing is written. "
            "`time_zone` and `currency` are set by the platform's operator; sending them is a 400. The same rule "
            "as the portal's Settings page."
        ),
        request=MerchantSettingsInput,
        responses={
            200: MerchantSettingsOutput,
            400: OpenApiResponse(
                ApiErrorSerializer,
                description="A time that is not HH:MM or HH:MM:SS (`invalid`, the field in `details`); one time "
                "without the other, or the same time twice (`invalid`, `details.field`); a read-only or unknown field.",
            ),
        },
        examples=[
            OpenApiExample("Quiet from 21:00 to 08:00", value={"quiet_start": "21:00", "quiet_end": "08:00"}),
            OpenApiExample("No quiet hours of your own", value={"quiet_start": None, "quiet_end": None}),
            OpenApiExample("Move the end only", value={"quiet_end": "07:30"}),
            _OUTPUT_EXAMPLE,
        ],
    )
    def patch(self, request):
        data = MerchantSettingsInput(data=request.data)
        data.is_valid(raise_exception=True)
        merchant = self.get_queryset().get()
        changes = data.validated_data
        merchant_quiet_hours_set(
            merchant=merchant,
            quiet_start=changes.get("quiet_start", merchant.quiet_start),
            quiet_end=changes.get("quiet_end", merchant.quiet_end),
        )
        return Response(_settings(merchant))
