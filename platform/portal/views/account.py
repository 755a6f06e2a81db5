"""Signing in and out, and choosing the current merchant."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from portal.access import merchant_switch
from portal.forms import MerchantSwitchForm


class SignInView(auth_views.LoginView):
    template_name = "portal/login.html"
    redirect_authenticated_user = True


class SignOutView(auth_views.LogoutView):
    pass


@require_POST
@login_required
def switch_merchant(request: HttpRequest) -> HttpResponse:
    form = MerchantSwitchForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a merchant from the list.")
        return redirect("portal:dashboard")
    merchant = merchant_switch(request, merchant_id=form.cleaned_data["merchant"])
    messages.success(request, f"You are now working on {merchant.name}.")
    return redirect(_same_page_if_not_an_object(form.cleaned_data.get("next") or "", request))


def _same_page_if_not_an_object(target: str, request: HttpRequest) -> str:
    """Stay on a list page after switching; an object page of the previous merchant would 404, so go home."""
    if not target or not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return "portal:dashboard"
    try:
        match = resolve(urlsplit(target).path)
    except Resolver404:
        return "portal:dashboard"
    if match.kwargs or match.namespace != "portal":
        return "portal:dashboard"
    return target
