"""Merchants (tenants), their members, and API keys."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from .quiet_hours import QuietHours, quiet_window_problems


def default_time_zone() -> str:
    return settings.MERCHANT_DEFAULT_TIME_ZONE


def default_currency() -> str:
    return settings.MERCHANT_DEFAULT_CURRENCY


def validate_time_zone(value: str) -> None:
    """An IANA time zone name such as 'Asia/Singapore'."""
    try:
        if not value or value != value.strip():
            raise ValueError(value)
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError) as exc:
        raise ValidationError(
            f"{value!r} is not a time zone; use an IANA name such as 'Asia/Singapore' or 'Europe/Paris'."
        ) from exc


def validate_currency(value: str) -> None:
    """An ISO 4217 alphabetic code: three capital letters such as 'SGD'."""
    if not re.fullmatch(r"[A-Z]{3}", value or ""):
        raise ValidationError(f"{value!r} is not a currency; use an ISO 4217 code such as 'SGD' or 'EUR'.")


class Merchant(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    time_zone = models.CharField(
        max_length=64,
        default=default_time_zone,
        validators=[validate_time_zone],
        help_text="IANA time zone: the portal shows and accepts this merchant's local times.",
    )
    currency = models.CharField(
        max_length=3,
        default=default_currency,
        validators=[validate_currency],
        help_text="ISO 4217 code: reports show money in it.",
    )
    # The merchant's own quiet hours, in its time zone: journey messages falling in them wait until they end
    # (merchants.quiet_hours; added to the platform's and a journey's own, never replacing them).
    quiet_start = models.TimeField(
        null=True, blank=True, help_text="Local time (the merchant's time zone) when messages stop, e.g. 21:00."
    )
    quiet_end = models.TimeField(
        null=True, blank=True, help_text="Local time when messages may go again, e.g. 08:00 (may be the next day)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(quiet_start__isnull=True) & Q(quiet_end__isnull=True))
                | (Q(quiet_start__isnull=False) & Q(quiet_end__isnull=False) & ~Q(quiet_start=F("quiet_end"))),
                name="merchant_quiet_hours_both_or_neither",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        problem = quiet_window_problems(start=self.quiet_start, end=self.quiet_end)
        if problem:
            raise ValidationError({"quiet_end" if self.quiet_start is not None else "quiet_start": problem})

    @property
    def quiet_hours(self) -> QuietHours | None:
        """The merchant's quiet window in its own time zone, or None."""
        if self.quiet_start is None or self.quiet_end is None:
            return None
        return QuietHours(self.quiet_start, self.quiet_end, self.zone)

    @property
    def zone(self) -> ZoneInfo:
        """The merchant's time zone (UTC if the stored name is somehow unknown)."""
        try:
            return ZoneInfo(self.time_zone)
        except (ValueError, ZoneInfoNotFoundError):
            return ZoneInfo("UTC")


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    MARKETER = "marketer", "Marketer"
    ANALYST = "analyst", "Analyst"


class Membership(models.Model):
    """A Django user's role in one merchant. A user may belong to several merchants."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANALYST)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "merchant"], name="membership_unique_user_merchant")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.merchant} ({self.role})"


class ApiKeyKind(models.TextChoices):
    MERCHANT = "merchant", "Merchant"
    OPERATOR = "operator", "Operator"


class ApiKey(models.Model):
    """A bearer key. Only its SHA-256 digest is stored; the key is shown once, at creation.

    The prefix (the first characters, not secret) lets people tell keys apart.
    """

    kind = models.CharField(max_length=16, choices=ApiKeyKind.choices)
    merchant = models.ForeignKey(Merchant, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True)
    key_digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="merchant") & Q(merchant__isnull=False))
                | (Q(kind="operator") & Q(merchant__isnull=True)),
                name="apikey_merchant_keys_have_a_merchant",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
