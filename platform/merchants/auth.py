"""`Authorization: Bearer <key>` authentication for the REST API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions

from .models import ApiKey, ApiKeyKind, Merchant
from .services import key_digest
from .throttling import throttle_unauthenticated

# Writing last_used_at on every request would turn each read into a write;
# once a minute is precise enough for "last used" in the portal.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class ApiPrincipal:
    """Who is calling: a merchant key (merchant set) or an operator key (merchant None)."""

    api_key_id: int
    kind: str
    merchant: Merchant | None

    is_authenticated = True
    is_anonymous = False

    @property
    def is_operator(self) -> bool:
        return self.kind == ApiKeyKind.OPERATOR

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"apikey:{self.api_key_id}"

    def __str__(self) -> str:
        return self.actor


class BearerKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        # Requests without a valid key are counted per client address here: DRF's own throttle check comes
        # after the 401 or 403 these requests get, so it never sees them (merchants.throttling).
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            throttle_unauthenticated(request)
            return None
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            throttle_unauthenticated(request)
            return None
        raw_key = raw_key.strip()
        if not raw_key or " " in raw_key:
            self.fail(request, "Malformed Authorization header: expected 'Bearer <key>'.")
        try:
            api_key = ApiKey.objects.select_related("merchant").get(key_digest=key_digest(raw_key))
        except ApiKey.DoesNotExist:
            self.fail(request, "Invalid API key.")
        if api_key.revoked_at is not None:
            self.fail(request, "This API key has been revoked.")
        now = timezone.now()
        stale_before = now - LAST_USED_RESOLUTION
        if api_key.last_used_at is None or api_key.last_used_at < stale_before:
            # Checked in Python first, so a key used within the minute costs no write; the UPDATE stays
            # conditional so concurrent requests with the same key write at most once.
            updated = (
                ApiKey.objects.filter(pk=api_key.pk)
                .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_before))
                .update(last_used_at=now)
            )
            if updated:
                api_key.last_used_at = now
        principal = ApiPrincipal(api_key_id=api_key.pk, kind=api_key.kind, merchant=api_key.merchant)
        return principal, api_key

    def fail(self, request, message: str) -> NoReturn:
        throttle_unauthenticated(request)
        raise exceptions.AuthenticationFailed(message)

    def authenticate_header(self, request) -> str:
        return self.keyword
