"""Write operations on campaigns: the merchant's create, edit, launch, cancel; recurring occurrences and resuming
stalled runs. The operator's inbox, tracking and the merchant's audience export live in `inbox.py`, `tracking.py`
and `export.py`."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from merchants.errors import Conflict, Invalid, Unprocessable
from merchants.models import Merchant
from privacy.audit import audit_record
from privacy.models import Purpose
from segments.models import Segment
from tags.selectors import reachable_bitmap

from .activation import ERROR_CANCELLED, campaign_run_lock, campaign_stop_pending
from .basis import ActivationRefused, audience_too_small_reason, direct_marketing_basis, personalisation_basis_check
from .messages import template_problems
from .models import (
    FINISHED_STATUSES,
    MAX_VARIANTS,
    VARIANT_LETTERS,
    Campaign,
    CampaignStatus,
    CampaignVariant,
    Channel,
    DeliveryStatus,
    ScheduleKind,
)
from .schedule import crontab_parse, duration_text, recurrence_min_gap_minutes
from .selectors import campaign_segments_audience, forecast_like_campaign
from .webhook import channel_problem
from .winner import series_winner_pick

logger = logging.getLogger("dmp.campaigns")

EDITABLE_FIELDS = (
    "name",
    "title_template",
    "body_template",
    "coupon_code",
    "discount_percent",
    "channel",
    "schedule_kind",
    "scheduled_at",
    "recurrence",
    "frequency_cap",
    "frequency_window_days",
    "control_share",
    "personalised_products",
    "attribution_window_days",
    "auto_winner",
)
SEGMENT_FIELDS = ("include_segment_ids", "exclude_segment_ids")
COUPON_CODE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def _invalid(problems: dict[str, list[str]], message: str = "The campaign is not valid.") -> Invalid:
    return Invalid(message, code="invalid", details=problems)


def _segments_for(merchant: Merchant):
    return Segment.objects.filter(merchant=merchant)


def campaign_problems(*, merchant: Merchant, values: dict[str, Any], now: datetime | None = None) -> dict[str, list]:
    """Every problem with a campaign's settings, per field; empty when it may be saved as is."""
    now = now or timezone.now()
    problems: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        problems.setdefault(field, []).append(message)

    include = list(dict.fromkeys(values.get("include_segment_ids") or []))
    exclude = list(dict.fromkeys(values.get("exclude_segment_ids") or []))
    if not include:
        add("include_segment_ids", "Include at least one of your segments.")
    known = set(_segments_for(merchant).filter(pk__in=include + exclude).values_list("pk", flat=True))
    for field, ids in (("include_segment_ids", include), ("exclude_segment_ids", exclude)):
        for segment_id in ids:
            if segment_id not in known:  # another merchant's segment is "not found" too
                add(field, f"Segment {segment_id} was not found.")
    for segment_id in sorted(set(include) & set(exclude)):
        add("exclude_segment_ids", f"Segment {segment_id} is both included and excluded.")

    coupon = values.get("coupon_code") or ""
    if coupon and not COUPON_CODE.match(coupon):
        add("coupon_code", "A coupon code is 1 to 40 letters, digits, '-' or '_'.")
    n_products = values.get("personalised_products", 3)
    for field in ("title_template", "body_template"):
        for problem in template_problems(
            values.get(field) or "",
            personalised_products=n_products,
            coupon_code=coupon,
            discount_percent=values.get("discount_percent"),
        ):
            add(field, problem)
    if not (values.get("title_template") or "").strip():
        add("title_template", "A message needs a title.")
    for problem in variants_problems(
        values.get("variants"),
        personalised_products=n_products,
        coupon_code=coupon,
        discount_percent=values.get("discount_percent"),
    ):
        add("variants", problem)

    channel_refused = channel_problem(values.get("channel") or Channel.INBOX)
    if channel_refused:
        add("channel", channel_refused)

    kind = values.get("schedule_kind", ScheduleKind.NOW)
    scheduled_at, recurrence = values.get("scheduled_at"), (values.get("recurrence") or "").strip()
    if kind == ScheduleKind.AT:
        if scheduled_at is None:
            add("scheduled_at", "Say when to send it: a campaign sent at a set time needs that time.")
        elif scheduled_at <= now:
            add("scheduled_at", "The send time has passed; choose a time in the future.")
    if kind == ScheduleKind.RECURRING:
        if not recurrence:
            add(
                "recurrence",
                "Say how often to send it, e.g. every Monday at 09:00 (crontab '0 9 * * 1', in your time zone).",
            )
        else:
            try:
                gap = recurrence_min_gap_minutes(recurrence)
            except ValueError as exc:
                add("recurrence", str(exc))
            else:
                minimum = settings.CAMPAIGN_MIN_RECURRENCE_MINUTES
                if gap is not None and gap < minimum:
                    add(
                        "recurrence",
                        f"This schedule sends every {duration_text(gap)}; runs must be at least "
                        f"{duration_text(minimum)} apart. Choose a daily, weekly or monthly schedule.",
                    )
    if kind != ScheduleKind.AT and scheduled_at is not None:
        add("scheduled_at", "A send time applies only to campaigns sent at a set time.")
    if kind != ScheduleKind.RECURRING and recurrence:
        add("recurrence", "A repeat schedule applies only to recurring campaigns.")
    return problems


