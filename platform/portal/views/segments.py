"""Segments: the list, the builder (text editor with autocomplete, visual rules, live estimate), the segment page
(size over time, insights, overlap, refresh status, lookalikes), and the JSON the builder's script calls."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from campaigns.selectors import campaigns_for_merchant
from campaigns.uplift import persuadables_evaluation_public
from merchants.api_base import get_scoped_or_404
from merchants.errors import DomainError
from portal.access import Capability, merchant_view
from portal.charts import ComparisonRow, comparison_bars, line_chart
from portal.errors import ExpressionProblem, form_error_from_service, http_status_of, json_error, json_error_of
from portal.forms import REFRESH_CHOICES, LookalikeForm, OverlapForm, SegmentForm
from portal.rendering import page
from portal.scope import SCOPE_LABELS, scope_of
from portal.segment_builder import builder_vocabulary, expression_canonical
from privacy.release import PREVIEW, STANDARD
from privacy.selectors import budget_remaining
from privacy.services import ProcessingNotPermitted
from segments.evaluation import SnapshotUnreadable
from segments.figures import history_figures, segment_figures, transition_figures
from segments.insights import SegmentNotComputed, segment_insights, segment_overlap
from segments.models import RefreshPolicy, Segment, SegmentKind, SegmentScope, SegmentStatus, SnapshotStatus
from segments.selectors import (
    SUGGESTED_ARGS,
    action_value_suggestions,
    audience_estimate,
    segment_used_by,
    segments_find,
    segments_for_merchant,
    segments_used_by,
)
from segments.services import (
    lookalike_create,
    segment_clone,
    segment_create,
    segment_crontab,
    segment_delete,
    segment_refresh_request,
    segment_update,
)
from tags.reach import released_reach
from tags.rules import tag_visible_to
from tags.selectors import tag_families, tags_catalogue

SEGMENT_FIELD_BY_CODE = {
    "invalid_expression": "expression",
    "invalid_persona": "expression",
    "not_editable": "expression",
    "duplicate_name": "name",
    "invalid_schedule": "crontab",
}
# The seed's own problems (not computed, too small) are about the segment, so they head the form.
LOOKALIKE_FIELD_BY_CODE = {"duplicate_name": "name", "invalid_lookalike": "size"}
KIND_LABELS = {SegmentKind.RULE: "Rule", SegmentKind.LOOKALIKE: "Lookalike", SegmentKind.PERSONA: "Persona"}
NOT_PERMITTED = (
    "Audience processing is paused: the platform's privacy officer has no approved activity for tagging "
    "in force. Estimates, refreshes and insights resume as soon as one is approved."
)


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.pk}"


@dataclass(frozen=True)
class SizePoint:
    computed_at: datetime
    ok: bool
    error: str
    size: dict | None  # released counts (ReleasedCount.public()); None for a failed refresh
    entered: dict | None
    exited: dict | None


HISTORY_LENGTH = 60


def _size_history(segment: Segment, merchant_id: int) -> list[SizePoint]:
    """The segment's last refreshes, oldest first, with every figure released (segments.figures)."""
    snapshots = list(
        reversed(
            segment.snapshots.order_by("-computed_at", "-id").values_list(
                "computed_at", "status", "error", "size", "entered", "exited"
            )[:HISTORY_LENGTH]
        )
    )
    ready = [row for row in snapshots if row[1] == SnapshotStatus.READY]
    released = iter(
        history_figures(
            merchant_id=merchant_id,
            segment_id=segment.pk,
            points=[(size or 0, entered or 0, exited or 0) for *_, size, entered, exited in ready],
        )
    )
    points = []
    for computed_at, status, error, *_ in snapshots:
        ok = status == SnapshotStatus.READY
        figures = {k: v.public() for k, v in next(released).items()} if ok else {}
        points.append(
            SizePoint(
                computed_at=computed_at,
                ok=ok,
                error=error,
                size=figures.get("size"),
                entered=figures.get("entered"),
                exited=figures.get("exited"),
            )
        )
    return points


def _segment_or_404(request: HttpRequest, segment_id: int) -> Segment:
    return get_scoped_or_404(segments_for_merchant(request.portal.merchant), pk=segment_id)


# ------------------------------------------------------------------------------------------------ list


