"""The tag explorer: every tag family, its values with plain-language definitions, and each one's reach
(released through the privacy layer: tags.reach.released_reach)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.http import urlencode

from portal.access import merchant_view
from portal.rendering import page
from portal.scope import scope_context, scope_of
from segments.selectors import tag_reach_in_scope
from tags.rules import tag_visible_to
from tags.selectors import tag_families, tagging_last_run, tags_catalogue


@merchant_view()
def tag_explorer(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    needle = query.lower()
    by_family: dict[str, list[dict]] = {}
    tags = [
        tag
        for tag in tags_catalogue()
        if (not needle or needle in f"{tag.family}:{tag.value} {tag.label} {tag.definition}".lower())
        and tag_visible_to(family=tag.family, value=tag.value, merchant_slug=request.portal.merchant.slug)
    ]
    scope = scope_of(request)
    reaches = tag_reach_in_scope(merchant_id=request.portal.merchant.pk, tags=tags, scope=scope)
    for tag, released in zip(tags, reaches, strict=True):
        reach = released.public()
        by_family.setdefault(tag.family, []).append(
            {
                "code": tag.code,
                "label": tag.label,
                "definition": tag.definition,
                "reach": reach,
                "build_url": "?" + urlencode({"expression": tag.code}),
            }
        )
    families = [
        {
            "family": f.family,
            "label": f.label,
            "description": f.description,
            "note": f.note,
            "tags": by_family[f.family],
        }
        for f in tag_families()
        if f.family in by_family
    ]
    return page(
        request,
        "portal/tags.html",
        {
            "families": families,
            "query": query,
            "last_run": tagging_last_run(),
            "min_audience": settings.MIN_AUDIENCE,
            "total": sum(len(f["tags"]) for f in families),
            **scope_context(scope),
        },
        section="tags",
    )