def variants_problems(
    variants: Any, *, personalised_products: int, coupon_code: str, discount_percent: Any
) -> list[str]:
    """Problems with an A/B/n test's messages, in prose naming the variant (A, B, ...); empty when valid."""
    if variants in (None, []):
        return []
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        return ["Variants are a list of messages, each with a title, a message and a share."]
    if not 2 <= len(variants) <= MAX_VARIANTS:
        return [f"An A/B test needs 2 to {MAX_VARIANTS} message variants; got {len(variants)}."]
    problems: list[str] = []
    shares: list[int] = []
    for letter, variant in zip(VARIANT_LETTERS, variants, strict=False):
        share = variant.get("share")
        if isinstance(share, bool) or not isinstance(share, int) or not 1 <= share <= 99:
            problems.append(f"Variant {letter}: its share is a whole percentage from 1 to 99.")
        else:
            shares.append(share)
        for key, label in (("title_template", "title"), ("body_template", "message")):
            text = variant.get(key)
            if not isinstance(text, str) or not text.strip():
                problems.append(f"Variant {letter} needs a {label}.")
                continue
            limit = 200 if key == "title_template" else 2000
            if len(text) > limit:
                problems.append(f"Variant {letter}: its {label} is longer than {limit} characters.")
            for problem in template_problems(
                text,
                personalised_products=personalised_products,
                coupon_code=coupon_code,
                discount_percent=discount_percent,
            ):
                problems.append(f"Variant {letter}, {label}: {problem}")
    if len(shares) == len(variants) and sum(shares) != 100:
        problems.append(f"The variants' shares add up to {sum(shares)}%; they must add up to 100%.")
    return problems


def _variants_save(campaign: Campaign, variants: list[dict] | None) -> None:
    CampaignVariant.objects.filter(campaign=campaign).delete()
    CampaignVariant.objects.bulk_create(
        [
            CampaignVariant(
                campaign=campaign,
                position=position,
                title_template=v["title_template"],
                body_template=v["body_template"],
                share=v["share"],
            )
            for position, v in enumerate(variants or [], start=1)
        ]
    )


def _with_variant_a(values: dict[str, Any]) -> dict[str, Any]:
    """With variants, the campaign's own title and message are variant A's."""
    variants = values.get("variants")
    if isinstance(variants, list) and variants and isinstance(variants[0], dict):
        first = variants[0]
        values = {**values}
        for key in ("title_template", "body_template"):
            if isinstance(first.get(key), str):
                values[key] = first[key]
    return values


def _apply(campaign: Campaign, values: dict[str, Any]) -> None:
    for name in EDITABLE_FIELDS:
        if name in values:
            setattr(campaign, name, values[name])
    campaign.coupon_code = campaign.coupon_code or ""
    campaign.recurrence = (campaign.recurrence or "").strip()


def _full_clean(campaign: Campaign) -> None:
    try:
        campaign.full_clean(exclude=["merchant", "periodic_task", "parent"])
    except ValidationError as exc:
        raise _invalid(exc.message_dict) from exc


def _values_of(campaign: Campaign) -> dict[str, Any]:
    values = {name: getattr(campaign, name) for name in EDITABLE_FIELDS}
    values["include_segment_ids"] = list(campaign.include_segments.values_list("pk", flat=True))
    values["exclude_segment_ids"] = list(campaign.exclude_segments.values_list("pk", flat=True))
    values["variants"] = [
        {"title_template": v.title_template, "body_template": v.body_template, "share": v.share}
        for v in campaign.variants.order_by("position")
    ]
    return values


