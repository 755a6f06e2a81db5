"""Reads: a merchant's journeys, and their report (per-step counts, per-variant counts of the current version's
send steps, conversions against the holdout, uplift), every number released through
privacy.services.release_figures under `journey:<id>:step:<n>:<measure>`,
`journey:<id>:version:<v>:step:<n>:variant:<p>:<measure>` and `journey:<id>:group:<g>:<measure>`; rates and the
uplift are computed from released numbers only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Exists, ExpressionWrapper, F, OuterRef, Q, QuerySet
from django.db.models import DateTimeField as DateTimeOutput

from campaigns.models import TrackingKind
from campaigns.selectors import uplift_from_released
from campaigns.stats import Uplift
from consumers.models import Event, EventType
from merchants.models import Merchant
from privacy.release import ReleasedCount, released_rate
from privacy.services import release_figures

from .definition import StepView, send_variants, step_views, variant_letter
from .models import (
    EnrolmentState,
    Journey,
    JourneyEnrolment,
    JourneySend,
    JourneyStepRun,
    JourneyStepWinner,
    JourneyTrackingEvent,
    SendStatus,
)

STEP_MEASURES = ("reached", "sent", "waiting", "failed", "opened", "clicked", "converted")
VARIANT_MEASURES = ("sent", "opened", "clicked", "converted")
MESSAGE_MEASURES = ("sent", "failed", "opened", "clicked", "converted")
GROUPS = ("treatment", "holdout")
GROUP_MEASURES = ("size", "converted")


def journeys_for_merchant(merchant: Merchant | int) -> QuerySet[Journey]:
    merchant_id = merchant if isinstance(merchant, int) else merchant.pk
    return Journey.objects.filter(merchant_id=merchant_id).select_related("current_version", "trigger_segment")


def journey_subject(journey_id: int, measure: str, *, step: int | None = None, group: str | None = None) -> str:
    if step is not None:
        return f"journey:{journey_id}:step:{step}:{measure}"
    return f"journey:{journey_id}:group:{group}:{measure}"


def variant_subject(journey_id: int, version: int, step: int, position: int, measure: str) -> str:
    return f"journey:{journey_id}:version:{version}:step:{step}:variant:{position}:{measure}"


def journey_message_funnel(journey: Journey, *, by_variant: bool) -> dict[tuple, dict[str, int]]:
    """Exact counts of the journey's messages per step (or per (version number, step, variant) of the variant
    steps): sent, failed (the webhook refused them), opened, clicked (tracked once each) and converted: a sent
    message is converted when, within attribution_window_days after it, the operator tracked a conversion for it
    or the consumer made an ingested purchase from this merchant (the campaigns' rule)."""
    window_end = ExpressionWrapper(
        F("created_at") + timedelta(days=journey.attribution_window_days), output_field=DateTimeOutput()
    )
    purchases = Event.objects.filter(
        merchant_id=journey.merchant_id,
        event_type=EventType.PURCHASE,
        consumer_id=OuterRef("consumer_id"),
        occurred_at__gte=OuterRef("created_at"),
        occurred_at__lte=OuterRef("window_end"),
    )
    tracked = JourneyTrackingEvent.objects.filter(send_id=OuterRef("pk"))
    tracked_conversion = tracked.filter(
        kind=TrackingKind.CONVERTED, occurred_at__gte=OuterRef("created_at"), occurred_at__lte=OuterRef("window_end")
    )
    sends = JourneySend.objects.filter(journey=journey)
    keys = ["step"]
    if by_variant:
        sends = sends.filter(variant__isnull=False)
        keys = ["enrolment__version__number", "step", "variant"]
    sent = Q(status=SendStatus.SENT)
    rows = (
        sends.annotate(
            window_end=window_end,
            opened=Exists(tracked.filter(kind=TrackingKind.OPENED)),
            clicked=Exists(tracked.filter(kind=TrackingKind.CLICKED)),
            converted=Exists(purchases) | Exists(tracked_conversion),
        )
        .values(*keys)
        .annotate(
            sent_n=Count("pk", filter=sent),
            failed_n=Count("pk", filter=Q(status=SendStatus.FAILED)),
            opened_n=Count("pk", filter=sent & Q(opened=True)),
            clicked_n=Count("pk", filter=sent & Q(clicked=True)),
            converted_n=Count("pk", filter=sent & Q(converted=True)),
        )
        .order_by()
    )
    return {tuple(row[k] for k in keys): {m: row[f"{m}_n"] for m in MESSAGE_MEASURES} for row in rows}


def journey_exact_figures(journey: Journey) -> dict[str, int]:
    """The exact counts behind the report (for the release layer and privacy officers only)."""
    steps = journey.current_version.steps if journey.current_version else []
    figures: dict[str, int] = {}
    runs = dict(
        JourneyStepRun.objects.filter(journey=journey).values("step").annotate(n=Count("id")).values_list("step", "n")
    )
    messages = journey_message_funnel(journey, by_variant=False)
    waiting = dict(
        JourneyEnrolment.objects.filter(journey=journey, state=EnrolmentState.ACTIVE)
        .values("step")
        .annotate(n=Count("id"))
        .values_list("step", "n")
    )
    for index in range(len(steps)):
        figures[journey_subject(journey.pk, "reached", step=index)] = runs.get(index, 0) + waiting.get(index, 0)
        figures[journey_subject(journey.pk, "waiting", step=index)] = waiting.get(index, 0)
        figures[journey_subject(journey.pk, "sent", step=index)] = messages.get((index,), {}).get("sent", 0)
        if steps[index]["type"] != "send":
            continue  # what only messages have is released for send steps only (each release spends budget)
        for measure in MESSAGE_MEASURES:
            figures[journey_subject(journey.pk, measure, step=index)] = messages.get((index,), {}).get(measure, 0)
    version = journey.current_version
    if version is not None and any(step.get("variants") for step in steps):
        per_variant = journey_message_funnel(journey, by_variant=True)
        for index, step in enumerate(steps):
            for position in range(1, len(step.get("variants") or []) + 1):
                counts = per_variant.get((version.number, index, position), {})
                for measure in VARIANT_MEASURES:
                    subject = variant_subject(journey.pk, version.number, index, position, measure)
                    figures[subject] = counts.get(measure, 0)
    window_end = ExpressionWrapper(
        F("entered_at") + timedelta(days=journey.attribution_window_days), output_field=DateTimeOutput()
    )
    purchases = Event.objects.filter(
        merchant_id=journey.merchant_id,
        event_type=EventType.PURCHASE,
        consumer_id=OuterRef("consumer_id"),
        occurred_at__gte=OuterRef("entered_at"),
        occurred_at__lte=OuterRef("window_end"),
    )
    enrolments = JourneyEnrolment.objects.filter(journey=journey).annotate(window_end=window_end)
    held = enrolments.filter(state=EnrolmentState.HELD_OUT)
    treated = enrolments.exclude(state=EnrolmentState.HELD_OUT)
    for group, rows in (("treatment", treated), ("holdout", held)):
        figures[journey_subject(journey.pk, "size", group=group)] = rows.count()
        figures[journey_subject(journey.pk, "converted", group=group)] = rows.filter(Exists(purchases)).count()
    return figures


@dataclass(frozen=True)
class VariantReport:
    """One message variant of a send step of the current version, with its released counts."""

    position: int
    letter: str
    weight: int
    title: str
    sent: ReleasedCount
    opened: ReleasedCount
    clicked: ReleasedCount
    converted: ReleasedCount
    conversion_rate: float | None  # released converted / released sent; None when either is hidden
    winner: bool = False


@dataclass(frozen=True)
class StepReport:
    step: StepView
    reached: ReleasedCount
    sent: ReleasedCount
    waiting: ReleasedCount
    # Send steps only (None for the others):
    failed: ReleasedCount | None
    opened: ReleasedCount | None
    clicked: ReleasedCount | None
    converted: ReleasedCount | None
    variants: list[VariantReport]
    winner_reason: str = ""


@dataclass(frozen=True)
class GroupReport:
    size: ReleasedCount
    converted: ReleasedCount
    conversion_rate: float | None


@dataclass(frozen=True)
class JourneyReport:
    steps: list[StepReport]
    treatment: GroupReport
    holdout: GroupReport
    uplift: Uplift | None
    note: str


def journey_report_public(journey: Journey) -> JourneyReport:
    exact = journey_exact_figures(journey)
    subjects = list(exact)
    released = dict(
        zip(
            subjects,
            release_figures(merchant_id=journey.merchant_id, figures=[(s, exact[s]) for s in subjects]),
            strict=True,
        )
    )
    definition = journey.current_version.steps if journey.current_version else []
    views = step_views(definition)
    winners = {
        step: (variant, reason)
        for step, variant, reason in JourneyStepWinner.objects.filter(version=journey.current_version).values_list(
            "step", "variant", "reason"
        )
    }
    steps = []
    for view in views:
        step = definition[view.index]
        variants = []
        winner, winner_reason = winners.get(view.index, (None, ""))
        if step.get("variants"):
            assert journey.current_version is not None
            number = journey.current_version.number
            for position, (variant, message) in enumerate(
                zip(step["variants"], send_variants(step), strict=True), start=1
            ):
                counts = {
                    m: released[variant_subject(journey.pk, number, view.index, position, m)] for m in VARIANT_MEASURES
                }
                variants.append(
                    VariantReport(
                        position=position,
                        letter=variant_letter(position),
                        weight=variant["weight"],
                        title=message["title"],
                        conversion_rate=released_rate(counts["converted"], counts["sent"]),
                        winner=position == winner,
                        **counts,
                    )
                )

        def figure(measure: str, index: int = view.index) -> ReleasedCount | None:
            return released.get(journey_subject(journey.pk, measure, step=index))

        steps.append(
            StepReport(
                step=view,
                reached=released[journey_subject(journey.pk, "reached", step=view.index)],
                sent=released[journey_subject(journey.pk, "sent", step=view.index)],
                waiting=released[journey_subject(journey.pk, "waiting", step=view.index)],
                failed=figure("failed"),
                opened=figure("opened"),
                clicked=figure("clicked"),
                converted=figure("converted"),
                variants=variants,
                winner_reason=winner_reason,
            )
        )
    groups = {}
    for group in GROUPS:
        size = released[journey_subject(journey.pk, "size", group=group)]
        converted = released[journey_subject(journey.pk, "converted", group=group)]
        groups[group] = GroupReport(size=size, converted=converted, conversion_rate=released_rate(converted, size))
    treatment, holdout = groups["treatment"], groups["holdout"]
    uplift = None
    if not any(c.suppressed or c.withheld for g in (treatment, holdout) for c in (g.size, g.converted)):
        uplift = uplift_from_released(
            a_converted=treatment.converted, a_size=treatment.size, b_converted=holdout.converted, b_size=holdout.size
        )
    note = (
        ""
        if uplift is not None
        else "Uplift is reported once both the treated consumers and the holdout, and their conversions, are large "
        "enough to be shown."
    )
    return JourneyReport(steps=steps, treatment=treatment, holdout=holdout, uplift=uplift, note=note)
