"""The dashboard: the merchant's population and reachable population, recent segments and campaigns."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from campaigns.selectors import campaigns_for_merchant
from portal.access import merchant_view
from portal.rendering import page
from portal.scope import scope_context, scope_of
from portal.views.campaigns import STATUS_BADGE
from privacy.release import STANDARD, released_rate
from privacy.services import release_figures
from segments.figures import segment_figures
from segments.insights import POPULATION_SUBJECT
from segments.models import Segment, SegmentScope
from segments.selectors import population_in_scope, segments_for_merchant
from tags.selectors import live_consumers_bitmap, reachable_bitmap, tagging_last_run

RECENT = 5
REACHABLE_SUBJECT = "population:reachable"


@merchant_view()
def dashboard(request: HttpRequest) -> HttpResponse:
    merchant = request.portal.merchant
    live = live_consumers_bitmap()
    # privacy.messaging's rule (consent, suppressions, minors), as the builder's reachable count uses it.
    reachable = live.intersection_cardinality(reachable_bitmap(exact=False))
    segments = list(segments_for_merchant(merchant).order_by("-last_refreshed_at", "-updated_at")[:RECENT])
    own_campaigns = campaigns_for_merchant(merchant).filter(parent__isnull=True)
    campaigns = own_campaigns.order_by("-created_at")[:RECENT]
    # The population as insights show it, the reachable part; the share only from those two released numbers.
    # Among the merchant's customers when the scope switch says so (the subjects then carry the scope).
    scope = scope_of(request)
    if scope == SegmentScope.MARKETPLACE:
        population, reachable_count = release_figures(
            merchant_id=merchant.pk,
            figures=[(POPULATION_SUBJECT, len(live)), (REACHABLE_SUBJECT, reachable)],
            precision=STANDARD,
        )
    else:
        population, reachable_count = population_in_scope(
            merchant_id=merchant.pk, scope=scope, live=live, reachable=reachable_bitmap(exact=False)
        )
    share = released_rate(reachable_count, population)
    sizes = segment_figures(merchant_id=merchant.pk, segments=segments, measures=("size",))
    return page(
        request,
        "portal/dashboard.html",
        {
            "population": population.public(),
            "reachable": reachable_count.public(),
            "reachable_share": None if share is None else round(100 * share),
            "last_run": tagging_last_run(),
            "segments": [
                {"segment": s, "size": sizes[s.pk]["size"].public() if s.pk in sizes else None} for s in segments
            ],
            "campaigns": [{"campaign": c, "badge": STATUS_BADGE.get(c.status, "")} for c in campaigns],
            # How many the merchant has (its own objects, not consumers: no release needed), not how many are listed.
            "segment_count": Segment.objects.for_merchant(merchant).count(),
            "campaign_count": own_campaigns.count(),
            "min_audience": settings.MIN_AUDIENCE,
            **scope_context(scope),
        },
        section="dashboard",
    )