def _segments_lock(merchant: Merchant, values: dict[str, Any]) -> None:
    """Lock the segments a campaign is about to name, and make sure they still exist.

    segment_delete locks the segment it deletes and refuses while a campaign names it, so between the two one
    waits for the other: a segment is never deleted from under a campaign being saved.
    """
    wanted = {int(i) for field in SEGMENT_FIELDS for i in (values.get(field) or [])}
    found = set(_segments_for(merchant).select_for_update().filter(pk__in=wanted).values_list("pk", flat=True))
    problems: dict[str, list[str]] = {}
    for field in SEGMENT_FIELDS:
        for segment_id in values.get(field) or []:
            if int(segment_id) not in found:
                problems.setdefault(field, []).append(f"Segment {segment_id} was not found.")
    if problems:
        raise _invalid(problems)


def campaign_create(*, merchant: Merchant, actor: str, **values) -> Campaign:
    values = _with_variant_a(values)
    problems = campaign_problems(merchant=merchant, values=values)
    if problems:
        raise _invalid(problems)
    campaign = Campaign(merchant=merchant)
    _apply(campaign, values)
    _full_clean(campaign)
    with transaction.atomic():
        _segments_lock(merchant, values)
        campaign.save()
        campaign.include_segments.set(values.get("include_segment_ids") or [])
        campaign.exclude_segments.set(values.get("exclude_segment_ids") or [])
        _variants_save(campaign, values.get("variants"))
    logger.info("campaign.created", extra={"fields": {"campaign_id": campaign.pk, "merchant_id": merchant.pk}})
    return campaign


def _edit_conflict(campaign: Campaign) -> Conflict:
    return Conflict(
        f"Only draft campaigns can be changed; this one is {campaign.status}. "
        + (
            "Cancel it and create a new one."
            if campaign.status not in FINISHED_STATUSES
            else "A finished campaign is kept as it was sent."
        ),
        code="invalid_transition",
        details={"status": campaign.status},
    )


def campaign_update(*, campaign: Campaign, actor: str, **changes) -> Campaign:
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status != CampaignStatus.DRAFT:
            raise _edit_conflict(campaign)
        values = _with_variant_a({**_values_of(campaign), **changes})
        if values.get("schedule_kind") != ScheduleKind.AT and "scheduled_at" not in changes:
            values["scheduled_at"] = None
        if values.get("schedule_kind") != ScheduleKind.RECURRING and "recurrence" not in changes:
            values["recurrence"] = ""
        problems = campaign_problems(merchant=campaign.merchant, values=values)
        if problems:
            raise _invalid(problems)
        _apply(campaign, values)
        _full_clean(campaign)
        if any(field in changes for field in SEGMENT_FIELDS):
            _segments_lock(campaign.merchant, values)
        campaign.save()
        if "include_segment_ids" in changes:
            campaign.include_segments.set(values["include_segment_ids"])
        if "exclude_segment_ids" in changes:
            campaign.exclude_segments.set(values["exclude_segment_ids"] or [])
        if "variants" in changes:
            _variants_save(campaign, values["variants"])
    return campaign


def campaign_delete(*, campaign: Campaign, actor: str) -> None:
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status != CampaignStatus.DRAFT:
            raise Conflict(
                f"Only draft campaigns can be deleted; this one is {campaign.status} and is kept as a record"
                + (" (cancel it instead)." if campaign.status not in FINISHED_STATUSES else "."),
                code="invalid_transition",
                details={"status": campaign.status},
            )
        campaign.delete()


def _launch_conflict(campaign: Campaign) -> Conflict:
    if campaign.status == CampaignStatus.SCHEDULED:
        message = "The campaign has already been launched and is scheduled."
    elif campaign.status == CampaignStatus.RUNNING:
        message = "The campaign is already running."
    else:
        message = f"The campaign is {campaign.status} and cannot be launched again; create a new one."
    return Conflict(message, code="invalid_transition", details={"status": campaign.status})


def audience_precheck(campaign: Campaign) -> int | None:
    """The audience from the segments' latest snapshots (without frequency caps), or None if one has none yet.

    Lets a launch refuse an obviously too small audience at once; the activation re-checks on fresh snapshots.
    """
    audience = campaign_segments_audience(campaign=campaign)
    if audience is None:
        return None
    return len(audience & reachable_bitmap(with_offer=campaign.has_offer))  # privacy.messaging's rule


