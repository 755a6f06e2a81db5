"""Write operations for merchants, memberships and API keys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import time

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from .errors import Invalid
from .models import ApiKey, ApiKeyKind, Membership, Merchant, Role
from .quiet_hours import quiet_window_problems

KEY_PREFIX_LEN = 12


def key_digest(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw_key: str  # shown to the caller once; never stored


def merchant_create(*, slug: str, name: str) -> Merchant:
    merchant = Merchant(slug=slug, name=name)
    merchant.full_clean()
    merchant.save()
    return merchant


def merchant_quiet_hours_set(*, merchant: Merchant, quiet_start: time | None, quiet_end: time | None) -> Merchant:
    """Set (or, with both None, clear) the merchant's quiet hours, local times in the merchant's time zone."""
    problem = quiet_window_problems(start=quiet_start, end=quiet_end)
    if problem:
        raise Invalid(problem, details={"field": "quiet_end" if quiet_start is not None else "quiet_start"})
    Merchant.objects.filter(pk=merchant.pk).update(quiet_start=quiet_start, quiet_end=quiet_end)
    merchant.quiet_start, merchant.quiet_end = quiet_start, quiet_end
    return merchant


def membership_grant(*, user: User, merchant: Merchant, role: str = Role.ANALYST) -> Membership:
    membership, _ = Membership.objects.update_or_create(user=user, merchant=merchant, defaults={"role": role})
    return membership


def api_key_issue(
    *, kind: str, name: str, merchant: Merchant | None = None, created_by: User | None = None
) -> IssuedKey:
    if kind == ApiKeyKind.MERCHANT and merchant is None:
        raise ValueError("a merchant key needs a merchant")
    if kind == ApiKeyKind.OPERATOR and merchant is not None:
        raise ValueError("an operator key belongs to no merchant")
    label = "dmp_m_" if kind == ApiKeyKind.MERCHANT else "dmp_o_"
    raw_key = label + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        kind=kind,
        merchant=merchant,
        name=name,
        prefix=raw_key[:KEY_PREFIX_LEN],
        key_digest=key_digest(raw_key),
        created_by=created_by,
    )
    return IssuedKey(api_key=api_key, raw_key=raw_key)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    with transaction.atomic():
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db()
    return api_key
