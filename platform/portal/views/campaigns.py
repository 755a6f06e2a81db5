"""Campaigns: the list, the wizard (audience, message with a live preview, offer, schedule, caps, control group),
the review with the consent-filtered reach and the launch, progress while it runs, and the report."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, time
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from campaigns.messages import campaign_constants, message_render, template_problems
from campaigns.models import FINISHED_STATUSES, VARIANT_LETTERS, Campaign, CampaignStatus, Group, Phase, ScheduleKind
from campaigns.preview import PREVIEW_SAMPLES, message_preview
from campaigns.report_csv import campaign_report_csv_rows
from campaigns.responses import RESPONSES, response_segment_create
from campaigns.schedule import duration_text, recurrence_describe
from campaigns.selectors import (
    CAMPAIGN_PRECISION,
    campaign_progress,
    campaign_report_public,
    campaign_subject,
    campaign_variants_report_public,
    campaigns_audience,
    campaigns_for_merchant,
    campaigns_kpis,
    forecast_being_made,
    forecast_like_campaign,
)
from campaigns.services import (
    audience_precheck,
    campaign_cancel,
    campaign_create,
    campaign_delete,
    campaign_launch,
    campaign_update,
)
from campaigns.testsend import campaign_test_send
from campaigns.timeseries import SERIES as DAILY_SERIES
from campaigns.timeseries import campaign_daily_public
from campaigns.uplift import campaign_forecast, forecast_candidates, persuadables_create
from merchants.api_base import get_scoped_or_404, id_from_text
from merchants.errors import DomainError, NotFound
from portal.access import Capability, merchant_view
from portal.charts import FunnelStage, funnel_chart, interval_chart, line_chart, percent
from portal.errors import json_error
from portal.forms import CAMPAIGN_FIELD_OF, CampaignForm
from portal.rendering import page
from privacy.services import release_figures
from segments.evaluation import SnapshotUnreadable
from segments.figures import segment_figures
from segments.selectors import segments_for_merchant

STATUS_BADGE = {
    CampaignStatus.DRAFT: "",
    CampaignStatus.SCHEDULED: "info",
    CampaignStatus.RUNNING: "warn",
    CampaignStatus.COMPLETED: "ok",
    CampaignStatus.CANCELLED: "",
    CampaignStatus.FAILED: "bad",
}
PHASE_LABEL = dict(Phase.choices)


def _local(moment) -> str:
    """A moment in the merchant's time zone (the portal activates it for every page)."""
    return timezone.localtime(moment).strftime("%-d %b %Y %H:%M")


def campaign_state(campaign: Campaign) -> dict[str, str]:
    """What a campaign is doing, in words and in the merchant's local time: its heading and its "when"."""
    zone = timezone.get_current_timezone_name()
    status = campaign.status
    if status == CampaignStatus.DRAFT:
        return {"heading": "Draft", "when": "not launched yet"}
    if status == CampaignStatus.SCHEDULED:
        if campaign.is_series:
            return {
                "heading": "Scheduled to repeat",
                "when": f"{recurrence_describe(campaign.recurrence)} ({zone})",
            }
        if campaign.schedule_kind == ScheduleKind.AT and campaign.scheduled_at and campaign.parent_id is None:
            return {"heading": "Scheduled", "when": f"sends {_local(campaign.scheduled_at)} ({zone})"}
        return {"heading": "Starting…", "when": f"launched {_local(campaign.launched_at or campaign.created_at)}"}
    if status == CampaignStatus.RUNNING:
        return {"heading": "Sending…", "when": f"sending since {_local(campaign.started_at or campaign.launched_at)}"}
    if status == CampaignStatus.COMPLETED:
        return {"heading": "Sending finished", "when": f"sent {_local(campaign.completed_at or campaign.updated_at)}"}
    if status == CampaignStatus.CANCELLED:
        return {"heading": "Cancelled", "when": f"cancelled {_local(campaign.cancelled_at or campaign.updated_at)}"}
    return {"heading": "Stopped: it failed", "when": f"failed {_local(campaign.updated_at)}"}


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.pk}"


