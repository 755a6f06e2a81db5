"""Portal forms. Every field error is rendered next to its field (templates/portal/_field.html)."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.conf import settings
from django.utils import timezone

from campaigns.schedule import MAX_MONTHLY_DAY, REPEAT_CHOICES, WEEKDAYS, recurrence_from_picker


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


class QuietHoursForm(forms.Form):
    """The merchant's quiet hours: local times in the merchant's time zone; both empty for none."""

    quiet_start = forms.TimeField(
        label="Quiet from",
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text="No journey message goes out from this time…",
        error_messages={"invalid": "Write a time of day such as 21:00."},
    )
    quiet_end = forms.TimeField(
        label="Quiet until",
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text="…until this time (the next morning if it is earlier). Messages wait; none is dropped.",
        error_messages={"invalid": "Write a time of day such as 08:00."},
    )


class MerchantSwitchForm(forms.Form):
    merchant = forms.IntegerField(min_value=1, max_value=2**63 - 1)
    next = forms.CharField(required=False, max_length=2000)


REFRESH_CHOICES = [
    ("manual", "Manual: only when I ask"),
    ("hourly", "Every hour"),
    ("daily", "Every day"),
    ("custom", "On a schedule (cron, UTC)"),
    ("realtime", "In real time, as events arrive"),
]

# Whom a segment counts (segments.models.SegmentScope), in the words the portal shows next to every count.
SCOPE_CHOICES = [
    ("marketplace", "In the whole marketplace"),
    ("my_customers", "Among my customers"),
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
    scope = forms.ChoiceField(
        label="Count consumers",
        choices=SCOPE_CHOICES,
        initial="marketplace",
        help_text="Your customers are consumers who viewed, carted, favourited or bought anything at your store.",
    )
    crontab = forms.CharField(
        label="Schedule",
        required=False,
        max_length=100,
        help_text="Five fields: minute hour day-of-month month day-of-week, e.g. <code>0 6 * * 1</code> "
        "(Mondays at 06:00 UTC).",
    )

    def __init__(self, *args, lookalike: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if self.is_bound and "scope" not in self.data:
            # A form posted without the select (a lookalike's, which has none; an older page): the default.
            self.data = self.data.copy()
            self.data["scope"] = "marketplace"
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
        crontab = (data.get("crontab") or "").strip()
        if data.get("refresh_policy") == "custom" and not crontab:
            self.add_error("crontab", "A custom schedule needs its five cron fields.")
        elif crontab and data.get("refresh_policy") not in (None, "custom"):
            # Never keep a schedule the merchant typed and then quietly ignore it: say what to do instead.
            self.add_error(
                "crontab",
                "A schedule is used only with “On a schedule (cron, UTC)”: choose that under “Keep it up to "
                "date”, or clear the schedule.",
            )
        return data


class LookalikeForm(forms.Form):
    METHODS = [("size", "The most similar consumers, up to a number"), ("similarity", "Everyone above a similarity")]

    name = forms.CharField(label="Name of the new segment", max_length=200)
    description = forms.CharField(label="Description", required=False, max_length=2000)
    method = forms.ChoiceField(label="How many", choices=METHODS, initial="size", widget=forms.RadioSelect)
    size = forms.IntegerField(label="Number of consumers", required=False, max_value=100_000_000)
    min_similarity = forms.FloatField(
        label="Minimum similarity", required=False, min_value=0.0, max_value=1.0, help_text="From 0 to 1."
    )

    def clean_size(self):
        size = self.cleaned_data.get("size")
        if size is not None and size < settings.MIN_AUDIENCE:
            raise forms.ValidationError(f"A lookalike holds at least {settings.MIN_AUDIENCE} consumers.")
        return size

    def clean_min_similarity(self):
        similarity = self.cleaned_data.get("min_similarity")
        if similarity is not None and similarity <= 0:
            raise forms.ValidationError("Give a similarity above 0 (and at most 1).")
        return similarity

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


class SegmentMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Segments by name, with their (public) size when the form was given one."""

    sizes: dict[int, str] = {}

    def label_from_instance(self, obj) -> str:
        size = self.sizes.get(obj.pk)
        return f"{obj.name} ({size})" if size else obj.name


