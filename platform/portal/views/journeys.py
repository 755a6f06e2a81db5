"""Journeys: the list, creating one from a template, the flow of steps (cards with their conditions in the segment
language), activate and pause, and the report (released figures only)."""

from __future__ import annotations

import copy
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from campaigns.models import MAX_VARIANTS
from journeys.definition import send_variants, step_views, variant_letter
from journeys.models import Journey, JourneyStatus
from journeys.selectors import journey_report_public, journeys_for_merchant
from journeys.services import journey_activate, journey_pause, journey_update
from journeys.templates import TEMPLATES, journey_from_template
from merchants.api_base import get_scoped_or_404
from merchants.errors import DomainError
from portal.access import Capability, merchant_view
from portal.rendering import page

STATUS_BADGE = {JourneyStatus.DRAFT: "", JourneyStatus.ACTIVE: "ok", JourneyStatus.PAUSED: "warn"}


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.pk}"


def _journey_or_404(request: HttpRequest, journey_id: int) -> Journey:
    return get_scoped_or_404(journeys_for_merchant(request.portal.merchant), pk=journey_id)


@require_GET
@merchant_view()
def journey_list(request: HttpRequest) -> HttpResponse:
    journeys = list(journeys_for_merchant(request.portal.merchant)[:200])
    rows = [{"journey": j, "badge": STATUS_BADGE.get(j.status, "")} for j in journeys]
    return page(
        request, "portal/journeys/list.html", {"rows": rows, "templates": TEMPLATES.values()}, section="journeys"
    )


@require_POST
@merchant_view(Capability.MANAGE_CAMPAIGNS)
def journey_new(request: HttpRequest) -> HttpResponse:
    try:
        journey = journey_from_template(
            merchant=request.portal.merchant, key=request.POST.get("template", ""), actor=_actor(request)
        )
    except DomainError as exc:
        messages.error(request, f"Not created: {exc.message}")
        return redirect("portal:journeys")
    messages.success(request, f"“{journey.name}” created as a draft. Review its steps, then activate it.")
    return redirect("portal:journey_detail", journey_id=journey.pk)


@require_GET
@merchant_view()
def journey_detail(request: HttpRequest, journey_id: int) -> HttpResponse:
    journey = _journey_or_404(request, journey_id)
    report = journey_report_public(journey)
    definition = journey.current_version.steps if journey.current_version else []
    cards = [
        {
            "view": view,
            "report": report.steps[i] if i < len(report.steps) else None,
            "editor": _variant_rows(definition[i]) if view.type == "send" else None,
            "auto_winner": bool(definition[i].get("auto_winner")),
        }
        for i, view in enumerate(step_views(definition))
    ]
    return page(
        request,
        "portal/journeys/detail.html",
        {"journey": journey, "badge": STATUS_BADGE.get(journey.status, ""), "cards": cards, "report": report},
        section="journeys",
    )


@require_POST
@merchant_view(Capability.MANAGE_CAMPAIGNS)
def journey_activate_view(request: HttpRequest, journey_id: int) -> HttpResponse:
    journey = _journey_or_404(request, journey_id)
    try:
        journey_activate(journey=journey, actor=_actor(request))
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"“{journey.name}” is active: new entrants start now.")
    return redirect("portal:journey_detail", journey_id=journey.pk)


@require_POST
@merchant_view(Capability.MANAGE_CAMPAIGNS)
def journey_pause_view(request: HttpRequest, journey_id: int) -> HttpResponse:
    journey = _journey_or_404(request, journey_id)
    try:
        journey_pause(journey=journey, actor=_actor(request))
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"“{journey.name}” is paused: nobody enters, waiting steps resume with it.")
    return redirect("portal:journey_detail", journey_id=journey.pk)


def _variant_rows(step: dict) -> list[dict[str, Any]]:
    """The send step's messages as editable rows (one per variant, or the step's own), plus a blank row that adds a
    variant when filled in (until there are MAX_VARIANTS)."""
    has_variants = bool(step.get("variants"))
    rows = [
        {
            "index": i,
            "letter": variant_letter(i + 1),
            "title": message.get("title", ""),
            "body": message.get("body", ""),
            "coupon_code": message.get("coupon_code", ""),
            "discount_percent": "" if message.get("discount_percent") is None else message["discount_percent"],
            "weight": step["variants"][i]["weight"] if has_variants else "",
            "new": False,
        }
        for i, message in enumerate(send_variants(step))
    ]
    if len(rows) < MAX_VARIANTS:
        empty = {"title": "", "body": "", "coupon_code": "", "discount_percent": "", "weight": ""}
        rows.append({"index": len(rows), "letter": variant_letter(len(rows) + 1), **empty, "new": True})
    return rows


def _weight(raw: str) -> int | str | None:
    raw = raw.strip()
    if not raw:
        return None
    return int(raw) if raw.isdigit() else raw  # anything else is refused by the definition, naming the variant


@require_POST
@merchant_view(Capability.MANAGE_CAMPAIGNS)
def journey_step_variants(request: HttpRequest, journey_id: int, step: int) -> HttpResponse:
    """Save a send step's messages from its card: edit each variant, remove some, add one. Two or more make an
    A/B/n test; one is the step's plain message. Saving adds a version (consumers in flight keep theirs)."""
    journey = _journey_or_404(request, journey_id)
    steps = copy.deepcopy(journey.current_version.steps) if journey.current_version else []
    if not 0 <= step < len(steps) or steps[step]["type"] != "send":
        raise Http404("No such send step.")
    rows = []
    for i in range(MAX_VARIANTS + 1):
        field = {key: request.POST.get(f"v{i}-{key}", "") for key in ("title", "body", "coupon_code", "discount")}
        if request.POST.get(f"v{i}-remove") or not (field["title"].strip() or field["body"].strip()):
            continue
        row: dict[str, Any] = {"title": field["title"], "body": field["body"]}
        row["coupon_code"] = field["coupon_code"].strip()
        row["discount_percent"] = field["discount"].strip() or None
        weight = _weight(request.POST.get(f"v{i}-weight", ""))
        if weight is not None:
            row["weight"] = weight
        rows.append(row)
    send = {k: v for k, v in steps[step].items() if k not in ("variants", "auto_winner", "weight")}
    if len(rows) == 1:
        send.update({k: v for k, v in rows[0].items() if k != "weight"})
    elif rows:
        send.update({k: v for k, v in rows[0].items() if k != "weight"})  # the step's own message is A's
        send["variants"] = rows
        send["auto_winner"] = bool(request.POST.get("auto_winner"))
    else:
        messages.error(request, f"Not saved: steps[{step}]: a send step needs at least one message.")
        return redirect("portal:journey_detail", journey_id=journey.pk)
    steps[step] = send
    try:
        journey_update(journey=journey, actor=_actor(request), steps=steps)
    except DomainError as exc:
        messages.error(request, f"Not saved: {exc.message}")
    else:
        kind = f"an A/B test of {len(rows)} variants" if len(rows) > 1 else "one message"
        messages.success(request, f"Step {step + 1} now sends {kind}. New entrants get this version.")
    return redirect("portal:journey_detail", journey_id=journey.pk)