def _campaign_or_404(request: HttpRequest, campaign_id: int) -> Campaign:
    return get_scoped_or_404(campaigns_for_merchant(request.portal.merchant), pk=campaign_id)


def _segments(request: HttpRequest):
    return segments_for_merchant(request.portal.merchant)


# ------------------------------------------------------------------------------------------------ list


@merchant_view()
def campaign_list(request: HttpRequest) -> HttpResponse:
    campaigns = list(campaigns_for_merchant(request.portal.merchant).filter(parent__isnull=True)[:200])
    audience = campaigns_audience(campaigns)
    kpis = campaigns_kpis(campaigns)
    rows = [
        {
            "campaign": c,
            "badge": STATUS_BADGE.get(c.status, ""),
            "audience": audience.get(c.pk),
            "state": campaign_state(c),
            "kpis": kpis.get(c.pk),
            "conversion": None
            if c.pk not in kpis or kpis[c.pk].conversion_rate is None
            else percent(kpis[c.pk].conversion_rate or 0.0, 1),
        }
        for c in campaigns
    ]
    return page(request, "portal/campaigns/list.html", {"rows": rows}, section="campaigns")


# ------------------------------------------------------------------------------------------------ wizard


def _segment_sizes(segments) -> dict[int, str]:
    """Each segment's released size (the number on the segment list)."""
    segments = list(segments)
    merchant_id = segments[0].merchant_id if segments else None
    figures = segment_figures(merchant_id=merchant_id, segments=segments, measures=("size",))
    return {s.pk: figures[s.pk]["size"].display if s.pk in figures else "not computed yet" for s in segments}


def _form(request, segments, **kwargs) -> CampaignForm:
    return CampaignForm(segments=segments, sizes=_segment_sizes(segments), **kwargs)


def _wizard(request, form: CampaignForm, campaign: Campaign | None, status: int = 200) -> HttpResponse:
    return page(
        request,
        "portal/campaigns/wizard.html",
        {
            "form": form,
            "campaign": campaign,
            "has_segments": form.fields["include_segments"].queryset.exists(),
            "min_audience": settings.MIN_AUDIENCE,
            "time_zone": request.portal.merchant.time_zone,
            "preview_samples": range(1, PREVIEW_SAMPLES + 1),
            "min_recurrence": duration_text(settings.CAMPAIGN_MIN_RECURRENCE_MINUTES),
        },
        section="campaigns",
        status=status,
    )


def _save(request: HttpRequest, form: CampaignForm, campaign: Campaign | None) -> Campaign | None:
    try:
        if campaign is None:
            return campaign_create(merchant=request.portal.merchant, actor=_actor(request), **form.service_values())
        return campaign_update(campaign=campaign, actor=_actor(request), **form.service_values())
    except DomainError as exc:
        problems = exc.details if isinstance(exc.details, dict) else {}
        for field, field_messages in problems.items():
            name = CAMPAIGN_FIELD_OF.get(field, field)
            for message in field_messages if isinstance(field_messages, list) else [field_messages]:
                form.add_error(name if name in form.fields else None, str(message))
        if not problems:
            form.add_error(None, exc.message)
        return None


@merchant_view(Capability.MANAGE_CAMPAIGNS)
def campaign_new(request: HttpRequest) -> HttpResponse:
    segments = _segments(request)
    if request.method != "POST":
        chosen = request.GET.get("segment", "")
        # The starting message needs no offer, since the offer is optional; {offer} is suggested in the help.
        initial = {
            "title_template": "Picked for you at {store_name}",
            "body_template": "Hi! {product_1_title} is waiting for you at {store_name}.",
        }
        if id_from_text(chosen) is not None and segments.filter(pk=int(chosen)).exists():
            initial["include_segments"] = [int(chosen)]
        return _wizard(request, _form(request, segments, initial=initial), None)
    form = _form(request, segments, data=request.POST)
    if form.is_valid():
        campaign = _save(request, form, None)
        if campaign is not None:
            messages.success(request, "Draft saved. Check the reach and the message, then launch it.")
            return redirect("portal:campaign_detail", campaign_id=campaign.pk)
    return _wizard(request, form, None, status=400)