SCHEDULE_CHOICES = [
    ("now", "As soon as I launch it"),
    ("at", "At a date and time"),
    ("recurring", "Again and again, on a schedule"),
]
CHANNEL_CHOICES = [("inbox", "In-app inbox"), ("webhook", "Push notification (operator's service)")]


class CampaignForm(forms.Form):
    """The campaign wizard. The campaign services validate everything again and their problems land here too."""

    name = forms.CharField(label="Campaign name", max_length=200)
    include_segments = SegmentMultipleChoiceField(
        label="Send to",
        queryset=None,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one of your segments to send to."},
    )
    exclude_segments = SegmentMultipleChoiceField(
        label="But not to", queryset=None, required=False, widget=forms.CheckboxSelectMultiple
    )
    title_template = forms.CharField(
        label="Title",
        max_length=200,
        help_text="Placeholders: {store_name}, {offer}, {coupon_code}, {discount}, {products}, {product_1_title}, "
        "{product_1_price} and so on. Write {{ or }} for a literal brace.",
    )
    body_template = forms.CharField(label="Message", max_length=2000, widget=forms.Textarea(attrs={"rows": 4}))
    personalised_products = forms.IntegerField(
        label="Recommended products per message",
        min_value=0,
        max_value=10,
        initial=3,
        help_text="Each consumer gets their own, from your catalogue.",
    )
    coupon_code = forms.CharField(
        label="Coupon code", required=False, max_length=40, help_text="Letters, digits, - and _ only."
    )
    discount_percent = forms.DecimalField(
        label="Discount (%)", required=False, min_value=Decimal("0.01"), max_value=Decimal("100"), decimal_places=2
    )
    channel = forms.ChoiceField(label="Deliver through", choices=CHANNEL_CHOICES, initial="inbox")
    schedule_kind = forms.ChoiceField(label="When", choices=SCHEDULE_CHOICES, initial="now", widget=forms.RadioSelect)
    scheduled_at = forms.DateTimeField(
        label="Send at (your local time)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
    )
    repeat_every = forms.ChoiceField(
        label="Repeat", choices=[*REPEAT_CHOICES, ("custom", "Custom schedule")], initial="weekly", required=False
    )
    repeat_time = forms.TimeField(
        label="At (your local time)",
        required=False,
        initial="09:00",
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    repeat_weekday = forms.TypedChoiceField(
        label="On", choices=list(enumerate(WEEKDAYS)), coerce=int, initial=1, required=False
    )
    repeat_day = forms.IntegerField(
        label="On day of the month", min_value=1, max_value=MAX_MONTHLY_DAY, initial=1, required=False
    )
    recurrence = forms.CharField(
        label="Custom schedule (crontab, your local time)",
        required=False,
        max_length=100,
        help_text="Five fields: minute hour day-of-month month day-of-week, e.g. <code>0 9 * * 1</code>: Mondays "
        "at 09:00.",
    )
    frequency_cap = forms.IntegerField(
        label="At most this many messages per consumer",
        required=False,
        min_value=1,
        max_value=1000,
        help_text="Counted across all your campaigns. Leave empty for no cap of your own "
        "(the platform's cap still applies).",
    )
    frequency_window_days = forms.IntegerField(label="…in this many days", min_value=1, max_value=365, initial=7)
    control_share = forms.DecimalField(
        label="Hold out as a control group (%)",
        min_value=Decimal("0"),
        max_value=Decimal("50"),
        decimal_places=1,
        initial=Decimal("10"),
        help_text="These consumers get nothing, so the report can measure the uplift. 10% is typical.",
    )
    attribution_window_days = forms.IntegerField(
        label="Count purchases for this many days", min_value=1, max_value=90, initial=7
    )
    # A/B test: the message above is variant A; a second (and third) message makes it a test.
    variant_a_share = forms.IntegerField(
        label="Share of variant A (%)", min_value=1, max_value=99, initial=50, required=False
    )
    variant_b_title = forms.CharField(label="Variant B headline", max_length=200, required=False)
    variant_b_body = forms.CharField(
        label="Variant B text", max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    variant_b_share = forms.IntegerField(
        label="Share of variant B (%)", min_value=1, max_value=99, initial=50, required=False
    )
    variant_c_title = forms.CharField(label="Variant C headline", max_length=200, required=False)
    variant_c_body = forms.CharField(
        label="Variant C text", max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )
    variant_c_share = forms.IntegerField(label="Share of variant C (%)", min_value=1, max_value=98, required=False)
    auto_winner = forms.BooleanField(
        label="Once a variant clearly wins, later runs send only it (recurring campaigns)",
        required=False,
        help_text="Checked after each run once every variant has enough recipients; the report says when and why.",
    )

    def __init__(self, *args, segments, sizes: dict[int, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        zone = timezone.get_current_timezone_name()
        self.fields["scheduled_at"].label = f"Send at (your local time, {zone})"
        self.fields["repeat_time"].label = f"At (your local time, {zone})"
        for name in ("include_segments", "exclude_segments"):
            self.fields[name].queryset = segments
            self.fields[name].sizes = sizes or {}

    def clean_scheduled_at(self):
        value = self.cleaned_data.get("scheduled_at")
        if value is not None and timezone.is_naive(value):  # read in the merchant's time zone (the portal's)
            value = timezone.make_aware(value, timezone.get_current_timezone())
        return value

    def clean_coupon_code(self) -> str:
        return (self.cleaned_data.get("coupon_code") or "").strip()

    def clean_recurrence(self) -> str:
        return (self.cleaned_data.get("recurrence") or "").strip()

    def clean(self):
        data = super().clean()
        include, exclude = data.get("include_segments") or [], data.get("exclude_segments") or []
        both = {s.pk for s in include} & {s.pk for s in exclude}
        if both:
            self.add_error("exclude_segments", "A segment cannot be both sent to and left out.")
        kind = data.get("schedule_kind")
        if kind == "at" and data.get("scheduled_at") is None and "scheduled_at" not in self.errors:
            self.add_error("scheduled_at", "Say when to send it.")
        every = data.get("repeat_every") or "custom"
        if kind == "recurring" and every != "custom":
            at = data.get("repeat_time")
            if at is None:
                if "repeat_time" not in self.errors:
                    self.add_error("repeat_time", "Say at what time of day to send it.")
            else:
                try:
                    data["recurrence"] = recurrence_from_picker(
                        every=every,
                        at_minutes=at.hour * 60 + at.minute,
                        weekday=data.get("repeat_weekday") if data.get("repeat_weekday") is not None else 1,
                        day_of_month=data.get("repeat_day") or 1,
                    )
                except ValueError as exc:
                    self.add_error("repeat_every", str(exc))
        elif kind == "recurring" and not data.get("recurrence") and "recurrence" not in self.errors:
            self.add_error("recurrence", "Say how often to send it, as five cron fields.")
        self._clean_variants(data)
        return data

    def _clean_variants(self, data) -> None:
        """The message is variant A; a filled-in variant B (and C) makes an A/B test."""
        extra = []
        for letter in ("b", "c"):
            title, body = (data.get(f"variant_{letter}_title") or "").strip(), data.get(f"variant_{letter}_body") or ""
            if not title and not body.strip():
                continue
            if not title:
                self.add_error(f"variant_{letter}_title", f"Give variant {letter.upper()} a title.")
            if not body.strip():
                self.add_error(f"variant_{letter}_body", f"Give variant {letter.upper()} a message.")
            extra.append((letter, title, body, data.get(f"variant_{letter}_share")))
        if not extra:
            data["variants"] = []
            return
        shares = [data.get("variant_a_share")] + [share for *_, share in extra]
        for letter, share in zip("abc", shares, strict=False):
            if share is None and f"variant_{letter}_share" not in self.errors:
                self.add_error(f"variant_{letter}_share", f"Give variant {letter.upper()} a share of the audience.")
        if None not in shares and sum(shares) != 100:
            self.add_error("variant_a_share", f"The variants' shares add up to {sum(shares)}%; make them 100%.")
        data["variants"] = [
            {"title_template": data.get("title_template") or "", "body_template": data.get("body_template") or ""}
        ] + [{"title_template": title, "body_template": body} for _, title, body, _ in extra]
        for variant, share in zip(data["variants"], shares, strict=True):
            variant["share"] = share

    def service_values(self) -> dict:
        """The cleaned form as the campaign services take it."""
        data = self.cleaned_data
        kind = data["schedule_kind"]
        return {
            "name": data["name"].strip(),
            "include_segment_ids": [s.pk for s in data["include_segments"]],
            "exclude_segment_ids": [s.pk for s in data["exclude_segments"]],
            "title_template": data["title_template"],
            "body_template": data["body_template"],
            "personalised_products": data["personalised_products"],
            "coupon_code": data["coupon_code"],
            "discount_percent": data["discount_percent"],
            "channel": data["channel"],
            "schedule_kind": kind,
            "scheduled_at": data["scheduled_at"] if kind == "at" else None,
            "recurrence": data["recurrence"] if kind == "recurring" else "",
            "frequency_cap": data["frequency_cap"],
            "frequency_window_days": data["frequency_window_days"],
            "control_share": (data["control_share"] / 100).quantize(Decimal("0.001")),
            "attribution_window_days": data["attribution_window_days"],
            "variants": data.get("variants") or [],
            "auto_winner": bool(data.get("auto_winner")),
        }

    @classmethod
    def initial_from(cls, campaign) -> dict:
        return {
            "name": campaign.name,
            "include_segments": list(campaign.include_segments.values_list("pk", flat=True)),
            "exclude_segments": list(campaign.exclude_segments.values_list("pk", flat=True)),
            "title_template": campaign.title_template,
            "body_template": campaign.body_template,
            "personalised_products": campaign.personalised_products,
            "coupon_code": campaign.coupon_code,
            "discount_percent": campaign.discount_percent,
            "channel": campaign.channel,
            "schedule_kind": campaign.schedule_kind,
            "scheduled_at": campaign.scheduled_at,
            "recurrence": campaign.recurrence,
            "frequency_cap": campaign.frequency_cap,
            "frequency_window_days": campaign.frequency_window_days,
            "control_share": (campaign.control_share * 100).normalize(),
            "attribution_window_days": campaign.attribution_window_days,
            "auto_winner": campaign.auto_winner,
            **cls._picker_initial(campaign.recurrence),
            **cls._variants_initial(campaign),
        }

    @staticmethod
    def _picker_initial(recurrence: str) -> dict:
        parts = recurrence.split()
        if len(parts) != 5 or not (parts[0].isdigit() and parts[1].isdigit()):
            return {"repeat_every": "custom" if recurrence else "weekly"}
        at = f"{int(parts[1]):02d}:{int(parts[0]):02d}"
        dom, month, dow = parts[2:]
        if (dom, month, dow) == ("*", "*", "*"):
            return {"repeat_every": "daily", "repeat_time": at}
        if dom == "*" and month == "*" and dow.isdigit() and int(dow) <= 6:
            return {"repeat_every": "weekly", "repeat_time": at, "repeat_weekday": int(dow)}
        if dom.isdigit() and 1 <= int(dom) <= MAX_MONTHLY_DAY and month == "*" and dow == "*":
            return {"repeat_every": "monthly", "repeat_time": at, "repeat_day": int(dom)}
        return {"repeat_every": "custom"}

    @staticmethod
    def _variants_initial(campaign) -> dict:
        variants = list(campaign.variants.order_by("position"))
        initial: dict = {}
        if variants:
            initial["variant_a_share"] = variants[0].share
        for letter, variant in zip("bc", variants[1:], strict=False):
            initial[f"variant_{letter}_title"] = variant.title_template
            initial[f"variant_{letter}_body"] = variant.body_template
            initial[f"variant_{letter}_share"] = variant.share
        return initial


# The campaign services name fields as their API does; the form names two of them differently.
CAMPAIGN_FIELD_OF = {
    "include_segment_ids": "include_segments",
    "exclude_segment_ids": "exclude_segments",
    "variants": "variant_a_share",
}
