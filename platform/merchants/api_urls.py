"""The calling merchant's own settings under /api/v1/ (merchant keys)."""

from django.urls import path

from . import api

urlpatterns = [
    path("merchant/settings", api.MerchantSettingsApi.as_view(), name="merchant-settings"),
]
