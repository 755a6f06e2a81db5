"""Journeys: the list, creating one from a template or blank, the builder (a visual flow of steps whose conditions
are edited with the segment rule builder; saved through the same service as the API, so a live journey gets a new
version), the flow of steps, activate and pause, and the report (released figures only)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from campaigns.messages import CONSTANT_PLACEHOLDERS, PRODUCT_LIST_PLACEHOLDER
from campaigns.models import MAX_VARIANTS
from journeys.api import JourneyInputSerializer, JourneyOutputSerializer, journey_data
from journeys.definition import EVENT_ARGUMENTS, MAX_STEPS, send_variants, step_views, variant_letter
from journeys.models import Journey, JourneyStatus
from journeys.selectors import journey_report_public, journeys_for_merchant
from journeys.services import journey_activate, journey_create, journey_pause, journey_update
from journeys.templates import TEMPLATES, journey_from_template
from merchants.api_base import get_scoped_or_404
from merchants.errors import DomainError
from portal.access import Capability, merchant_view
from portal.errors import http_status_of, json_error, json_error_of
from portal.rendering import page
from portal.segment_builder import builder_vocabulary
from segments.selectors import segments_for_merchant

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
    return _detail_page(request, _journey_or_404(request, journey_id))


@dataclass(frozen=True)
class _RefusedEdit:
    """A step's messages as the merchant submitted them, refused: the card shows them again with the reason."""

    step: int
    rows: list[dict[str, Any]]
    auto_winner: bool
    message: str
    updated_at_seen: str = ""  # the stamp the refused card was drawn with (kept after an edit conflict)


