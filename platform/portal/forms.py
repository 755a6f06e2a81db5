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


REFRESH_CHOICES = [
    ("manual", "Manual: only when I ask"),
    ("hourly", "Every hour"),
    ("daily", "Every day"),
    ("custom", "On a schedule (cron, UTC)"),
]


class SegmentForm(forms.Form):
    """What a merchant types; the segment services check the expression and the schedule."""

    name = forms.CharField(
        label="Name",
        max_length=200,
        error_messages={"required": "Give the segment a name.", "max_length": "Keep the name under 200 characters."},
    )
    description = forms.CharField(
        label="Description", required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )
    expression = forms.CharField(
        label="Who is in it",
        max_length=10_000,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off", "class": "expr"}),
        help_text="Combine tags with AND, OR, NOT and parentheses, e.g. "
        "<code>country:SG AND (interest:sports OR interest:outdoor)</code>. Type to get suggestions; "
        "arrow keys and Enter pick one.",
        error_messages={"required": "Say who is in the segment: type an expression or add a rule below."},
    )
    refresh_policy = forms.ChoiceField(label="Keep it up to date", choices=REFRESH_CHOICES, initial="manual")
    crontab = forms.CharField(
        label="Schedule",
        required=False,
        max_length=100,
        help_text="Five fields: minute hour day-of-month month day-of-week, e.g. <code>0 6 * * 1</code> "
        "(Mondays at 06:00 UTC).",
    )

    def __init__(self, *args, lookalike: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if lookalike:
            # A lookalike is defined by its seed; only its name, description and refresh policy change.
            self.fields["expression"].required = False
            self.fields["expression"].disabled = True

    def clean_expression(self) -> str:
        expression = self.cleaned_data.get("expression") or ""
        if self.fields["expression"].required and not expression.strip():
            raise forms.ValidationError("Say who is in the segment: type an expression or add a rule below.")
        return expression

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the segment a name.")
        return name

    def clean(self):
        data = super().clean()
        if data.get("refresh_policy") == "custom" and not (data.get("crontab") or "").strip():
            self.add_error("crontab", "A custom schedule needs its five cron fields.")
        return data


class LookalikeForm(forms.Form):
    METHODS = [("size", "The most similar consumers, up to a number"), ("similarity", "Everyone above a similarity")]

    name = forms.CharField(label="Name of the new segment", max_length=200)
    description = forms.CharField(label="Description", required=False, max_length=2000)
    method = forms.ChoiceField(label="How many", choices=METHODS, initial="size", widget=forms.RadioSelect)
    size = forms.IntegerField(label="Number of consumers", required=False, min_value=1, max_value=100_000_000)
    min_similarity = forms.FloatField(
        label="Minimum similarity", required=False, min_value=0.0, max_value=1.0, help_text="From 0 to 1."
    )

    def clean(self):
        data = super().clean()
        method = data.get("method")
        if method == "size" and data.get("size") is None and "size" not in self.errors:
            self.add_error("size", "Say how many consumers the lookalike should hold.")
        if method == "similarity" and data.get("min_similarity") is None and "min_similarity" not in self.errors:
            self.add_error("min_similarity", "Give a similarity between 0 and 1.")
        return data


class SegmentChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return obj.name


class OverlapForm(forms.Form):
    other = SegmentChoiceField(label="Compare with", queryset=None, empty_label="Choose a segment")

    def __init__(self, *args, segments, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["other"].queryset = segments
