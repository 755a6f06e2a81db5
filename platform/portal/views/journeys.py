"""Journeys: the list, creating one from a template, the flow of steps (cards with their conditions in the segment
language), activate and pause, and the report (released figures only)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from journeys.definition import step_views
from journeys.models import Journey, JourneyStatus
from journeys.selectors import journey_report_public, journeys_for_merchant
from journeys.services import journey_activate, journey_pause
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
    steps = step_views(journey.current_version.steps if journey.current_version else [])
    cards = [
        {"view": view, "report": report.steps[i] if i < len(report.steps) else None} for i, view in enumerate(steps)
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