PAGE_SIZE = 25
SEARCH_MAX = 200
STATUS_LABELS = {
    SegmentStatus.READY: "Ready",
    SegmentStatus.PENDING: "Refreshing",
    SegmentStatus.FAILED: "Refresh failed",
}
# The list's sort keys: name and last refresh sort in the database; size sorts by the released size (never the
# exact one, whose order would say more than the released numbers do), with hidden sizes as the smallest.
SORTS = {
    "name": "Name (A–Z)",
    "-name": "Name (Z–A)",
    "-size": "Size (largest first)",
    "size": "Size (smallest first)",
    "-refreshed": "Last refreshed (newest first)",
    "refreshed": "Last refreshed (oldest first)",
}
DB_ORDER = {
    "name": ("name", "pk"),
    "-name": ("-name", "-pk"),
    "-refreshed": (F("last_refreshed_at").desc(nulls_last=True), "name", "pk"),
    "refreshed": (F("last_refreshed_at").asc(nulls_first=True), "name", "pk"),
}


@dataclass(frozen=True)
class ListQuery:
    """What the segment list shows: kept in the query string, so a link or a reload keeps it."""

    q: str = ""
    kind: str = ""
    status: str = ""
    policy: str = ""
    sort: str = "name"

    @classmethod
    def from_request(cls, request: HttpRequest) -> ListQuery:
        """Unknown values are ignored (the list shows everything), never an error page."""
        get = request.GET

        def choice(name: str, allowed) -> str:
            value = get.get(name, "")
            return value if value in allowed else ""

        return cls(
            q=" ".join(get.get("q", "").split())[:SEARCH_MAX],
            kind=choice("kind", SegmentKind.values),
            status=choice("status", SegmentStatus.values),
            policy=choice("policy", RefreshPolicy.values),
            sort=get.get("sort", "name") if get.get("sort", "name") in SORTS else "name",
        )

    @property
    def filtered(self) -> bool:
        return bool(self.q or self.kind or self.status or self.policy)

    def querystring(self, **changes) -> str:
        """The query string for this view with some values changed ("" drops a value); page is dropped unless
        given, so a new filter or sort starts on the first page."""
        values = {"q": self.q, "kind": self.kind, "status": self.status, "policy": self.policy, "sort": self.sort}
        values.update(changes)
        if values["sort"] == "name":
            values["sort"] = ""
        return urlencode({k: v for k, v in values.items() if v})


def _released_size_key(size: dict | None) -> tuple[int, int]:
    """Sort key for a released size: not computed, then hidden ("fewer than ..."), then shown by its value."""
    if size is None or size.get("withheld"):
        return (0, 0)
    if size["hidden"] or size["size"] is None:
        return (1, 0)
    return (2, size["size"])


@merchant_view()
def segment_list(request: HttpRequest) -> HttpResponse:
    merchant = request.portal.merchant
    query = ListQuery.from_request(request)
    segments = segments_find(
        merchant=merchant, text=query.q, kind=query.kind, status=query.status, refresh_policy=query.policy
    )
    total = segments_for_merchant(merchant).count() if query.filtered else None
    if query.sort in DB_ORDER:
        paginator = Paginator(segments.order_by(*DB_ORDER[query.sort]), PAGE_SIZE)
        page_obj = paginator.get_page(request.GET.get("page"))
        shown = list(page_obj.object_list)
        figures = segment_figures(merchant_id=merchant.pk, segments=shown, measures=("size",))
    else:  # by released size: every matching segment's size is released to order them, then one page is shown
        everything = list(segments)
        figures = segment_figures(merchant_id=merchant.pk, segments=everything, measures=("size",))

        def key(segment):
            count = figures.get(segment.pk, {}).get("size")
            return _released_size_key(count.public() if count is not None else None)

        everything.sort(key=lambda segment: segment.name.lower())
        everything.sort(key=key, reverse=query.sort == "-size")
        paginator = Paginator(everything, PAGE_SIZE)
        page_obj = paginator.get_page(request.GET.get("page"))
        shown = list(page_obj.object_list)
    used_by = segments_used_by(segment_ids=[segment.pk for segment in shown])
    rows = []
    for segment in shown:
        size = figures[segment.pk]["size"].public() if segment.pk in figures else None
        rows.append(
            {
                "segment": segment,
                "size": size,
                "kind": KIND_LABELS.get(segment.kind, segment.kind),
                "used_by": used_by[segment.pk],
            }
        )
    context = {
        "rows": rows,
        "query": query,
        "page_obj": page_obj,
        "paginator": paginator,
        "total": total,
        "sorts": SORTS,
        "kinds": KIND_LABELS,
        "statuses": STATUS_LABELS,
        "policies": [(value, label) for value, label in REFRESH_CHOICES]
        + [(value, label) for value, label in RefreshPolicy.choices if value not in dict(REFRESH_CHOICES)],
        # A header sorts by its column (names A–Z, sizes and refreshes newest or largest first), again to reverse.
        "sort_links": {
            "name": query.querystring(sort="-name" if query.sort == "name" else "name"),
            "size": query.querystring(sort="size" if query.sort == "-size" else "-size"),
            "refreshed": query.querystring(sort="refreshed" if query.sort == "-refreshed" else "-refreshed"),
        },
        "page_links": {
            "previous": query.querystring(page=page_obj.previous_page_number()) if page_obj.has_previous() else None,
            "next": query.querystring(page=page_obj.next_page_number()) if page_obj.has_next() else None,
        },
    }
    return page(request, "portal/segments/list.html", context, section="segments")


