"""“How your data is used”: the approved processing activities and the legal basis each relies on."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from portal.access import merchant_view
from portal.rendering import page
from privacy.models import Purpose
from privacy.selectors import approved_activities


@merchant_view()
def data_use(request: HttpRequest) -> HttpResponse:
    activities = list(approved_activities())
    covered = {a.purpose for a in activities}
    missing = [label for value, label in Purpose.choices if value not in covered]
    return page(
        request,
        "portal/data_use.html",
        {"activities": activities, "missing_purposes": missing, "min_audience": settings.MIN_AUDIENCE},
        section="data_use",
    )
