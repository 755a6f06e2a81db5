"""Serializer fields and error messages that never repeat the value they were sent.

Operator endpoints receive raw consumer identifiers; a mistake in any field (an e-mail address sent as a
consent's `kind`) must not come back in the error, where it would be logged by the caller. DRF's choice
fields quote the input ('"x" is not a valid choice.'); `errors_without_input()` replaces those messages for
the whole API with ones that say what is allowed instead.
"""

from __future__ import annotations

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