# ------------------------------------------------------------------------------------------------ builder


def _builder(request, *, form: SegmentForm, segment: Segment | None, problem=None, status=200) -> HttpResponse:
    return page(
        request,
        "portal/segments/builder.html",
        {
            "form": form,
            "segment": segment,
            "problem": problem,
            "min_audience": settings.MIN_AUDIENCE,
            "builder_vocabulary": builder_vocabulary(
                merchant=request.portal.merchant, exclude_segment_id=segment.pk if segment else None
            ),
        },
        section="segments",
        status=status,
    )


def _save_segment(request: HttpRequest, form: SegmentForm, segment: Segment | None):
    """Create or update through the segment services; their refusals land next to the field they concern."""
    data = form.cleaned_data
    schedule = {"crontab": data["crontab"]} if data["refresh_policy"] == "custom" and data["crontab"] else {}
    try:
        if segment is None:
            saved = segment_create(
                merchant=request.portal.merchant,
                name=data["name"],
                description=data["description"],
                expression=data["expression"],
                refresh_policy=data["refresh_policy"],
                scope=data["scope"],
                actor=_actor(request),
                **schedule,
            )
        else:
            saved = segment_update(
                segment=segment,
                name=data["name"],
                description=data["description"],
                expression=data["expression"] if segment.kind != SegmentKind.LOOKALIKE else None,
                refresh_policy=data["refresh_policy"],
                scope=data["scope"] if segment.kind != SegmentKind.LOOKALIKE else None,
                actor=_actor(request),
                **schedule,
            )
    except DomainError as exc:
        expression = data.get("expression") or ""
        form_error_from_service(form, exc, field_by_code=SEGMENT_FIELD_BY_CODE)
        problem = None
        if exc.code == "invalid_expression":
            problem = ExpressionProblem.from_details(expression, exc.message, exc.details)
        return None, problem
    return saved, None


