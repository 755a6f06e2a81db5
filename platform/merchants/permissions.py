"""Who may call what: merchant keys reach merchant endpoints, operator keys operator endpoints."""

from rest_framework.permissions import BasePermission

from .auth import ApiPrincipal


class IsMerchantKey(BasePermission):
    message = "This endpoint needs a merchant API key."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return isinstance(user, ApiPrincipal) and not user.is_operator and user.merchant is not None


class IsOperatorKey(BasePermission):
    message = "This endpoint needs an operator API key."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return isinstance(user, ApiPrincipal) and user.is_operator
