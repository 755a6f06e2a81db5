"""The dashboard: the merchant's population and reachable population, recent segments and campaigns."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from portal.access import merchant_view
from portal.rendering import page


@merchant_view()
def dashboard(request: HttpRequest) -> HttpResponse:
    return page(request, "portal/dashboard.html", {}, section="dashboard")
