"""May this consumer be messaged now (privacy.messaging): one rule, three shapes that agree, and the minors setting."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.models import AgeRange, Consumer
from privacy.messaging import (
    PARTS,
    Reason,
    may_message,
    messageable_consumer_ids,
    messaging_refusals,
    minors_allowed,
)
from privacy.models import (
    MINOR_AGE_RANGES,
    AuditEntry,
    ConsentKind,
    ConsentStatus,
    MessagingPolicy,
    Purpose,
    Suppression,
    SuppressionReason,
    SuppressionScope,
)
from privacy.services import ConsentChange, consents_record
from privacy.subject_data import handlers
from tags.bitmaps import bitmap_cache_clear
from tags.selectors import reachable_bitmap
from tags.services import tags_compute

CONSENTS = [
    None,
    (ConsentStatus.GRANTED, ConsentKind.EXPRESS),
    (ConsentStatus.GRANTED, ConsentKind.DEEMED),
    (ConsentStatus.WITHDRAWN, ConsentKind.EXPRESS),
    (ConsentStatus.WITHDRAWN, ConsentKind.DEEMED),
]
SUPPRESSION_STATES = ["none", "active", "lifted"]


@dataclass(frozen=True)
class Spec:
    consent: tuple[str, str] | None
    objection: str
    risk_flag: str
    operator: str  # none, all, offers
    erased: bool
    age_range: str


specs = st.builds(
    Spec,
    consent=st.sampled_from(CONSENTS),
    objection=st.sampled_from(SUPPRESSION_STATES),
    risk_flag=st.sampled_from(SUPPRESSION_STATES),
    operator=st.sampled_from(["none", "all", "offers"]),
    erased=st.booleans(),
    age_range=st.sampled_from(["", *AgeRange.values]),
)


def expected_reason(spec: Spec, *, with_offer: bool, minors: bool) -> str:
    """The rule as docs/privacy.md states it, in plain Python (the oracle)."""
    if spec.erased:
        return Reason.ERASED
    if spec.consent != (ConsentStatus.GRANTED, ConsentKind.EXPRESS):
        return Reason.NO_EXPRESS_CONSENT
    if spec.objection == "active":
        return Reason.OBJECTION
    if spec.operator == "all":
        return Reason.SUPPRESSED
    if with_offer and (spec.risk_flag == "active" or spec.operator == "offers"):
        return Reason.OFFER_SUPPRESSED
    if spec.age_range in MINOR_AGE_RANGES and not minors:
        return Reason.MINOR
    return Reason.ALLOWED


def make_consumer(n: int, age_range: str = "") -> int:
    pseudonym = hashlib.sha256(f"messaging-test-{n}".encode()).hexdigest()
    return Consumer.objects.create(pseudonym=pseudonym, age_range=age_range).pk


def consent(consumer_ids, status=ConsentStatus.GRANTED, kind=ConsentKind.EXPRESS, when=None) -> None:
    consents_record(
        changes=[
            ConsentChange(
                consumer_id=cid,
                purpose=Purpose.DIRECT_MARKETING,
                status=status,
                kind=kind,
                source="test",
                occurred_at=when or timezone.now(),
            )
            for cid in consumer_ids
        ],
        actor="test",
    )


def suppress(consumer_id: int, reason: str, scope: str, state: str) -> None:
    if state == "none":
        return
    Suppression.objects.create(
        consumer_id=consumer_id,
        reason=reason,
        scope=scope,
        lifted_at=timezone.now() if state == "lifted" else None,
    )


def erase(consumer_id: int) -> None:
    for handler in handlers():
        handler.erase(consumer_id)


def build(consumers: list[Spec]) -> list[int]:
    ids = []
    for n, spec in enumerate(consumers):
        cid = make_consumer(n, spec.age_range)
        ids.append(cid)
        if spec.consent is not None:
            consent([cid], status=spec.consent[0], kind=spec.consent[1])
        suppress(cid, SuppressionReason.OBJECTION, SuppressionScope.ALL, spec.objection)
        suppress(cid, SuppressionReason.RISK_FLAG, SuppressionScope.OFFERS, spec.risk_flag)
        if spec.operator != "none":
            suppress(cid, SuppressionReason.OPERATOR, spec.operator, "active")
    tags_compute(families=["age_range"], actor="test")  # the tag index estimates read minors from
    for cid, spec in zip(ids, consumers, strict=True):
        if spec.erased:
            erase(cid)
    return ids


class Rollback(Exception):
    pass


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    consumers=st.lists(specs, min_size=1, max_size=8),
    policy=st.sampled_from(["no row", "empty", "allowed", "refused"]),
    env_default=st.booleans(),
)
def test_the_per_consumer_set_and_bitmap_forms_agree_with_the_rule(
    approve_activity, settings, consumers, policy, env_default
):
    """For any consumers (consent kind and status, objection, suppressions, risk flags, erasure, age range) and any
    minors setting: may_message, the SQL set form and the bitmap forms (exact, and the estimates' tag-index one)
    allow exactly whom the rule allows, for messages with and without an offer, with the rule's reason."""
    settings.DIRECT_MARKETING_MINORS_ALLOWED = env_default
    try:
        with transaction.atomic():
            bitmap_cache_clear()
            approve_activity(Purpose.TAGGING)
            if policy != "no row":
                MessagingPolicy.objects.create(
                    minors_allowed={"empty": None, "allowed": True, "refused": False}[policy], note="assessment 7"
                )
            minors = {"no row": env_default, "empty": env_default, "allowed": True, "refused": False}[policy]
            assert minors_allowed() is minors
            ids = build(consumers)
            for with_offer in (False, True):
                reasons = {
                    cid: expected_reason(spec, with_offer=with_offer, minors=minors)
                    for cid, spec in zip(ids, consumers, strict=True)
                }
                allowed = {cid for cid, reason in reasons.items() if reason == Reason.ALLOWED}
                decisions = {cid: may_message(consumer_id=cid, with_offer=with_offer) for cid in ids}
                assert {cid: d.reason for cid, d in decisions.items()} == reasons
                assert {cid for cid, d in decisions.items() if d.allowed} == allowed
                assert set(messageable_consumer_ids(with_offer=with_offer, consumer_ids=ids)) == allowed
                assert set(messageable_consumer_ids(with_offer=with_offer)) == allowed
                refusals = messaging_refusals(ids, with_offer=with_offer)
                assert refusals == {cid: r for cid, r in reasons.items() if r != Reason.ALLOWED}
                assert set(reachable_bitmap(with_offer=with_offer, exact=True)) == allowed
                estimate_form = reachable_bitmap(with_offer=with_offer, exact=False)
                assert set(estimate_form) == allowed
                assert len(estimate_form) == len(allowed)  # the reachable count an estimate releases
            raise Rollback
    except Rollback:
        pass
    finally:
        bitmap_cache_clear()


def test_every_blocking_part_names_a_reason_and_consumers_take_the_minor_range_from_privacy():
    assert AgeRange.UNDER_18 in MINOR_AGE_RANGES
    assert {p.name for p in PARTS} == {"suppressed_all", "suppressed_offers", "minors"}


def test_a_suppression_counts_from_its_creation_until_it_is_lifted(db):
    cid = make_consumer(1)
    consent([cid])
    before = timezone.now()
    Suppression.objects.create(consumer_id=cid, reason=SuppressionReason.OBJECTION, scope=SuppressionScope.ALL)
    assert may_message(consumer_id=cid, with_offer=False, at=before).allowed
    assert may_message(consumer_id=cid, with_offer=False).reason == Reason.OBJECTION
    Suppression.objects.filter(consumer_id=cid).update(lifted_at=timezone.now() + timedelta(hours=1))
    assert may_message(consumer_id=cid, with_offer=False, at=timezone.now()).reason == Reason.OBJECTION
    assert may_message(consumer_id=cid, with_offer=False).allowed  # lifted (as of now, lifted_at is set)


def test_minors_are_refused_by_default_and_allowed_when_the_officer_allows(db, settings):
    settings.DIRECT_MARKETING_MINORS_ALLOWED = False
    minor, adult = make_consumer(1, AgeRange.UNDER_18), make_consumer(2, AgeRange.A25_34)
    consent([minor, adult])
    assert may_message(consumer_id=minor, with_offer=False).reason == Reason.MINOR
    assert may_message(consumer_id=adult, with_offer=False).allowed
    MessagingPolicy.objects.create(minors_allowed=True, note="parental consent flow, assessment 12")
    assert may_message(consumer_id=minor, with_offer=True).allowed
    settings.DIRECT_MARKETING_MINORS_ALLOWED = True
    MessagingPolicy.objects.update(minors_allowed=False)
    assert may_message(consumer_id=minor, with_offer=False).reason == Reason.MINOR  # the officer's word wins


def test_allowing_minors_needs_a_reason(db):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        MessagingPolicy(minors_allowed=True, note=" ").full_clean()
    MessagingPolicy(minors_allowed=False).full_clean()


def test_officers_change_the_policy_in_the_admin_and_it_is_audited(client, officer):
    client.force_login(officer)
    response = client.post(
        "/admin/privacy/messagingpolicy/add/", {"minors_allowed": "true", "note": "assessment 12 (parental consent)"}
    )
    assert response.status_code == 302, response.content[:2000]
    assert minors_allowed() is True
    entry = AuditEntry.objects.get(action="messaging_policy.set")
    assert entry.details["minors_allowed"] is True and entry.details["in_force"] is True
    assert entry.actor == f"user:{officer.pk}"
