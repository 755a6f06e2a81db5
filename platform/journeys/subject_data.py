"""What journeys hold about a consumer, for data-subject access and erasure requests."""

from __future__ import annotations

from django.db import transaction

from privacy.subject_data import SubjectDataHandler, register

from .models import JourneyEnrolment, JourneySend, JourneyStepRun


def access(consumer_id: int) -> list[dict]:
    """Every journey the consumer entered: store, journey, state and dates, and the messages it sent them."""
    sends: dict[int, list[dict]] = {}
    for send in JourneySend.objects.filter(consumer_id=consumer_id).order_by("created_at", "pk"):
        sends.setdefault(send.enrolment_id, []).append(
            {"title": send.title, "body": send.body, "status": send.status, "created_at": send.created_at.isoformat()}
        )
    return [
        {
            "journey": e.journey.name,
            "store": e.journey.merchant.name,
            "state": e.state,
            "entered_at": e.entered_at.isoformat(),
            "finished_at": e.finished_at.isoformat() if e.finished_at else None,
            "messages": sends.get(e.pk, []),
        }
        for e in JourneyEnrolment.objects.filter(consumer_id=consumer_id)
        .select_related("journey__merchant")
        .order_by("entered_at", "pk")
    ]


def erase(consumer_id: int) -> dict[str, int]:
    """Delete the consumer's enrolments, step runs and messages (a journey in flight simply loses them)."""
    with transaction.atomic():
        _total, per_model = JourneyEnrolment.objects.filter(consumer_id=consumer_id).delete()
    return {
        "enrolments": per_model.get(JourneyEnrolment._meta.label, 0),
        "step_runs": per_model.get(JourneyStepRun._meta.label, 0),
        "messages": per_model.get(JourneySend._meta.label, 0),
    }


register(SubjectDataHandler(name="journeys", layer=6, access=access, erase=erase))
