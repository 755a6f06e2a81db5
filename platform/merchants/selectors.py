"""Reads for merchants, memberships and API keys."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet
from django.http import Http404

from .models import ApiKey, Membership, Merchant


def merchants_for_user(*, user: User | AnonymousUser) -> QuerySet[Merchant]:
    if not user.is_authenticated:
        return Merchant.objects.none()
    return Merchant.objects.filter(memberships__user=user).order_by("name")


def membership_get(*, user: User, merchant_id: int) -> Membership:
    """The user's membership in a merchant; a merchant they do not belong to is a 404, like a missing one."""
    try:
        return Membership.objects.select_related("merchant").get(user=user, merchant_id=merchant_id)
    except Membership.DoesNotExist:
        raise Http404("No such merchant.") from None


def api_keys_for_merchant(*, merchant: Merchant) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(merchant=merchant).select_related("created_by").order_by("-created_at")