def _start_activation(campaign_id: int) -> None:
    from .tasks import campaign_activate_task

    try:
        campaign_activate_task.delay(campaign_id)
    except Exception:
        # The launch itself is committed: a broker outage (or, in the embedded mode, an error in the
        # eagerly run task, already recorded on the campaign) must not turn it into a failed request.
        # campaigns.resume_stalled starts launched campaigns that never started.
        logger.exception("campaign.enqueue_failed", extra={"fields": {"campaign_id": campaign_id}})


def _enqueue_activation(campaign_id: int) -> None:
    transaction.on_commit(lambda: _start_activation(campaign_id))


def _start_forecast_freeze(campaign_id: int, like_campaign_id: int | None) -> None:
    from .tasks import campaign_forecast_freeze_task

    try:
        campaign_forecast_freeze_task.delay(campaign_id, like_campaign_id)
    except Exception:
        # The forecast is a comparison for the report, never a condition of sending: a broker outage (or an error
        # of the eagerly run task) leaves the campaign launched, and its report says no forecast was frozen.
        logger.exception("campaign.forecast_enqueue_failed", extra={"fields": {"campaign_id": campaign_id}})


def _schedule_periodic(campaign: Campaign) -> None:
    """'at' campaigns get a one-off clocked beat entry, recurring ones a crontab entry in the merchant's zone."""
    name = f"campaign:{campaign.pk}"
    PeriodicTask.objects.filter(name=name).delete()
    if campaign.schedule_kind == ScheduleKind.AT:
        clocked = ClockedSchedule.objects.create(clocked_time=campaign.scheduled_at)
        task = PeriodicTask.objects.create(
            name=name,
            task="campaigns.activate",
            clocked=clocked,
            one_off=True,
            args=json.dumps([campaign.pk]),
            description=f"Campaign {campaign.pk} at its scheduled time",
        )
    else:
        schedule, _ = CrontabSchedule.objects.get_or_create(
            **crontab_parse(campaign.recurrence), timezone=campaign.merchant.time_zone
        )
        task = PeriodicTask.objects.create(
            name=name,
            task="campaigns.occurrence",
            crontab=schedule,
            args=json.dumps([campaign.pk]),
            description=f"Recurring campaign {campaign.pk}",
        )
    campaign.periodic_task = task


def campaign_launch(*, campaign: Campaign, actor: str, forecast_like_campaign_id: int | None = None) -> Campaign:
    """draft → scheduled. 'now' campaigns start at once, 'at' ones at their time, recurring ones on each beat.

    After commit the forecast of incremental conversions is frozen on the campaign (campaigns.uplift
    .campaign_forecast_freeze, a task, before the activation's), learned from `forecast_like_campaign_id` (one of
    the merchant's completed campaigns; another merchant's or a missing one is a NotFound) or else from the most
    similar completed campaign."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().select_related("merchant").get(pk=campaign.pk)
        if campaign.status != CampaignStatus.DRAFT:
            raise _launch_conflict(campaign)
        if forecast_like_campaign_id is not None:
            forecast_like_campaign(merchant_id=campaign.merchant_id, campaign_id=forecast_like_campaign_id)
        problems = campaign_problems(merchant=campaign.merchant, values=_values_of(campaign))
        if problems:
            raise Unprocessable("The campaign cannot be launched as it is.", code="invalid_campaign", details=problems)
        try:
            direct_marketing_basis()
            personalisation_basis_check(campaign)
        except ActivationRefused as exc:
            raise Conflict(exc.reason, code=exc.code) from exc
        if campaign.schedule_kind == ScheduleKind.NOW:
            estimate = audience_precheck(campaign)
            if estimate is not None and estimate < settings.MIN_AUDIENCE:
                raise Unprocessable(audience_too_small_reason(), code="audience_too_small")
        campaign.status = CampaignStatus.SCHEDULED
        campaign.launched_at = timezone.now()
        campaign.launched_by = actor
        launched_id = campaign.pk
        if campaign.schedule_kind == ScheduleKind.NOW:
            _enqueue_activation(campaign.pk)
        else:
            _schedule_periodic(campaign)
        # After the activation's: on-commit callbacks run in order, and in embedded mode (eager tasks) the
        # forecast's training would otherwise run before the send starts.
        transaction.on_commit(lambda: _start_forecast_freeze(launched_id, forecast_like_campaign_id))
        campaign.save()
    logger.info("campaign.launch_requested", extra={"fields": {"campaign_id": campaign.pk}})
    return campaign


def campaign_cancel(*, campaign: Campaign, actor: str) -> Campaign:
    """Stop a campaign: nothing more is sent, unsent and unread messages are withdrawn."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status in FINISHED_STATUSES:
            raise Conflict(
                f"The campaign is already {campaign.status} and cannot be cancelled.",
                code="invalid_transition",
                details={"status": campaign.status},
            )
        was = campaign.status
        campaign.status = CampaignStatus.CANCELLED
        campaign.cancelled_at = timezone.now()
        if campaign.periodic_task_id:
            PeriodicTask.objects.filter(pk=campaign.periodic_task_id).delete()
            campaign.periodic_task = None
        campaign.save()
        withdrawn = campaign_stop_pending(
            campaign_id=campaign.pk,
            status=DeliveryStatus.WITHDRAWN,
            reason=ERROR_CANCELLED,
            include_unread_inbox=True,
        )
        if was == CampaignStatus.RUNNING:
            audit_record(
                actor=actor,
                action="campaign.cancelled",
                merchant_id=campaign.merchant_id,
                purpose=Purpose.DIRECT_MARKETING,
                object_type="Campaign",
                object_id=campaign.pk,
                counts={"withdrawn": withdrawn},
            )
    campaign.refresh_from_db()
    return campaign