def _detail_page(
    request: HttpRequest, journey: Journey, *, refused: _RefusedEdit | None = None, status: int = 200
) -> HttpResponse:
    report = journey_report_public(journey)
    definition = journey.current_version.steps if journey.current_version else []
    cards = []
    for i, view in enumerate(step_views(definition)):
        card: dict[str, Any] = {
            "view": view,
            "report": report.steps[i] if i < len(report.steps) else None,
            "editor": _variant_rows(definition[i]) if view.type == "send" else None,
            "auto_winner": bool(definition[i].get("auto_winner")),
            "error": "",
        }
        if refused is not None and refused.step == i and card["editor"] is not None:
            card.update(
                editor=refused.rows,
                auto_winner=refused.auto_winner,
                error=refused.message,
                open=True,
                updated_at=refused.updated_at_seen,
            )
        cards.append(card)
    return page(
        request,
        "portal/journeys/detail.html",
        {"journey": journey, "badge": STATUS_BADGE.get(journey.status, ""), "cards": cards, "report": report},
        section="journeys",
        status=status,
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
    """The send step's messages as editable rows (one per variant, or the step's own)."""
    has_variants = bool(step.get("variants"))
    return _editor_rows(
        [
            {
                "title": message.get("title", ""),
                "body": message.get("body", ""),
                "coupon_code": message.get("coupon_code", ""),
                "discount_percent": "" if message.get("discount_percent") is None else message["discount_percent"],
                "weight": step["variants"][i]["weight"] if has_variants else "",
                "remove": False,
            }
            for i, message in enumerate(send_variants(step))
        ]
    )


def _editor_rows(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as the card's lettered rows, plus a blank row that adds a variant when filled in (until there are
    MAX_VARIANTS)."""
    rows = [
        {**message, "index": i, "letter": variant_letter(i + 1), "new": False}
        for i, message in enumerate(messages[:MAX_VARIANTS])
    ]
    if len(rows) < MAX_VARIANTS:
        empty = {"title": "", "body": "", "coupon_code": "", "discount_percent": "", "weight": "", "remove": False}
        rows.append({**empty, "index": len(rows), "letter": variant_letter(len(rows) + 1), "new": True})
    return rows


def _weight(raw: str) -> int | str | None:
    raw = raw.strip()
    if not raw:
        return None
    # Anything else is refused by the definition, naming the variant (isdigit alone admits "²", which int() refuses).
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 4 else raw


def _updated_at_seen(raw: str) -> datetime | None:
    """The journey's updated_at the step card was drawn with (its form's hidden field), or None when not sent. One
    that is not a time cannot match the journey's, so it is a moment no journey was saved at: the edit is refused."""
    if not raw.strip():
        return None
    try:
        seen = parse_datetime(raw.strip())
    except ValueError:
        seen = None
    return seen if seen is not None and seen.tzinfo is not None else datetime.min.replace(tzinfo=UTC)


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
    submitted: list[dict[str, Any]] = []  # every row as typed, shown again if the save is refused
    for i in range(MAX_VARIANTS + 1):
        field = {key: request.POST.get(f"v{i}-{key}", "") for key in ("title", "body", "coupon_code", "discount")}
        removed = bool(request.POST.get(f"v{i}-remove"))
        filled = bool(field["title"].strip() or field["body"].strip())
        if filled:
            submitted.append(
                {
                    "title": field["title"],
                    "body": field["body"],
                    "coupon_code": field["coupon_code"],
                    "discount_percent": field["discount"],
                    "weight": request.POST.get(f"v{i}-weight", ""),
                    "remove": removed,
                }
            )
        if removed or not filled:
            continue
        row: dict[str, Any] = {"title": field["title"], "body": field["body"]}
        row["coupon_code"] = field["coupon_code"].strip()
        row["discount_percent"] = field["discount"].strip() or None
        weight = _weight(request.POST.get(f"v{i}-weight", ""))
        if weight is not None:
            row["weight"] = weight
        rows.append(row)
    auto_winner = bool(request.POST.get("auto_winner"))

    def refused(message: str, status: int, *, stale: bool = False) -> HttpResponse:
        # Nothing was saved: the card opens again with what was typed and why it was refused, as the builder does.
        # After an edit conflict the card keeps the stamp it was drawn with, so saving the same rows again is
        # refused again rather than overwriting the other edit: the merchant reloads, as the message says.
        edit = _RefusedEdit(
            step=step,
            rows=_editor_rows(submitted),
            auto_winner=auto_winner,
            message=f"Not saved: {message}",
            updated_at_seen=request.POST.get("updated_at", "") if stale else "",
        )
        return _detail_page(request, journey, refused=edit, status=status)

    send = {k: v for k, v in steps[step].items() if k not in ("variants", "auto_winner", "weight")}
    if len(rows) == 1:
        send.update({k: v for k, v in rows[0].items() if k != "weight"})
    elif rows:
        send.update({k: v for k, v in rows[0].items() if k != "weight"})  # the step's own message is A's
        send["variants"] = rows
        send["auto_winner"] = auto_winner
    else:
        return refused(f"steps[{step}]: a send step needs at least one message.", 400)
    steps[step] = send
    try:
        journey_update(
            journey=journey,
            actor=_actor(request),
            steps=steps,
            expected_updated_at=_updated_at_seen(request.POST.get("updated_at", "")),
        )
    except DomainError as exc:
        return refused(exc.message, http_status_of(exc), stale=exc.code == "edit_conflict")
    kind = f"an A/B test of {len(rows)} variants" if len(rows) > 1 else "one message"
    messages.success(request, f"Step {step + 1} now sends {kind}. New entrants get this version.")
    return redirect("portal:journey_detail", journey_id=journey.pk)


# ------------------------------------------------------------------------------------------------ the builder


MESSAGE_PLACEHOLDERS = [
    *({"name": name, "help": help_text} for name, help_text in CONSTANT_PLACEHOLDERS.items()),
    {"name": PRODUCT_LIST_PLACEHOLDER, "help": "the recommended products"},
    {"name": "product_1_title", "help": "the first recommended product's title (2, 3 … for the others)"},
    {"name": "product_1_price", "help": "its price"},
    {"name": "carted_product", "help": "the product the consumer carted (a carted() trigger)"},
]


def _builder_context(request: HttpRequest, journey: Journey | None) -> dict[str, Any]:
    """What the builder's script starts from: the journey as the API shows it (or a blank one), the vocabularies of
    the rule builder (all of the language for branches; the arguments a single event is matched by for triggers,
    waits and exits), the merchant's segments and where to save."""
    merchant = request.portal.merchant
    vocabulary = builder_vocabulary(merchant=merchant)
    event_vocabulary = {
        **vocabulary,
        "arguments": [arg for arg in vocabulary["arguments"] if arg["name"] in EVENT_ARGUMENTS],
    }
    if journey is None:
        data: dict[str, Any] = {"id": None, "status": JourneyStatus.DRAFT, "steps": []}
        save_url = reverse("portal:journey_create_json")
    else:
        data = dict(JourneyOutputSerializer(journey_data(journey)).data)
        data.pop("flow", None)
        save_url = reverse("portal:journey_save_json", args=[journey.pk])
    segments = segments_for_merchant(merchant).order_by("name").values_list("pk", "name")[:500]
    return {
        "journey": data,
        "readonly": not request.portal.can_manage_campaigns,
        "segments": [{"id": pk, "name": name} for pk, name in segments],
        "vocabulary": vocabulary,
        "event_vocabulary": event_vocabulary,
        "placeholders": MESSAGE_PLACEHOLDERS,
        "max_steps": MAX_STEPS,
        "max_variants": MAX_VARIANTS,
        "urls": {
            "save": save_url,
            "parse": reverse("portal:segment_parse_json"),
            "tags": reverse("portal:tag_catalogue_json"),
            "values": reverse("portal:action_values_json"),
            "list": reverse("portal:journeys"),
            "detail": reverse("portal:journey_detail", args=[journey.pk]) if journey is not None else None,
        },
    }


