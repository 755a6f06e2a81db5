"""Merchants (tenants), their members, and API keys."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name

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