@merchant_view(Capability.EDIT_SEGMENTS)
def segment_new(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        initial = {"expression": request.GET.get("expression", "")[:2000], "scope": scope_of(request)}
        return _builder(request, form=SegmentForm(initial=initial), segment=None)
    form = SegmentForm(request.POST)
    if form.is_valid():
        segment, problem = _save_segment(request, form, None)
        if segment is not None:
            segment.refresh_from_db(fields=["status"])
            pending = "; its first refresh is under way" if segment.status == SegmentStatus.PENDING else ""
            messages.success(request, f"Segment “{segment.name}” saved{pending}.")
            return redirect("portal:segment_detail", segment_id=segment.pk)
        return _builder(request, form=form, segment=None, problem=problem, status=400)
    return _builder(request, form=form, segment=None, status=400)


@merchant_view(Capability.EDIT_SEGMENTS)
def segment_edit(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = _segment_or_404(request, segment_id)
    if request.method != "POST":
        form = SegmentForm(
            initial={
                "name": segment.name,
                "description": segment.description,
                "expression": segment.definition,
                "refresh_policy": segment.refresh_policy,
                "scope": segment.scope,
                "crontab": segment_crontab(segment) or "",
            },
            lookalike=segment.kind == SegmentKind.LOOKALIKE,
        )
        return _builder(request, form=form, segment=segment)
    form = SegmentForm(request.POST, lookalike=segment.kind == SegmentKind.LOOKALIKE)
    if form.is_valid():
        saved, problem = _save_segment(request, form, segment)
        if saved is not None:
            messages.success(request, f"Segment “{saved.name}” saved.")
            return redirect("portal:segment_detail", segment_id=saved.pk)
        return _builder(request, form=form, segment=segment, problem=problem, status=400)
    return _builder(request, form=form, segment=segment, status=400)


@require_POST
@merchant_view(json=True)
def estimate_json(request: HttpRequest) -> JsonResponse:
    """The builder's live estimate: the same service as POST /api/v1/audiences/estimate, under the session."""
    try:
        payload = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):
        return json_error(400, "bad_request", "The request body must be JSON.")
    expression = payload.get("expression") if isinstance(payload, dict) else None
    if not isinstance(expression, str):
        return json_error(400, "bad_request", "Send the expression as text.")
    # While typing: the cheap, coarse preview; the builder asks for a standard release only on request.
    precision = payload.get("precision", PREVIEW)
    if precision not in (PREVIEW, STANDARD):
        return json_error(400, "bad_request", "precision is preview or standard.")
    scope = payload.get("scope", SegmentScope.MARKETPLACE)
    if scope not in SegmentScope.values:
        return json_error(400, "bad_request", "scope is marketplace or my_customers.")
    try:
        estimate = audience_estimate(
            merchant=request.portal.merchant, expression=expression, precision=precision, scope=scope
        )
    except ProcessingNotPermitted:
        return json_error(409, "processing_not_permitted", NOT_PERMITTED)
    except DomainError as exc:
        return json_error_of(exc)
    return JsonResponse(
        {
            "size": _estimate_count(estimate.size),
            "reachable": _estimate_count(estimate.reachable),
            "took_ms": round(estimate.took_ms, 1),
            "expression": estimate.expression,
            "scope": estimate.scope,
            "scope_label": SCOPE_LABELS[estimate.scope],
            "budget": budget_remaining(merchant_id=request.portal.merchant.pk).as_dict(),
        }
    )


@require_POST
@merchant_view(json=True)
def parse_json(request: HttpRequest) -> JsonResponse:
    """Text to the builder and back: `{"expression": text}` or `{"definition": json}` gives the JSON form and the
    canonical text, or a 400 with the syntax error's position. Purely syntactic, so it spends no privacy budget."""
    try:
        payload = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):
        return json_error(400, "bad_request", "The request body must be JSON.")
    if not isinstance(payload, dict):
        return json_error(400, "bad_request", "Send an object with the expression or the definition.")
    try:
        canonical = expression_canonical(expression=payload.get("expression"), definition=payload.get("definition"))
    except DomainError as exc:
        return json_error_of(exc)
    return JsonResponse(canonical)


def _estimate_count(released: dict) -> dict:
    """A released count for the builder: its display, whether hidden, and "± bound" when shown."""
    bound = released.get("error_bound")
    return {
        "display": released["display"],
        "hidden": released["hidden"],
        "error_bound": bound,
        "precision": released.get("precision"),
    }


# ------------------------------------------------------------------------------------------------ segment page


