"""Base classes every merchant-facing API view builds on.

Scoping fails closed: a view that forgets to define its merchant scope raises
instead of returning everything, and an object outside the caller's merchant
is the same 404 as a missing one.
"""

from __future__ import annotations

from typing import TypeVar

from django.db.models import Model, QuerySet
from django.http import Http404
from rest_framework import serializers, viewsets
from rest_framework.views import APIView

from .auth import ApiPrincipal
from .models import Merchant
from .permissions import IsMerchantKey, IsOperatorKey

_M = TypeVar("_M", bound=Model)


class ScopeMissing(RuntimeError):
    """A merchant-scoped view was used without a merchant in context (a programming error)."""


def request_merchant(request) -> Merchant:
    user = getattr(request, "user", None)
    if not isinstance(user, ApiPrincipal) or user.merchant is None:
        raise ScopeMissing("no merchant in the request context")
    return user.merchant


def get_scoped_or_404(queryset: QuerySet[_M], **lookup) -> _M:
    """Fetch one object from an already merchant-scoped queryset; missing and foreign are both 404."""
    try:
        return queryset.get(**lookup)
    except (queryset.model.DoesNotExist, ValueError, TypeError):
        raise Http404 from None


class MerchantScopedMixin:
    # Gives `self.merchant` and requires `scoped_queryset(merchant)`. A comment, not a docstring: the schema
    # generator reads an operation's description from the view's docstring, inherited ones included, and this
    # text is for the project's engineers, not the API's readers.

    permission_classes = [IsMerchantKey]

    @property
    def merchant(self) -> Merchant:
        return request_merchant(self.request)

    def scoped_queryset(self, merchant: Merchant) -> QuerySet:
        raise ScopeMissing(f"{type(self).__name__} must define scoped_queryset(merchant)")

    def get_queryset(self) -> QuerySet:
        return self.scoped_queryset(self.merchant)


class MerchantScopedViewSet(MerchantScopedMixin, viewsets.GenericViewSet):
    pass


class MerchantAPIView(MerchantScopedMixin, APIView):
    pass


class OperatorAPIView(APIView):
    permission_classes = [IsOperatorKey]


# Database ids are signed 64-bit integers: a larger number is refused as input (SQLite overflows on it).
MAX_ID = 2**63 - 1


def id_from_text(raw: object) -> int | None:
    """An object id typed into a form or a query string, or None: ASCII digits only (str.isdigit also admits "²",
    which int() refuses), from 1 to MAX_ID."""
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ID else None


class IdField(serializers.IntegerField):
    """An object id in a request body: a whole number from 1 to 2^63 - 1."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)
