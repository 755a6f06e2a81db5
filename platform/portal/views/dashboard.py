"""The dashboard: the merchant's population and reachable population, recent segments and campaigns."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from campaigns.selectors import campaigns_for_merchant
from portal.access import merchant_view
from portal.rendering import page
from portal.views.campaigns import STATUS_BADGE
from segments.selectors import segments_for_merchant
from tags.reach import public_count
from tags.selectors import direct_marketing_consent_bitmap, live_consumers_bitmap, tagging_last_run

RECENT = 5


@merchant_view()
def dashboard(request: HttpRequest) -> HttpResponse:
    merchant = request.portal.merchant
    live = live_consumers_bitmap()
    reachable = live.intersection_cardinality(direct_marketing_consent_bitmap())
    segments = segments_for_merchant(merchant).order_by("-last_refreshed_at", "-updated_at")[:RECENT]
    campaigns = campaigns_for_merchant(merchant).filter(parent__isnull=True).order_by("-created_at")[:RECENT]
    return page(
        request,
        "portal/dashboard.html",
        {
            "population": public_count(len(live)),
            "reachable": public_count(reachable),
            "reachable_share": round(100 * reachable / len(live)) if len(live) >= settings.MIN_AUDIENCE else None,
            "last_run": tagging_last_run(),
            "segments": [
                {"segment": s, "size": public_count(s.snapshot_size) if s.snapshot_id is not None else None}
                for s in segments
            ],
            "campaigns": [{"campaign": c, "badge": STATUS_BADGE.get(c.status, "")} for c in campaigns],
            "min_audience": settings.MIN_AUDIENCE,
        },
        section="dashboard",
    )