@merchant_view()
def segment_detail(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = _segment_or_404(request, segment_id)
    return _detail(request, segment)


def _too_small(segment: Segment, size: dict | None) -> str:
    """Why this segment can have no lookalike and no campaign, or "": a lookalike needs a computed seed of at least
    MIN_AUDIENCE members, and a campaign refuses to launch to fewer (the same rules the services apply)."""
    if segment.snapshot_id is None:
        return "not_computed"
    if size is None or size.get("withheld"):
        return ""  # not released this period: the services decide when asked
    if size["hidden"] or (segment.snapshot_size or 0) < settings.MIN_AUDIENCE:
        return "too_small"
    return ""


def _detail(request, segment: Segment, *, lookalike_form=None, delete_error: str = "", status=200) -> HttpResponse:
    merchant = request.portal.merchant
    history = _size_history(segment, merchant.pk)
    points = [(h.computed_at, h.size["size"]) for h in history if h.ok]  # None where hidden
    others = segments_for_merchant(merchant).exclude(pk=segment.pk)
    overlap_form = OverlapForm(request.GET or None, segments=others)
    current = segment_figures(merchant_id=merchant.pk, segments=[segment]).get(segment.pk, {})
    context = {
        "segment": segment,
        "size": current["size"].public() if "size" in current else None,
        # The first refresh has no "before" to compare with: everyone "joined", which says nothing.
        "entered": current["entered"].public() if len(history) > 1 and "entered" in current else None,
        "exited": current["exited"].public() if len(history) > 1 and "exited" in current else None,
        "history": list(reversed(history))[:10],
        "size_chart": line_chart(
            points, title=f"Size of “{segment.name}” over time", empty_message="Not computed yet."
        ),
        "crontab": segment_crontab(segment),
        "overlap_form": overlap_form,
        "lookalike_form": lookalike_form or LookalikeForm(initial={"name": f"Like {segment.name}"[:200]}),
        "min_audience": settings.MIN_AUDIENCE,
        "has_others": others.exists(),
        "used_by": segment_used_by(segment=segment),
        "delete_error": delete_error,
    }
    context["too_small"] = _too_small(segment, context["size"])
    if segment.kind == SegmentKind.PERSUADABLE:
        context["persuadables"] = _persuadables(request, segment)
    if segment.refresh_policy == RefreshPolicy.REALTIME:
        moved = transition_figures(merchant_id=merchant.pk, segment_id=segment.pk)
        context["realtime"] = {"joined": moved["joined"].public(), "left": moved["left"].public()}
    context.update(_insights(segment))
    if overlap_form.is_bound and overlap_form.is_valid():
        context["overlap"] = _overlap(segment, overlap_form.cleaned_data["other"])
    return page(request, "portal/segments/detail.html", context, section="segments", status=status)


def _persuadables(request, segment: Segment) -> dict:
    """Where a persuadable segment was learned, and its hold-out evaluation in plain words (released figures)."""
    spec = segment.lookalike_spec or {}
    campaign = campaigns_for_merchant(request.portal.merchant).filter(pk=spec.get("campaign")).first()
    evaluation = persuadables_evaluation_public(segment)
    share = spec.get("share")
    return {
        "campaign": campaign,
        "kept": f"the top {share * 100:g}% by predicted uplift"
        if share
        else f"the top {spec.get('size')} by predicted uplift",
        "words": evaluation.words if evaluation else "",
    }


def _insights(segment: Segment) -> dict:
    try:
        insights = segment_insights(segment=segment, merchant_id=segment.merchant_id)
    except SegmentNotComputed:
        return {"insights_note": "Insights appear once the segment has been computed."}
    except ProcessingNotPermitted:
        return {"insights_note": NOT_PERMITTED}
    except SnapshotUnreadable as exc:  # logged for the operator where it was found
        return {"insights_note": exc.message}
    labels = {family.family: family.label for family in tag_families()}
    families = []
    for family in insights["families"]:
        shown = [cell for cell in family["values"] if not cell["suppressed"]]
        rows = [
            ComparisonRow(
                label=cell["label"],
                segment_share=cell["segment_share"],
                population_share=cell["population_share"],
                lift=cell["lift"],
            )
            for cell in shown
        ]
        title = labels.get(family["family"], family["family"].replace("_", " ").capitalize())
        families.append(
            {
                "family": family["family"],
                "title": title,
                "cells": shown,
                "hidden": len(family["values"]) - len(shown),
                "chart": comparison_bars(rows, title=f"{title}: this segment against all consumers", width=460)
                if rows
                else "",
            }
        )
    # Families with something to show first, in the catalogue's order.
    families.sort(key=lambda f: not f["cells"])
    note = ""
    if insights["size"]["hidden"]:
        note = "This segment is too small for its make-up to be shown."
    return {"insight_families": families, "insights_note": note}


def _unreadable_other(other: Segment) -> str:
    return f"The members of “{other.name}” could not be read; refresh it to rebuild them."


def _overlap(segment: Segment, other: Segment) -> dict:
    try:
        return {"other": other, **segment_overlap(segment=segment, other=other, merchant_id=segment.merchant_id)}
    except SegmentNotComputed as exc:
        return {"other": other, "error": str(exc)}
    except ProcessingNotPermitted:
        return {"other": other, "error": NOT_PERMITTED}
    except SnapshotUnreadable as exc:  # this segment's members or the other's; logged where it was found
        return {"other": other, "error": exc.message if exc.segment_id == segment.pk else _unreadable_other(other)}


@require_POST
@merchant_view(Capability.EDIT_SEGMENTS)
def segment_refresh(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = _segment_or_404(request, segment_id)
    segment_refresh_request(segment_id=segment.pk, actor=_actor(request))
    messages.info(request, f"Refresh of “{segment.name}” requested; the page shows its status.")
    return redirect("portal:segment_detail", segment_id=segment.pk)


@require_POST
@merchant_view(Capability.EDIT_SEGMENTS)
def segment_delete_view(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = _segment_or_404(request, segment_id)
    try:
        segment_delete(segment=segment, actor=_actor(request))
    except DomainError as exc:
        # Nothing is deleted and nothing cascades: the page says what uses the segment (409, as in the API).
        return _detail(request, segment, delete_error=exc.message, status=http_status_of(exc))
    messages.success(request, f"Segment “{segment.name}” deleted.")
    return redirect("portal:segments")


@require_POST
@merchant_view(Capability.EDIT_SEGMENTS)
def segment_clone_view(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = _segment_or_404(request, segment_id)
    try:
        clone = segment_clone(segment=segment, actor=_actor(request))
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("portal:segment_detail", segment_id=segment.pk)
    messages.success(request, f"Copied “{segment.name}” as “{clone.name}”; its first refresh is under way.")
    return redirect("portal:segment_detail", segment_id=clone.pk)


@require_POST
@merchant_view(Capability.EDIT_SEGMENTS)
def segment_lookalike(request: HttpRequest, segment_id: int) -> HttpResponse:
    seed = _segment_or_404(request, segment_id)
    form = LookalikeForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        recipe = {"size": data["size"]} if data["method"] == "size" else {"min_similarity": data["min_similarity"]}
        try:
            lookalike = lookalike_create(
                seed=seed, name=data["name"], description=data["description"], actor=_actor(request), **recipe
            )
        except DomainError as exc:
            form_error_from_service(form, exc, field_by_code=LOOKALIKE_FIELD_BY_CODE)
        else:
            messages.success(request, f"Lookalike “{lookalike.name}” created; it is being computed.")
            return redirect("portal:segment_detail", segment_id=lookalike.pk)
    return _detail(request, seed, lookalike_form=form, status=400)


# ------------------------------------------------------------------------------------------------ catalogue


@require_GET
@merchant_view(json=True)
def tag_catalogue_json(request: HttpRequest) -> JsonResponse:
    """The tag catalogue for the builder's autocomplete and rule rows, with each tag's released reach."""
    slug = request.portal.merchant.slug
    tags = [tag for tag in tags_catalogue() if tag_visible_to(family=tag.family, value=tag.value, merchant_slug=slug)]
    reaches = released_reach(merchant_id=request.portal.merchant.pk, tags=tags)
    return JsonResponse(
        {
            "tags": [
                {"family": tag.family, "value": tag.value, "label": tag.label, "reach": reach.display}
                for tag, reach in zip(tags, reaches, strict=True)
            ],
            "new_segment_url": reverse("portal:segment_new"),
        }
    )


@require_GET
@merchant_view(json=True)
def action_values_json(request: HttpRequest) -> JsonResponse:
    """Categories, brands or products (`argument`) starting with `prefix` that the merchant may name in actions
    (segments/targeting.py: its own, and categories and brands sold by enough merchants), for the builder's
    suggestions inside quotes, each with its released reach in the `scope` (marketplace or my_customers)."""
    argument = request.GET.get("argument", "")
    if argument not in SUGGESTED_ARGS:
        return json_error(400, "bad_request", f"argument is one of {', '.join(SUGGESTED_ARGS)}.")
    scope = request.GET.get("scope") or SegmentScope.MARKETPLACE
    if scope not in SegmentScope.values:
        return json_error(400, "bad_request", "scope is marketplace or my_customers.")
    prefix = request.GET.get("prefix", "")[:200]
    items = action_value_suggestions(
        merchant_id=request.portal.merchant.pk, argument=argument, prefix=prefix, scope=scope
    )
    return JsonResponse(
        {
            "argument": argument,
            "scope": scope,
            "scope_label": SCOPE_LABELS[scope],
            "values": [item.value for item in items],
            "items": [
                {"value": item.value, "display": item.label, "reach": _estimate_count(item.reach)} for item in items
            ],
        }
    )
