"""The automatic winner of a journey send step's A/B/n test (auto_winner), by the campaigns' rule
(campaigns.winner.variant_winner) on the report's released per-variant figures of the current version: once every
variant has CAMPAIGN_VARIANT_MIN_SAMPLE released messages sent and one converts better than each other with a 95%
interval above zero, the step records it (JourneyStepWinner, with an audit entry) and everyone gets it from then on.
Run hourly by beat (`journeys.winners`), not every tick: each check releases figures, which spends budget."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction

from campaigns.selectors import PublicVariant
from campaigns.winner import variant_winner
from privacy.audit import audit_record
from privacy.models import Purpose

from .models import Journey, JourneySend, JourneyStepWinner
from .selectors import journey_report_public

logger = logging.getLogger("dmp.journeys")


def journey_winners_pick(*, journey_id: int, now: datetime) -> list[int]:
    """Settle each auto_winner send step of the journey's current version that has a winner now; returns the
    steps that got one."""
    journey = Journey.objects.select_related("current_version").filter(pk=journey_id).first()
    if journey is None or journey.current_version is None:
        return []
    version = journey.current_version
    decided = set(JourneyStepWinner.objects.filter(version=version).values_list("step", flat=True))
    open_steps = [
        i for i, s in enumerate(version.steps) if s.get("auto_winner") and s.get("variants") and i not in decided
    ]
    minimum = settings.CAMPAIGN_VARIANT_MIN_SAMPLE
    # Exact counts only decide whether releasing is worth it yet (nothing of them is shown).
    open_steps = [
        i
        for i in open_steps
        if JourneySend.objects.filter(journey=journey, enrolment__version=version, step=i).count()
        >= minimum * len(version.steps[i]["variants"])
    ]
    if not open_steps:
        return []
    report = journey_report_public(journey)
    picked = []
    for index in open_steps:
        rows = [
            PublicVariant(
                position=v.position,
                letter=v.letter,
                share=v.weight,
                title_template=v.title,
                size=v.sent,
                sent=v.sent,
                opened=v.opened,
                clicked=v.clicked,
                converted=v.converted,
                conversion_rate=v.conversion_rate,
                versus_first=None,
                too_early=False,
            )
            for v in report.steps[index].variants
        ]
        found = variant_winner(rows, min_sample=minimum)
        if found is None:
            continue
        best, reason = found
        try:
            with transaction.atomic():
                JourneyStepWinner.objects.create(
                    journey=journey, version=version, step=index, variant=best.position, picked_at=now, reason=reason
                )
                audit_record(
                    actor="system:journeys",
                    action="journey.variant_winner",
                    merchant_id=journey.merchant_id,
                    purpose=Purpose.DIRECT_MARKETING,
                    object_type="journey",
                    object_id=journey.pk,
                    counts={},
                    details={"version": version.number, "step": index, "winner": best.letter, "reason": reason},
                )
        except IntegrityError:
            continue  # another run settled it first
        picked.append(index)
        logger.info("journey.variant_winner", extra={"fields": {"journey_id": journey.pk, "step": index}})
    return picked
