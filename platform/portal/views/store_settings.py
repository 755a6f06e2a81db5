"""The store's settings: its quiet hours (editable by owners and marketers), its time zone and currency (shown; the
operator sets them in the admin, because recurring campaign schedules are stored in that zone)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from merchants.errors import Invalid
from merchants.services import merchant_quiet_hours_set
from portal.access import Capability, merchant_view
from portal.forms import QuietHoursForm
from portal.rendering import page


@merchant_view()
def merchant_settings(request: HttpRequest) -> HttpResponse:
    portal = request.portal
    merchant = portal.merchant
    status = 200
    if request.method == "POST":
        portal.require(Capability.MANAGE_SETTINGS)
        form = QuietHoursForm(request.POST)
        if form.is_valid():
            try:
                merchant_quiet_hours_set(
                    merchant=merchant,
                    quiet_start=form.cleaned_data["quiet_start"],
                    quiet_end=form.cleaned_data["quiet_end"],
                )
            except Invalid as exc:
                form.add_error(exc.field or "quiet_start", exc.message)
            else:
                window = merchant.quiet_hours
                messages.success(
                    request,
                    f"Quiet hours saved: {window.start:%H:%M} to {window.end:%H:%M}, {merchant.time_zone} time."
                    if window
                    else "Quiet hours removed: the platform's still apply.",
                )
                return redirect("portal:settings")
        status = 400
    else:
        form = QuietHoursForm(initial={"quiet_start": merchant.quiet_start, "quiet_end": merchant.quiet_end})
    context = {
        "form": form,
        "merchant": merchant,
        "platform_quiet_hours": settings.JOURNEY_QUIET_HOURS,
        "platform_time_zone": settings.JOURNEY_TIME_ZONE,
    }
    return page(request, "portal/settings.html", context, section="settings", status=status)