@merchant_view(Capability.MANAGE_CAMPAIGNS)
def campaign_edit(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = _campaign_or_404(request, campaign_id)
    if campaign.status != CampaignStatus.DRAFT:
        messages.error(request, "Only a draft can be changed; this campaign has been launched.")
        return redirect("portal:campaign_detail", campaign_id=campaign.pk)
    segments = _segments(request)
    if request.method != "POST":
        return _wizard(request, _form(request, segments, initial=CampaignForm.initial_from(campaign)), campaign)
    form = _form(request, segments, data=request.POST)
    if form.is_valid() and _save(request, form, campaign) is not None:
        messages.success(request, "Draft saved.")
        return redirect("portal:campaign_detail", campaign_id=campaign.pk)
    return _wizard(request, form, campaign, status=400)


# ------------------------------------------------------------------------------------------------ preview


def _decimal_or_none(value) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


@require_POST
@merchant_view(json=True)
def campaign_preview_json(request: HttpRequest) -> JsonResponse:
    """The message as a sample consumer of the audience would see it, with their real recommendations."""
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        return json_error(400, "bad_request", "The request body must be a JSON object.")
    merchant = request.portal.merchant
    title, body = str(data.get("title_template") or "")[:200], str(data.get("body_template") or "")[:2000]
    try:
        n_products = max(0, min(10, int(data.get("personalised_products") or 0)))
    except (TypeError, ValueError, OverflowError):
        n_products = 0
    coupon = str(data.get("coupon_code") or "")[:40]
    discount = _decimal_or_none(data.get("discount_percent"))
    raw_ids = data.get("include_segment_ids")
    raw_ids = raw_ids if isinstance(raw_ids, list) else []
    segment_ids = [i for i in (id_from_text(str(s)) for s in raw_ids[:50]) if i is not None]
    problems = {}
    for field, text in (("title_template", title), ("body_template", body)):
        found = template_problems(text, personalised_products=n_products, coupon_code=coupon, discount_percent=discount)
        if found:
            problems[field] = found
    if problems:
        return JsonResponse({"problems": problems})
    try:
        sample = int(data.get("sample") or 1)
    except (TypeError, ValueError, OverflowError):
        sample = 1
    preview = message_preview(
        merchant_id=merchant.pk,
        store_name=merchant.name,
        title_template=title,
        body_template=body,
        coupon_code=coupon,
        discount_percent=discount,
        personalised_products=n_products,
        segment_ids=segment_ids,
        sample=max(1, min(sample, PREVIEW_SAMPLES)),
    )
    if preview.sample is None:
        note = (
            "Choose a computed segment with at least "
            f"{settings.MIN_AUDIENCE} consumers you may message to preview with one of them; until then the "
            "preview shows your most popular products."
        )
    elif n_products and not preview.products:
        note = f"Sample consumer {preview.sample} has no recommendations yet; their message would leave them out."
    else:
        note = (
            f"Sample consumer {preview.sample} of your audience, with their own recommendations. "
            "Who they are is never shown."
        )
    return JsonResponse(
        {
            "title": preview.message.title,
            "body": preview.message.body,
            "products": [
                {"title": p.title, "price": f"{p.price:.2f}" if p.price is not None else ""} for p in preview.products
            ],
            "sample": preview.sample,
            "samples": preview.samples,
            "note": note,
        }
    )


# ------------------------------------------------------------------------------------------------ review, launch


def _person(request: HttpRequest, actor: str) -> str:
    """A colleague's username for an actor like "user:12"; API keys and the platform by what they are."""
    kind, _, ident = actor.partition(":")
    if kind == "user" and ident.isdigit():
        member = request.portal.merchant.memberships.filter(user_id=int(ident)).select_related("user").first()
        return member.user.get_username() if member else "a former colleague"
    if kind == "apikey":
        return "an API key"
    return "the platform" if actor else ""


@merchant_view()
def campaign_detail(request: HttpRequest, campaign_id: int) -> HttpResponse:
    return _detail_page(request, _campaign_or_404(request, campaign_id))


def _detail_page(request: HttpRequest, campaign: Campaign, *, refused_status: int | None = None) -> HttpResponse:
    """The campaign's page; `refused_status` when it answers a refused form of its own (the launch's)."""
    context = {
        "campaign": campaign,
        "badge": STATUS_BADGE.get(campaign.status, ""),
        "include": list(campaign.include_segments.all()),
        "exclude": list(campaign.exclude_segments.all()),
        "progress": campaign_progress(campaign),
        "phase_label": PHASE_LABEL.get(campaign.phase, ""),
        "finished": campaign.status in FINISHED_STATUSES,
        "min_audience": settings.MIN_AUDIENCE,
        "control_percent": (campaign.control_share * 100).normalize(),
        "launched_by": _person(request, campaign.launched_by),
        "state": campaign_state(campaign),
        "time_zone": campaign.merchant.time_zone,
        "recurrence_text": recurrence_describe(campaign.recurrence) if campaign.recurrence else "",
        "variants": list(campaign.variants.all()),
    }
    if campaign.status == CampaignStatus.DRAFT:
        try:
            reach = audience_precheck(campaign)
        except SnapshotUnreadable as exc:  # logged for the operator where it was found
            reach = None
            context["reach_error"] = _unreadable_segment_message(context, exc)
        context["reach"] = (
            None
            if reach is None
            else release_figures(
                merchant_id=campaign.merchant_id,
                figures=[(campaign_subject(campaign.pk, "audience"), reach)],
                precision=CAMPAIGN_PRECISION,
            )[0]
        )
        context["reach_too_small"] = reach is not None and reach < settings.MIN_AUDIENCE
        try:
            sample = max(1, min(int(request.GET.get("sample", "1")), PREVIEW_SAMPLES))
        except ValueError:
            sample = 1
        preview = message_preview(
            merchant_id=campaign.merchant_id,
            store_name=campaign.merchant.name,
            title_template=campaign.title_template,
            body_template=campaign.body_template,
            coupon_code=campaign.coupon_code,
            discount_percent=campaign.discount_percent,
            personalised_products=campaign.personalised_products,
            segment_ids=[s.pk for s in context["include"]],
            sample=sample,
        )
        constants = campaign_constants(
            store_name=campaign.merchant.name,
            coupon_code=campaign.coupon_code,
            discount_percent=campaign.discount_percent,
        )
        context["preview"] = {
            "title": preview.message.title,
            "body": preview.message.body,
            "products": preview.products,
            "sample": preview.sample,
            "samples": range(1, preview.samples + 1),
            # The other variants, as the same sample consumer would get them.
            "variants": [
                (
                    v.letter,
                    message_render(
                        title_template=v.title_template,
                        body_template=v.body_template,
                        constants=constants,
                        products=preview.products,
                    ),
                )
                for v in context["variants"][1:]
            ],
        }
        context["test_inbox"] = bool(settings.CAMPAIGN_TEST_INBOX_PSEUDONYM)
        try:
            forecast = _forecast_pick(request, campaign)
        except NotFound as exc:  # a campaign to learn from that is not the merchant's completed one
            raise Http404(exc.message) from exc
        context["forecast"] = forecast
        status = forecast.get("status", 200)
    else:
        context["frozen"] = frozen_forecast_view(campaign)
        status = 200
    status = refused_status or status
    return page(request, "portal/campaigns/detail.html", context, section="campaigns", status=status)


def _unreadable_segment_message(context: dict, exc: SnapshotUnreadable) -> str:
    names = {s.pk: s.name for s in context["include"] + context["exclude"]}
    name = names.get(exc.segment_id or 0)
    if name is None:
        return exc.message
    return f"The members of the segment “{name}” could not be read; refresh it to rebuild them."


def _like_name(request: HttpRequest, campaign_id: int | None) -> str:
    if campaign_id is None:
        return ""
    name = campaigns_for_merchant(request.portal.merchant).filter(pk=campaign_id).values_list("name", flat=True)
    return next(iter(name), "a campaign since deleted")


LIKE_NOT_AN_ID = "The campaign to learn from must be given by its id."


def _forecast_pick(request: HttpRequest, campaign: Campaign) -> dict:
    """The campaigns a forecast may learn from and the merchant's pick among them (?like=; empty, as the form's
    "automatic" sends it: None, the most similar). Cheap: the page renders with these at once and its script
    fetches the forecast itself from campaign_forecast_fragment, which trains the model.

    The pick follows the card's and the API's rule: another merchant's, a missing or an unfinished campaign is a
    404 (NotFound), as a missing object is; text that is no id leaves the card saying so (`refused`, a 400). The
    merchant's own completed campaign that is not among the most recent candidates is still theirs to pick: it
    joins the list, so the page shows what the card learns from."""
    candidates = forecast_candidates(merchant_id=campaign.merchant_id, exclude_campaign_id=campaign.pk)
    url = reverse("portal:campaign_forecast", kwargs={"campaign_id": campaign.pk})
    raw = request.GET.get("like", "")
    if not raw:
        return {"candidates": candidates, "picked": None, "url": url}
    picked = id_from_text(raw)
    if picked is None:
        return {"candidates": candidates, "picked": None, "url": url, "refused": LIKE_NOT_AN_ID, "status": 400}
    if picked not in {c.pk for c in candidates}:
        like = forecast_like_campaign(merchant_id=campaign.merchant_id, campaign_id=picked)
        candidates = [*candidates, like]
    return {"candidates": candidates, "picked": picked, "url": f"{url}?like={picked}"}


@require_GET
@merchant_view(json=True)
def campaign_forecast_fragment(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """The review step's forecast card body (an HTML fragment the campaign page fetches): released figures,
    learned from the campaign picked (?like=; one that is not the merchant's own completed campaign is a 404, as
    in the API) or the most similar completed one, or the service's refusal in plain words. Viewing it again
    spends no budget: the same figures are the same releases (privacy.release_figures), and the forecast stays the
    same all day (campaigns.uplift.scoring_moment)."""
    campaign = _campaign_or_404(request, campaign_id)
    # The service checks the pick and reads the candidates itself when there is none: reading them here too (as
    # the page does, to offer them) would be the same read twice.
    raw = request.GET.get("like")
    picked = id_from_text(raw)
    # As the API, whose schema gives `like` as an id: text that is no id, and an empty one, is a 400, never quietly
    # the automatic choice. The automatic choice is no `like` at all (the page asks for it so).
    if raw is not None and picked is None:
        refused = {"refused": LIKE_NOT_AN_ID}
        return render(request, "portal/campaigns/_forecast.html", {"forecast": refused}, status=400)
    shown: dict = {"picked": picked, "min_audience": settings.MIN_AUDIENCE}
    try:
        forecast = campaign_forecast(campaign=campaign, like_campaign_id=picked)
    except NotFound as exc:
        # Another merchant's, a missing or an unfinished campaign to learn from: a 404, as a missing campaign
        # is, and as the API answers; never a forecast learned from another campaign than the one asked for.
        raise Http404(exc.message) from exc
    except DomainError as exc:
        shown.update(refused=exc.message, refused_code=exc.code)  # the code picks the hint under the message
    else:
        shown.update(
            incremental=forecast.incremental,
            low=forecast.low,
            high=forecast.high,
            audience=forecast.audience,
            chosen_by=forecast.chosen_by,
            like_name=_like_name(request, forecast.like_campaign_id),
        )
    return render(request, "portal/campaigns/_forecast.html", {"forecast": shown})


def frozen_forecast_view(campaign: Campaign) -> dict | None:
    """The forecast frozen at launch, for the campaign page and the report (released figures, as stored)."""
    frozen = campaign.forecast
    if frozen is None:
        return {"pending": True} if forecast_being_made(campaign) else None
    if frozen.get("refused"):
        return {"refused": frozen.get("reason", "")}
    like = frozen.get("like_campaign_id")
    name = campaigns_for_merchant(campaign.merchant_id).filter(pk=like).values_list("name", flat=True)
    return {
        "incremental": frozen["incremental_conversions"],
        "low": frozen["incremental_low"],
        "high": frozen["incremental_high"],
        "chosen_by": frozen.get("chosen_by", ""),
        "like_name": next(iter(name), "a campaign since deleted"),
        "made_at": datetime.fromisoformat(frozen["made_at"]) if frozen.get("made_at") else None,
    }


@require_POST
@merchant_view(Capability.MANAGE_CAMPAIGNS)
def campaign_launch_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = _campaign_or_404(request, campaign_id)
    like = request.POST.get("like", "")
    picked = id_from_text(like)
    if like and picked is None:
        # As on the review page and the forecast card: text that is no id is refused, never quietly the automatic
        # choice (the form sends no `like`, or an empty one, for that), and nothing is launched.
        messages.error(request, f"Not launched: {LIKE_NOT_AN_ID}")
        return _detail_page(request, campaign, refused_status=400)
    try:
        campaign_launch(
            campaign=campaign,
            actor=_actor(request),
            forecast_like_campaign_id=picked,
        )
    except DomainError as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        extra = " ".join(str(m) for ms in details.values() if isinstance(ms, list) for m in ms)
        messages.error(request, f"Not launched: {exc.message} {extra}".strip())
    else:
        messages.success(request, f"“{campaign.name}” launched.")
    return redirect("portal:campaign_detail", campaign_id=campaign.pk)


@require_POST
@merchant_view(Capability.MANAGE_CAMPAIGNS)
def campaign_test_send_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = _campaign_or_404(request, campaign_id)
    try:
        sample = max(1, min(int(request.POST.get("sample", "1")), PREVIEW_SAMPLES))
    except ValueError:
        sample = 1
    try:
        campaign_test_send(campaign=campaign, actor=_actor(request), sample=sample)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Test message sent to the test inbox. It is not counted in any report.")
    return redirect(reverse("portal:campaign_detail", kwargs={"campaign_id": campaign.pk}) + f"?sample={sample}")


@require_POST
@merchant_view(Capability.EDIT_SEGMENTS)
def campaign_response_segment_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """ "Make a segment of those who clicked but did not buy" (or another response) from the report."""
    campaign = _campaign_or_404(request, campaign_id)
    response = request.POST.get("response", "")
    try:
        segment = response_segment_create(
            campaign_id=campaign.pk, merchant_id=request.portal.merchant.pk, response=response, actor=_actor(request)
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("portal:campaign_report", campaign_id=campaign.pk)
    messages.success(request, f"Segment “{segment.name}” made: those who {RESPONSES[response].label}.")
    return redirect("portal:segment_detail", segment_id=segment.pk)


@require_POST
@merchant_view(Capability.EDIT_SEGMENTS)
def campaign_persuadables_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """ "Persuadables for a campaign like this one", from a completed campaign's report: the top share or the top N
    of the store's consumers by predicted uplift (campaigns.uplift.persuadables_create, as the API)."""
    campaign = _campaign_or_404(request, campaign_id)
    name = request.POST.get("name", "").strip()[:200] or f"Persuadables like {campaign.name}"[:200]
    by, amount = request.POST.get("by", "share"), request.POST.get("amount", "").strip()
    back = reverse("portal:campaign_report", kwargs={"campaign_id": campaign.pk}) + "#persuadables-title"
    if (
        not (amount.isascii() and amount.isdigit())
        or len(amount) > 9
        or int(amount) < 1
        or (by == "share" and int(amount) > 100)
    ):
        messages.error(
            request,
            "Say how many: a whole percent from 1 to 100 for the top share, or a whole number of consumers.",
        )
        return redirect(back)
    try:
        segment = persuadables_create(
            campaign_id=campaign.pk,
            merchant_id=request.portal.merchant.pk,
            name=name,
            actor=_actor(request),
            size=int(amount) if by == "size" else None,
            share=int(amount) / 100 if by != "size" else None,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    messages.success(request, f"Segment “{segment.name}” made: the persuadables for a campaign like this one.")
    return redirect("portal:segment_detail", segment_id=segment.pk)


@require_POST
@merchant_view(Capability.MANAGE_CAMPAIGNS)
def campaign_cancel_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = _campaign_or_404(request, campaign_id)
    try:
        campaign_cancel(campaign=campaign, actor=_actor(request))
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"“{campaign.name}” cancelled: nothing more will be sent.")
    return redirect("portal:campaign_detail", campaign_id=campaign.pk)


@require_POST
@merchant_view(Capability.MANAGE_CAMPAIGNS)
def campaign_delete_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = _campaign_or_404(request, campaign_id)
    try:
        campaign_delete(campaign=campaign, actor=_actor(request))
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("portal:campaign_detail", campaign_id=campaign.pk)
    messages.success(request, f"Draft “{campaign.name}” deleted.")
    return redirect("portal:campaigns")


@require_GET
@merchant_view(json=True)
def campaign_progress_json(request: HttpRequest, campaign_id: int) -> JsonResponse:
    """Polled by the campaign page while a launch runs."""
    campaign = _campaign_or_404(request, campaign_id)
    progress = campaign_progress(campaign)
    return JsonResponse(
        {
            "status": campaign.status,
            "status_label": campaign.get_status_display(),
            "phase": PHASE_LABEL.get(campaign.phase, ""),
            "heading": campaign_state(campaign)["heading"],
            "percent_written": progress.percent_written,
            "percent_dispatched": progress.percent_dispatched,
            "audience": progress.audience.display if progress.audience else "in progress",
            "dispatched": progress.dispatched.display if progress.dispatched else "in progress",
            "failure_reason": campaign.failure_reason,
            "finished": campaign.status in FINISHED_STATUSES,
            "report_url": reverse("portal:campaign_report", kwargs={"campaign_id": campaign.pk}),
        }
    )


# ------------------------------------------------------------------------------------------------ report


@merchant_view()
def campaign_report_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = _campaign_or_404(request, campaign_id)
    report = campaign_report_public(campaign)
    minimum = settings.MIN_AUDIENCE
    series = campaign.parent if campaign.parent_id else campaign
    daily = campaign_daily_public(campaign)
    daily_rows = [{"day": d.day, "figures": [d.figures[key] for key in DAILY_SERIES]} for d in daily]
    groups = []
    for key, label, shown in (("treatment", "Received it", report.treatment), ("control", "Held out", report.control)):
        groups.append(
            {
                "key": key,
                "label": label,
                "size": shown.size,
                "sent": shown.sent,
                "opened": shown.opened,
                "clicked": shown.clicked,
                "converted": shown.converted,
                "conversion_rate": None if shown.conversion_rate is None else percent(shown.conversion_rate, 1),
                "revenue": shown.revenue,
                "revenue_shown": None if shown.revenue.value is None else Decimal(shown.revenue.value) / 100,
                "revenue_per_consumer": shown.revenue_per_consumer,
            }
        )
    treatment, control = groups

    def hidden(count) -> str:
        return "hidden" if count.value is None else ""

    in_group = (
        None if report.treatment.size.suppressed else 1.0,
        None if report.control.size.suppressed else 1.0,
    )
    stages = [
        FunnelStage("In the group", in_group),
        FunnelStage("Sent", (report.treatment.share("sent"), None), (hidden(treatment["sent"]), "")),
        FunnelStage("Opened", (report.treatment.share("opened"), None), (hidden(treatment["opened"]), "")),
        FunnelStage("Clicked", (report.treatment.share("clicked"), None), (hidden(treatment["clicked"]), "")),
        FunnelStage(
            "Bought",
            (report.treatment.conversion_rate, report.control.conversion_rate),
            (hidden(treatment["converted"]), hidden(control["converted"])),
        ),
    ]
    uplift = report.uplift if report.uplift is not None and report.uplift.absolute is not None else None
    uplift_text = None
    if uplift is not None:
        uplift_text = {
            "absolute": f"{uplift.absolute * 100:+.1f} pp",
            "low": f"{uplift.ci_low * 100:+.1f}",
            "high": f"{uplift.ci_high * 100:+.1f} pp",
            "treatment_rate": percent(uplift.treatment_rate, 1),
            "control_rate": percent(uplift.control_rate, 1),
            "relative": f"{uplift.relative * 100:+.0f}%" if uplift.relative is not None else None,
            "p_value": f"{uplift.p_value:.3f}" if uplift.p_value is not None else None,
        }
    context = {
        "campaign": campaign,
        "report": report,
        "groups": groups,
        "funnel_chart": funnel_chart(stages, groups=["Received it", "Held out"], title="Funnel per group"),
        "uplift": uplift,
        "uplift_text": uplift_text,
        "uplift_chart": interval_chart(
            estimate=uplift.absolute if uplift else None,
            low=uplift.ci_low if uplift else None,
            high=uplift.ci_high if uplift else None,
            title="Uplift in conversion, with its 95% interval",
        ),
        "min_audience": minimum,
        "min_released": settings.CAMPAIGN_REPORT_MIN_RELEASED,
        "currency": campaign.merchant.currency,
        "time_zone": campaign.merchant.time_zone,
        "variants": _variant_rows(campaign),
        "series": series,
        "daily": daily_rows,
        "daily_chart": line_chart(
            [(datetime.combine(d.day, time(12), UTC), d.figures[(Group.TREATMENT, "purchased")].value) for d in daily],
            title="Consumers who bought, per day (received it)",
            empty_message="Figures appear here the day after each day ends.",
        ),
        "winner": series.winner_variant and VARIANT_LETTERS[series.winner_variant - 1],
        "comparison": report.forecast,
        "frozen": frozen_forecast_view(campaign),
        "measured_text": _measured_text(report.forecast),
        "can_learn": campaign.status == CampaignStatus.COMPLETED,
    }
    return page(request, "portal/campaigns/report.html", context, section="campaigns")


def _measured_text(comparison) -> dict | None:
    """The measured incremental conversions in whole purchases (from released figures only)."""
    if comparison is None or comparison.measured is None:
        return None
    return {
        "measured": f"{round(comparison.measured):+,}",
        "low": f"{round(comparison.measured_low):+,}",
        "high": f"{round(comparison.measured_high):+,}",
    }


def _variant_rows(campaign: Campaign) -> list[dict]:
    rows = []
    for v in campaign_variants_report_public(campaign):
        versus = v.versus_first
        rows.append(
            {
                "variant": v,
                "conversion_rate": None if v.conversion_rate is None else percent(v.conversion_rate, 1),
                "versus": None
                if versus is None or versus.absolute is None
                else {
                    "absolute": f"{versus.absolute * 100:+.1f} pp",
                    "interval": f"{versus.ci_low * 100:+.1f} to {versus.ci_high * 100:+.1f} pp",
                },
            }
        )
    return rows


@require_GET
@merchant_view()
def campaign_report_csv(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """The report as CSV: released figures only, as the report page shows them."""
    campaign = _campaign_or_404(request, campaign_id)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-report.csv"'
    csv.writer(response).writerows(campaign_report_csv_rows(campaign))
    return response
