"""The processing register and the consent ledger, through privacy.services."""

from __future__ import annotations

from collections.abc import Iterable

import factory
from django.utils import timezone

from privacy.models import (
    ActivityStatus,
    ConsentKind,
    ConsentState,
    ConsentStatus,
    LegalBasis,
    ProcessingActivity,
    Purpose,
)
from privacy.services import ConsentChange, activity_approve, activity_suspend, consents_record

from .merchants import OfficerFactory

# A lawful activity per purpose: what the register's rules accept for it.
LAWFUL_ACTIVITIES = {
    Purpose.TAGGING: dict(legal_basis=LegalBasis.BUSINESS_IMPROVEMENT, assessment="Cannot be done anonymously."),
    Purpose.RECOMMENDATION: dict(legal_basis=LegalBasis.BUSINESS_IMPROVEMENT, assessment="Needs behaviour."),
    Purpose.DIRECT_MARKETING: dict(legal_basis=LegalBasis.CONSENT),
    Purpose.RISK_CONTROL: dict(
        legal_basis=LegalBasis.LEGITIMATE_INTERESTS,
        assessment="Balancing test: fraud losses outweigh the limited adverse effect.",
        disclosure_url="https://marketplace.example/privacy/legitimate-interests",
        counter_statement_channel="In-app form under Privacy > Counter statement",
    ),
}


def _lawful(field: str):
    return factory.LazyAttribute(lambda o: LAWFUL_ACTIVITIES[o.purpose].get(field, ""))


class ProcessingActivityFactory(factory.django.DjangoModelFactory):
    """A register entry, lawful for its purpose, approved by an officer through `activity_approve`.

    `approved=False` leaves it a draft (officers write drafts in the admin; the register has no create service).
    """

    class Meta:
        model = ProcessingActivity

    class Params:
        approved = True

    purpose = Purpose.TAGGING
    name = factory.LazyAttribute(lambda o: f"{o.purpose} activity")
    description = factory.LazyAttribute(lambda o: f"Processing for {o.purpose}.")
    legal_basis = _lawful("legal_basis")
    assessment = _lawful("assessment")
    disclosure_url = _lawful("disclosure_url")
    counter_statement_channel = _lawful("counter_statement_channel")
    officer = factory.Maybe("approved", yes_declaration=factory.SubFactory(OfficerFactory), no_declaration=None)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        officer = kwargs.pop("officer")
        activity = model_class(**kwargs)
        activity.save()  # a draft; activity_approve applies the register's rules
        if officer is None:
            return activity
        return activity_approve(activity=activity, officer=officer)


def approved_activity(purpose: str) -> ProcessingActivity | None:
    return ProcessingActivity.objects.filter(purpose=purpose, status=ActivityStatus.APPROVED).first()


class basis_for:  # noqa: N801 - used like a function, in a with statement
    """Run the block under an approved activity for `purpose`.

    When none is approved, one is approved for the block and suspended after it: data the tests build as
    a past run would have left it, in a register that no longer allows the purpose.
    """

    def __init__(self, purpose: str):
        self.purpose = purpose
        self.temporary: ProcessingActivity | None = None

    def __enter__(self) -> ProcessingActivity:
        found = approved_activity(self.purpose)
        if found is not None:
            return found
        self.temporary = ProcessingActivityFactory(purpose=self.purpose, name=f"{self.purpose} (earlier run)")
        return self.temporary

    def __exit__(self, *exc) -> bool:
        if self.temporary is not None:
            activity_suspend(activity=self.temporary, officer=self.temporary.approved_by)
        return False


class ConsentFactory(factory.django.DjangoModelFactory):
    """One consent decision recorded in the ledger by `consents_record`; returns the consumer's current state."""

    class Meta:
        model = ConsentState

    consumer_id = factory.LazyAttribute(lambda o: o.consumer.pk)
    purpose = Purpose.DIRECT_MARKETING
    status = ConsentStatus.GRANTED
    kind = ConsentKind.EXPRESS
    source = "test"
    occurred_at = factory.LazyFunction(timezone.now)

    class Params:
        consumer = None

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        consents_record(changes=[ConsentChange(**kwargs)], actor="test")
        return ConsentState.objects.get(consumer_id=kwargs["consumer_id"], purpose=kwargs["purpose"])


def consents_record_for(
    consumer_ids: Iterable[int],
    *,
    purpose: str = Purpose.DIRECT_MARKETING,
    status: str = ConsentStatus.GRANTED,
    kind: str = ConsentKind.EXPRESS,
    source: str = "test",
    when=None,
    actor: str = "test",
) -> dict[str, int]:
    """The same decision for many consumers, in one `consents_record` call (one audit entry)."""
    when = when or timezone.now()
    return consents_record(
        changes=[ConsentChange(cid, purpose, status, kind, source, when) for cid in consumer_ids], actor=actor
    )


__all__ = [
    "LAWFUL_ACTIVITIES",
    "ConsentFactory",
    "ProcessingActivityFactory",
    "approved_activity",
    "basis_for",
    "consents_record_for",
]
