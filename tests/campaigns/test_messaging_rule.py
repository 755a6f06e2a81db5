"""Campaign sends follow privacy.messaging end to end: minors, objections and withdrawals, the inbox, the preview."""

from __future__ import annotations

from decimal import Decimal

import pytest

from campaigns.activation import campaign_run_begin
from campaigns.deliveries import deliveries_write_batch, run_context
from campaigns.dispatch import ERROR_MINOR, ERROR_SUPPRESSED
from campaigns.inbox import inbox_messages_take
from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, Group, Phase
from campaigns.services import audience_precheck
from consumers.models import AgeRange, Consumer
from privacy.models import AuditEntry, MessagingPolicy, Suppression, SuppressionReason, SuppressionScope

from .conftest import freeze_audience, make_campaign, make_consumers, record_consent, run_activation, run_steps


@pytest.fixture
def adults_and_minors(db):
    """150 adults and 30 consumers in the under-18 age range, all with express opt-in consent."""
    adults = make_consumers(150)
    minors = make_consumers(30, start=5000)
    Consumer.objects.filter(pk__in=adults).update(age_range=AgeRange.A25_34)
    Consumer.objects.filter(pk__in=minors).update(age_range=AgeRange.UNDER_18)
    record_consent(adults + minors)
    return adults, minors


def reached(campaign) -> set[int]:
    return set(Delivery.objects.filter(campaign=campaign).values_list("consumer_id", flat=True))


def test_a_campaign_never_delivers_to_an_under_18_consumer_by_default(merchant, dm_approved, adults_and_minors):
    adults, minors = adults_and_minors
    campaign = run_activation(make_campaign(merchant), adults + minors)
    assert campaign.status == CampaignStatus.COMPLETED
    assert reached(campaign) == set(adults)
    audit = AuditEntry.objects.get(action="campaign.launched", object_id=str(campaign.pk))
    assert audit.counts["minors"] == 30 and audit.counts["audience"] == 150


def test_a_campaign_delivers_to_minors_when_the_officer_allows_it(merchant, dm_approved, adults_and_minors):
    adults, minors = adults_and_minors
    MessagingPolicy.objects.create(minors_allowed=True, note="assessment 12")
    campaign = run_activation(make_campaign(merchant), adults + minors)
    assert reached(campaign) == set(adults + minors)
    dispatched = Delivery.objects.filter(campaign=campaign, consumer_id__in=minors, group=Group.TREATMENT)
    assert set(dispatched.values_list("status", flat=True)) == {DeliveryStatus.DISPATCHED}


def test_the_environment_default_allows_minors_until_an_officer_refuses(
    merchant, dm_approved, adults_and_minors, settings
):
    adults, minors = adults_and_minors
    settings.DIRECT_MARKETING_MINORS_ALLOWED = True
    assert reached(run_activation(make_campaign(merchant), adults + minors)) == set(adults + minors)
    MessagingPolicy.objects.create(minors_allowed=False)
    assert reached(run_activation(make_campaign(merchant, name="Later"), adults + minors)) == set(adults)


def _written_not_dispatched(merchant, ids) -> tuple[Campaign, int]:
    campaign = make_campaign(merchant, control_share=Decimal("0"))
    token = campaign_run_begin(campaign_id=campaign.pk)
    freeze_audience(campaign, ids)
    ctx = run_context(Campaign.objects.select_related("merchant").get(pk=campaign.pk))
    while deliveries_write_batch(ctx=ctx, run_token=token):
        pass
    Campaign.objects.filter(pk=campaign.pk).update(phase=Phase.DISPATCHING)
    return campaign, token


def test_an_objection_or_a_refusal_of_minors_after_activation_stops_the_next_send(
    merchant, dm_approved, adults_and_minors
):
    adults, minors = adults_and_minors
    MessagingPolicy.objects.create(minors_allowed=True, note="assessment 12")
    campaign, token = _written_not_dispatched(merchant, adults + minors)
    Suppression.objects.create(consumer_id=adults[0], reason=SuppressionReason.OBJECTION)
    MessagingPolicy.objects.update(minors_allowed=False)  # the officer changes their mind before dispatch
    run_steps(campaign, token)
    errors = dict(Delivery.objects.filter(campaign=campaign).values_list("consumer_id", "last_error"))
    statuses = dict(Delivery.objects.filter(campaign=campaign).values_list("consumer_id", "status"))
    assert statuses[adults[0]] == DeliveryStatus.WITHDRAWN and errors[adults[0]] == ERROR_SUPPRESSED
    assert {statuses[m] for m in minors} == {DeliveryStatus.WITHDRAWN}
    assert {errors[m] for m in minors} == {ERROR_MINOR}
    assert {statuses[a] for a in adults[1:]} == {DeliveryStatus.DISPATCHED}


def test_a_profile_that_becomes_under_18_after_activation_is_not_sent(merchant, dm_approved, adults_and_minors):
    adults, _ = adults_and_minors
    campaign, token = _written_not_dispatched(merchant, adults)
    Consumer.objects.filter(pk=adults[5]).update(age_range=AgeRange.UNDER_18)
    run_steps(campaign, token)
    delivery = Delivery.objects.get(campaign=campaign, consumer_id=adults[5])
    assert delivery.status == DeliveryStatus.WITHDRAWN and delivery.last_error == ERROR_MINOR


def test_the_inbox_hides_messages_the_rule_now_forbids(merchant, dm_approved, adults_and_minors):
    adults, minors = adults_and_minors
    MessagingPolicy.objects.create(minors_allowed=True, note="assessment 12")
    plain = run_activation(make_campaign(merchant, control_share=Decimal("0")), adults + minors)
    offer = run_activation(
        make_campaign(merchant, name="Offer", coupon_code="SPRING", control_share=Decimal("0")), adults + minors
    )
    assert plain.dispatched_count == offer.dispatched_count == 180
    MessagingPolicy.objects.update(minors_allowed=False)
    minor = Consumer.objects.get(pk=minors[0])
    assert inbox_messages_take(pseudonym=minor.pseudonym) == []
    withdrawn = Delivery.objects.filter(consumer_id=minor.pk)
    assert set(withdrawn.values_list("status", flat=True)) == {DeliveryStatus.WITHDRAWN}
    assert all("under 18" in e for e in withdrawn.values_list("last_error", flat=True))

    # A risk flag hides only the offer; the plain message is still shown.
    flagged = Consumer.objects.get(pk=adults[0])
    Suppression.objects.create(
        consumer_id=flagged.pk, reason=SuppressionReason.RISK_FLAG, scope=SuppressionScope.OFFERS
    )
    [message] = inbox_messages_take(pseudonym=flagged.pseudonym)
    assert message.campaign_id == plain.pk
    assert Delivery.objects.get(campaign=offer, consumer=flagged).status == DeliveryStatus.WITHDRAWN
    offer.refresh_from_db()
    assert offer.withdrawn_count == 2 and offer.dispatched_count == 178


def test_the_launch_precheck_counts_only_whom_the_rule_allows(merchant, all_purposes_approved):
    from .conftest import SegmentWorld

    world = SegmentWorld(merchant)  # 300 consumers, the first 250 with consent
    Consumer.objects.filter(pk__in=world.ids[:40]).update(age_range=AgeRange.UNDER_18)
    segment = world.segment("Everyone", "country:SG OR country:MY")
    campaign = make_campaign(merchant, status=CampaignStatus.DRAFT)
    campaign.include_segments.set([segment])
    assert audience_precheck(campaign) == 210
    MessagingPolicy.objects.create(minors_allowed=True, note="assessment 12")
    assert audience_precheck(campaign) == 250