def campaign_occurrence_create(*, series_id: int, at: datetime) -> Campaign | None:
    """One run of a recurring series: a child campaign with its own audience and deliveries."""
    series = Campaign.objects.filter(pk=series_id).select_related("merchant").first()
    if series is None or series.status != CampaignStatus.SCHEDULED or not series.is_series:
        return None
    at = at.replace(second=0, microsecond=0)
    if series.auto_winner and series.winner_variant is None:
        series_winner_pick(series_id=series.pk, now=timezone.now())  # this run sends the winner, once there is one
    try:
        with transaction.atomic():
            child = Campaign.objects.create(
                merchant=series.merchant,
                name=f"{series.name} · {at:%Y-%m-%d %H:%M}"[:200],
                parent=series,
                occurrence_at=at,
                status=CampaignStatus.SCHEDULED,
                launched_at=timezone.now(),
                launched_by=series.launched_by,
                **{
                    name: getattr(series, name)
                    for name in EDITABLE_FIELDS
                    if name not in ("name", "scheduled_at", "recurrence")
                },
            )
            child.include_segments.set(series.include_segments.all())
            child.exclude_segments.set(series.exclude_segments.all())
            _variants_save(child, _values_of(series)["variants"])
            _enqueue_activation(child.pk)
    except IntegrityError:  # this minute's occurrence exists already (beat fired twice)
        return None
    return child


def campaigns_resume_stalled(*, min_idle_s: float) -> int:
    """Re-enqueue running campaigns that nobody is working on (a killed worker), and lost starts.

    A campaign counts as abandoned when no worker holds its run lock and its heartbeat is older
    than min_idle_s. Bumping the run token makes any older queued step skip itself.
    """
    from .tasks import campaign_activate_task

    cutoff = timezone.now() - timedelta(seconds=min_idle_s)
    to_step: list[tuple[int, int]] = []
    running = Campaign.objects.filter(status=CampaignStatus.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    )
    for campaign_id in running.values_list("pk", flat=True):
        with campaign_run_lock(campaign_id) as free:
            if not free:
                continue
            with transaction.atomic():
                if Campaign.objects.filter(pk=campaign_id, status=CampaignStatus.RUNNING).update(
                    run_token=F("run_token") + 1, heartbeat_at=timezone.now()
                ):
                    token = Campaign.objects.filter(pk=campaign_id).values_list("run_token", flat=True).get()
                    to_step.append((campaign_id, token))
    lost_starts = list(
        Campaign.objects.filter(status=CampaignStatus.SCHEDULED, launched_at__lt=cutoff)
        .filter(Q(schedule_kind=ScheduleKind.NOW) | Q(parent__isnull=False))
        .values_list("pk", flat=True)
    )
    for campaign_id, token in to_step:
        logger.info("campaign.resumed", extra={"fields": {"campaign_id": campaign_id, "run_token": token}})
        campaign_activate_task.delay(campaign_id, token, 0)
    for campaign_id in lost_starts:
        campaign_activate_task.delay(campaign_id)
    return len(to_step) + len(lost_starts)
