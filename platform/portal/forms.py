"""Portal forms. Every field error is rendered next to its field (templates/portal/_field.html)."""

from __future__ import annotations

from django import forms


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        label="Key name",
        max_length=100,
        help_text="What the key is for, e.g. “Email tool sync”. Only you see it.",
        error_messages={"required": "Give the key a name so you can tell it apart later."},
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the key a name so you can tell it apart later.")
        return name


class MerchantSwitchForm(forms.Form):
    merchant = forms.IntegerField(min_value=1, max_value=2**63 - 1)
    next = forms.CharField(required=False, max_length=2000)
