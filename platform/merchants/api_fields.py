"""Serializer fields and error messages that never repeat the value they were sent.

Operator endpoints receive raw consumer identifiers; a mistake in any field (an e-mail address sent as a
consent's `kind`) must not come back in the error, where it would be logged by the caller. DRF's choice
fields quote the input ('"x" is not a valid choice.'); `errors_without_input()` replaces those messages for
the whole API with ones that say what is allowed instead. Also the fields and the error body several apps' APIs
share.
"""

from __future__ import annotations

import re

from drf_spectacular.utils import extend_schema_field
from rest_framework import fields, serializers

MAX_LISTED_CHOICES = 20


def errors_without_input() -> None:
    """Replace DRF's messages that quote the submitted value (run once, from MerchantsConfig.ready)."""
    fields.ChoiceField.default_error_messages["invalid_choice"] = "Not one of the allowed values."
    fields.MultipleChoiceField.default_error_messages["invalid_choice"] = "Not one of the allowed values."
    fields.FilePathField.default_error_messages["invalid_choice"] = "Not one of the allowed paths."


class ChoiceField(serializers.ChoiceField):
    """A choice field whose error lists what is allowed, never what was sent."""

    def to_internal_value(self, data):
        if data == "" and self.allow_blank:
            return ""
        try:
            return self.choice_strings_to_values[str(data)]
        except (KeyError, TypeError, ValueError):
            allowed = list(self.choice_strings_to_values)
            listed = ", ".join(allowed[:MAX_LISTED_CHOICES]) + (", …" if len(allowed) > MAX_LISTED_CHOICES else "")
            raise serializers.ValidationError(f"Must be one of: {listed}.", code="invalid_choice") from None


# The schema's pattern for a wall-clock time, and the server's: one expression, so what the reference promises is
# what the API accepts.
LOCAL_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"


@extend_schema_field(
    {
        "type": "string",
        "pattern": LOCAL_TIME_PATTERN,
        "example": "21:00:00",
        "nullable": True,
        "description": "A local time of day, HH:MM or HH:MM:SS, without an offset.",
    }
)
class LocalTimeField(serializers.TimeField):
    """A wall-clock time without an offset (quiet hours): OpenAPI's "time" format would require one.

    Only HH:MM or HH:MM:SS: the ISO parser underneath also takes "21:00+08:00" and "2100", and would drop the
    offset without a word, so a window sent in another zone would be stored as the merchant's local time."""

    default_error_messages = {"invalid": "Write a time of day as HH:MM or HH:MM:SS, such as 21:00, without an offset."}

    def to_internal_value(self, value):
        if not isinstance(value, str) or not re.fullmatch(LOCAL_TIME_PATTERN, value):
            self.fail("invalid")
        return super().to_internal_value(value)


class ApiErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.JSONField(required=False)


# Every error the API answers (merchants.api_errors); a comment, as a docstring would become schema text.
class ApiErrorSerializer(serializers.Serializer):
    error = ApiErrorBodySerializer()
