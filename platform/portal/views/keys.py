"""API keys for the merchant's own tools: created and shown once, listed by prefix and last use, revoked."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from merchants.api_base import get_scoped_or_404
from merchants.models import ApiKeyKind
from merchants.selectors import api_keys_for_merchant
from merchants.services import api_key_issue, api_key_revoke
from portal.access import Capability, merchant_view
from portal.forms import ApiKeyCreateForm
from portal.rendering import page


@merchant_view()
def api_keys(request: HttpRequest) -> HttpResponse:
    portal = request.portal
    issued = None
    status = 200
    if request.method == "POST":
        portal.require(Capability.MANAGE_KEYS)
        form = ApiKeyCreateForm(request.POST)
        if form.is_valid():
            issued = api_key_issue(
                kind=ApiKeyKind.MERCHANT,
                name=form.cleaned_data["name"],
                merchant=portal.merchant,
                created_by=request.user,
            )
            form = ApiKeyCreateForm()
        else:
            status = 400
    else:
        form = ApiKeyCreateForm()
    return page(
        request,
        "portal/api_keys.html",
        {"form": form, "issued": issued, "keys": api_keys_for_merchant(merchant=portal.merchant)},
        section="keys",
        status=status,
    )


@require_POST
@merchant_view(Capability.MANAGE_KEYS)
def api_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    api_key = get_scoped_or_404(api_keys_for_merchant(merchant=request.portal.merchant), pk=key_id)
    if api_key.revoked_at is not None:
        messages.info(request, f"“{api_key.name}” was already revoked.")
    else:
        api_key_revoke(api_key=api_key)
        messages.success(request, f"“{api_key.name}” ({api_key.prefix}…) is revoked; calls with it now fail.")
    return redirect("portal:api_keys")
