"""Reads: a merchant's journeys, and their report (per-step counts, conversions against the holdout, uplift), every
number released through privacy.services.release_figures under `journey:<id>:step:<n>:<measure>` and
`journey:<id>:group:<g>:<measure>`; rates and the uplift are computed from released numbers only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Exists, ExpressionWrapper, F, OuterRef, QuerySet
from django.db.models import DateTimeField as DateTimeOutput

from campaigns.stats import Uplift, uplift_two_proportions
from consumers.models import Event, EventType
from merchants.models import Merchant
from privacy.release import ReleasedCount, released_rate
from privacy.services import release_figures

from .definition import StepView, step_views
from .models import EnrolmentState, Journey, JourneyEnrolment, JourneySend, JourneyStepRun, SendStatus

STEP_MEASURES = ("reached", "sent", "waiting")
GROUPS = ("treatment", "holdout")
GROUP_MEASURES = ("size", "converted")


def journeys_for_merchant(merchant: Merchant | int) -> QuerySet[Journey]:
    merchant_id = merchant if isinstance(merchant, int) else merchant.pk
    return Journey.objects.filter(merchant_id=merchant_id).select_related("current_version", "trigger_segment")


def journey_subject(journey_id: int, measure: str, *, step: int | None = None, group: str | None = None) -> str:
    if step is not None:
        return f"journey:{journey_id}:step:{step}:{measure}"
    return f"journey:{journey_id}:group:{group}:{measure}"


def journey_exact_figures(journey: Journey) -> dict[str, int]:
    """The exact counts behind the report (for the release layer and privacy officers only)."""
    steps = journey.current_version.steps if journey.current_version else []
    figures: dict[str, int] = {}
    runs = dict(
        JourneyStepRun.objects.filter(journey=journey).values("step").annotate(n=Count("id")).values_list("step", "n")
    )
    sent = dict(
        JourneySend.objects.filter(journey=journey, status=SendStatus.SENT)
        .values("step")
        .annotate(n=Count("id"))
        .values_list("step", "n")
    )
    waiting = dict(
        JourneyEnrolment.objects.filter(journey=journey, state=EnrolmentState.ACTIVE)
        .values("step")
        .annotate(n=Count("id"))
        .values_list("step", "n")
    )
    for index in range(len(steps)):
        figures[journey_subject(journey.pk, "reached", step=index)] = runs.get(index, 0) + waiting.get(index, 0)
        figures[journey_subject(journey.pk, "sent", step=index)] = sent.get(index, 0)
        figures[journey_subject(journey.pk, "waiting", step=index)] = waiting.get(index, 0)
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
class StepReport:
    step: StepView
    reached: ReleasedCount
    sent: ReleasedCount
    waiting: ReleasedCount


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
    views = step_views(journey.current_version.steps if journey.current_version else [])
    steps = [
        StepReport(
            step=view,
            reached=released[journey_subject(journey.pk, "reached", step=view.index)],
            sent=released[journey_subject(journey.pk, "sent", step=view.index)],
            waiting=released[journey_subject(journey.pk, "waiting", step=view.index)],
        )
        for view in views
    ]
    groups = {}
    for group in GROUPS:
        size = released[journey_subject(journey.pk, "size", group=group)]
        converted = released[journey_subject(journey.pk, "converted", group=group)]
        groups[group] = GroupReport(size=size, converted=converted, conversion_rate=released_rate(converted, size))
    treatment, holdout = groups["treatment"], groups["holdout"]
    uplift = None
    if not any(c.suppressed or c.withheld for g in (treatment, holdout) for c in (g.size, g.converted)):
        n_t, n_c = max(1, treatment.size._noisy), max(1, holdout.size._noisy)
        uplift = uplift_two_proportions(
            treatment_conversions=min(n_t, max(0, treatment.converted._noisy)),
            treatment_size=n_t,
            control_conversions=min(n_c, max(0, holdout.converted._noisy)),
            control_size=n_c,
        )
    note = (
        ""
        if uplift is not None
        else "Uplift is reported once both the treated consumers and the holdout, and their conversions, are large "
        "enough to be shown."
    )
    return JourneyReport(steps=steps, treatment=treatment, holdout=holdout, uplift=uplift, note=note)