@require_GET
@merchant_view(Capability.MANAGE_CAMPAIGNS)
def journey_build(request: HttpRequest) -> HttpResponse:
    """A blank journey in the builder: nothing is stored until it is saved."""
    return page(
        request,
        "portal/journeys/builder.html",
        {"journey": None, "builder": _builder_context(request, None)},
        section="journeys",
    )


@require_GET
@merchant_view()
def journey_edit(request: HttpRequest, journey_id: int) -> HttpResponse:
    """The builder on one of the merchant's journeys; read-only for a role that cannot manage campaigns."""
    journey = _journey_or_404(request, journey_id)
    return page(
        request,
        "portal/journeys/builder.html",
        {
            "journey": journey,
            "badge": STATUS_BADGE.get(journey.status, ""),
            "builder": _builder_context(request, journey),
        },
        section="journeys",
    )


@require_POST
@merchant_view(Capability.MANAGE_CAMPAIGNS, json=True)
def journey_create_json(request: HttpRequest) -> JsonResponse:
    return _journey_save(request, None)


@require_POST
@merchant_view(Capability.MANAGE_CAMPAIGNS, json=True)
def journey_save_json(request: HttpRequest, journey_id: int) -> JsonResponse:
    return _journey_save(request, _journey_or_404(request, journey_id))


def _journey_save(request: HttpRequest, journey: Journey | None) -> JsonResponse:
    """The builder's save: the API's input serializer and the API's services, so the portal and the API accept the
    same journeys and a live journey whose steps change gets a new version. A refusal is a JSON error naming the
    field (steps[2].timeout) with the status the API would answer; the services write all or nothing."""
    try:
        payload = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):
        return json_error(400, "bad_request", "The request body must be JSON.")
    if not isinstance(payload, dict):
        return json_error(400, "bad_request", "Send the journey as an object.")
    payload.pop("template", None)
    data = JourneyInputSerializer(data=payload, partial=journey is not None)
    try:
        valid = data.is_valid()
    except RecursionError:  # JSON that json.loads takes but the serializer's JSONField cannot dump back
        return json_error(400, "bad_request", "The journey is nested too deeply.")
    if not valid:
        field, problems = next(iter(data.errors.items()))
        message = problems[0] if isinstance(problems, list) and problems else str(problems)
        return json_error(400, "invalid", f"{field}: {message}", {"field": field})
    values = dict(data.validated_data)
    # The builder sends the journey's updated_at as it opened it: a save over someone else's since is refused.
    expected = values.pop("updated_at", None)
    actor = _actor(request)
    try:
        if journey is None:
            journey = journey_create(
                merchant=request.portal.merchant, actor=actor, steps=values.pop("steps", None), **values
            )
            status = 201
        else:
            journey = journey_update(journey=journey, actor=actor, expected_updated_at=expected, **values)
            status = 200
    except DomainError as exc:
        return json_error_of(exc)
    journey.refresh_from_db()
    version = journey.current_version.number if journey.current_version else None
    if status == 201:
        messages.success(request, f"“{journey.name}” created as a draft. Review it, then activate it.")
    elif journey.status == JourneyStatus.DRAFT:
        messages.success(request, f"“{journey.name}” saved.")
    else:
        messages.success(
            request,
            f"“{journey.name}” saved; its steps are version {version}: new entrants take it, consumers already in "
            "the journey finish on the version they entered with.",
        )
    return JsonResponse(
        {
            "id": journey.pk,
            "version": version,
            "status": journey.status,
            "edit_url": reverse("portal:journey_edit", args=[journey.pk]),
            "detail_url": reverse("portal:journey_detail", args=[journey.pk]),
        },
        status=status,
    )
