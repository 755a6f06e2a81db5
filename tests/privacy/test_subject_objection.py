from datetime import timedelta

from django.utils import timezone

from privacy.models import AuditEntry, ConsentKind, ConsentState, ConsentStatus, Purpose, RequestStatus, Suppression
from privacy.selectors import direct_marketing_opt_in_consumer_ids, suppressed_consumer_ids
from privacy.services import ConsentChange, consents_record
from privacy.subject_rights import subject_request_submit
from tests.privacy.rights_data import make_consumer

RAW = "erin@example.test"


def opt_in(consumer_id: int) -> None:
    consents_record(
        changes=[
            ConsentChange(
                consumer_id,
                Purpose.DIRECT_MARKETING,
                ConsentStatus.GRANTED,
                ConsentKind.EXPRESS,
                "app",
                timezone.now() - timedelta(days=3),
            )
        ],
        actor="test",
    )


def test_objection_withdraws_consent_and_suppresses_every_future_send_at_once(db):
    erin, frank = make_consumer(RAW), make_consumer("frank@example.test")
    opt_in(erin.pk)
    opt_in(frank.pk)
    assert set(direct_marketing_opt_in_consumer_ids()) == {erin.pk, frank.pk}

    request = subject_request_submit(kind="objection", raw_identifier=RAW, actor="apikey:7")

    # No officer step: it is done when the operator's call returns.
    assert request.status == RequestStatus.COMPLETED
    assert request.result["consent_withdrawn"] is True
    assert set(direct_marketing_opt_in_consumer_ids()) == {frank.pk}
    state = ConsentState.objects.get(consumer=erin, purpose=Purpose.DIRECT_MARKETING)
    assert state.status == ConsentStatus.WITHDRAWN
    assert erin.pk in set(suppressed_consumer_ids(has_offer=False))
    assert erin.pk in set(suppressed_consumer_ids(has_offer=True))
    assert frank.pk not in set(suppressed_consumer_ids(has_offer=True))
    suppression = Suppression.objects.get(consumer=erin)
    assert (suppression.reason, suppression.scope, suppression.reference) == (
        "objection",
        "all",
        f"request:{request.pk}",
    )
    actions = list(AuditEntry.objects.values_list("action", flat=True))
    assert actions[-3:] == ["subject_request.received", "consent.recorded", "subject_request.completed"]


def test_a_repeated_objection_keeps_one_suppression(db):
    erin = make_consumer(RAW)
    subject_request_submit(kind="objection", raw_identifier=RAW, actor="apikey:7")
    second = subject_request_submit(kind="objection", raw_identifier=f"  {RAW.upper()} ", actor="apikey:7")
    assert second.status == RequestStatus.COMPLETED
    assert second.result["suppression_id"] == Suppression.objects.get(consumer=erin).pk
    assert Suppression.objects.filter(consumer=erin, lifted_at__isnull=True).count() == 1


def test_objection_wins_over_an_older_consent_arriving_late(db):
    erin = make_consumer(RAW)
    subject_request_submit(kind="objection", raw_identifier=RAW, actor="apikey:7")
    opt_in(erin.pk)  # an opt-in captured three days ago, ingested after the objection
    assert erin.pk not in set(direct_marketing_opt_in_consumer_ids())


def test_objection_for_an_unknown_consumer_completes_with_nothing_to_do(db):
    request = subject_request_submit(kind="objection", raw_identifier="ghost@example.test", actor="apikey:7")
    assert request.status == RequestStatus.COMPLETED
    assert request.result == {"subject_known": False, "consent_withdrawn": False, "suppressed": False}
    assert not Suppression.objects.exists()
