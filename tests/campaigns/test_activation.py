from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from pyroaring import BitMap

from campaigns.activation import StepOutcome, campaign_activation_step, campaign_run_begin
from campaigns.deliveries import ERROR_FREQUENCY_CAP, deliveries_write_batch, run_context
from campaigns.dispatch import ERROR_CONSENT_WITHDRAWN
from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, Group, Phase
from campaigns.services import campaigns_resume_stalled
from privacy.models import AuditEntry, ConsentKind, Purpose, Suppression, SuppressionReason, SuppressionScope
from privacy.services import activity_suspend

from .conftest import (
    freeze_audience,
    make_campaign,
    make_consumers,
    record_consent,
    run_activation,
    run_steps,
    withdraw_consent,
)


def deliveries_per_consumer(campaign) -> Counter:
    return Counter(Delivery.objects.filter(campaign=campaign).values_list("consumer_id", flat=True))


def test_every_audience_member_gets_exactly_one_delivery(merchant, dm_approved, consented_consumers):
    campaign = run_activation(make_campaign(merchant), consented_consumers)
    assert campaign.status == CampaignStatus.COMPLETED
    per_consumer = deliveries_per_consumer(campaign)
    assert set(per_consumer) == set(consented_consumers)
    assert set(per_consumer.values()) == {1}
    treatment = Delivery.objects.filter(campaign=campaign, group=Group.TREATMENT)
    control = Delivery.objects.filter(campaign=campaign, group=Group.CONTROL)
    assert set(treatment.values_list("status", flat=True)) == {DeliveryStatus.DISPATCHED}
    assert set(control.values_list("status", flat=True)) == {DeliveryStatus.HELD_OUT}
    assert campaign.audience_count == campaign.written_count == 200
    assert campaign.treatment_count == treatment.count() == campaign.dispatched_count
    assert campaign.control_count == control.count()
    assert treatment.first().title == "Hello from Acme Outdoor"


def test_consumers_without_express_opt_in_never_receive_a_message(merchant, dm_approved):
    consented = make_consumers(150)
    deemed = make_consumers(30, start=1000)
    never_asked = make_consumers(30, start=2000)
    withdrew = make_consumers(30, start=3000)
    record_consent(consented)
    record_consent(deemed, kind=ConsentKind.DEEMED)
    record_consent(withdrew)
    withdraw_consent(withdrew)
    campaign = run_activation(make_campaign(merchant), consented + deemed + never_asked + withdrew)
    assert set(deliveries_per_consumer(campaign)) == set(consented)
    audit = AuditEntry.objects.get(action="campaign.launched", object_id=str(campaign.pk))
    assert audit.counts["not_consented"] == 90
    assert audit.counts["audience"] == 150


def test_withdrawal_after_activation_but_before_dispatch_stops_the_message(merchant, dm_approved, settings):
    settings.CAMPAIGN_BATCH_SIZE = 10_000
    ids = make_consumers(150)
    record_consent(ids)
    campaign = make_campaign(merchant, control_share=Decimal("0"))
    token = campaign_run_begin(campaign_id=campaign.pk)
    freeze_audience(campaign, ids)
    campaign.refresh_from_db()
    ctx = run_context(Campaign.objects.select_related("merchant").get(pk=campaign.pk))
    while deliveries_write_batch(ctx=ctx, run_token=token):
        pass
    Campaign.objects.filter(pk=campaign.pk).update(phase=Phase.DISPATCHING)
    withdraw_consent(ids[:3])  # recorded after the deliveries were written, before they are sent
    run_steps(campaign, token)
    stopped = Delivery.objects.filter(campaign=campaign, consumer_id__in=ids[:3])
    assert set(stopped.values_list("status", flat=True)) == {DeliveryStatus.WITHDRAWN}
    assert set(stopped.values_list("last_error", flat=True)) == {ERROR_CONSENT_WITHDRAWN}
    assert stopped.filter(dispatched_at__isnull=False).count() == 0
    campaign.refresh_from_db()
    assert campaign.withdrawn_count == 3 and campaign.dispatched_count == 147


def test_excluded_segments_and_suppressions_are_left_out(merchant, dm_approved):
    ids = make_consumers(200)
    record_consent(ids)
    objected, risky = ids[0], ids[1]
    Suppression.objects.create(consumer_id=objected, reason=SuppressionReason.OBJECTION)
    Suppression.objects.create(consumer_id=risky, reason=SuppressionReason.RISK_FLAG, scope=SuppressionScope.OFFERS)
    Suppression.objects.create(consumer_id=ids[2], reason=SuppressionReason.OPERATOR, lifted_at=timezone.now())

    without_offer = run_activation(make_campaign(merchant), ids, exclude=ids[190:])
    reached = set(deliveries_per_consumer(without_offer))
    assert objected not in reached and risky in reached and ids[2] in reached
    assert reached.isdisjoint(ids[190:])

    with_offer = run_activation(make_campaign(merchant, coupon_code="SPRING", name="Offer"), ids)
    reached = set(deliveries_per_consumer(with_offer))
    assert objected not in reached and risky not in reached


def test_small_audience_is_refused_without_revealing_its_size(merchant, dm_approved):
    ids = make_consumers(99)
    record_consent(ids)
    campaign = run_activation(make_campaign(merchant), ids)
    assert campaign.status == CampaignStatus.FAILED
    assert "fewer than 100" in campaign.failure_reason
    assert "99" not in campaign.failure_reason
    assert not Delivery.objects.filter(campaign=campaign).exists()


def test_refuses_without_an_approved_direct_marketing_activity(merchant, officer, dm_approved, consented_consumers):
    campaign = make_campaign(merchant)
    token = campaign_run_begin(campaign_id=campaign.pk)
    freeze_audience(campaign, consented_consumers)
    activity_suspend(activity=dm_approved, officer=officer)
    assert run_steps(campaign, token) == StepOutcome.DONE
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.FAILED
    assert "direct-marketing processing activity" in campaign.failure_reason
    assert not Delivery.objects.filter(campaign=campaign).exists()


def test_launch_is_audited_once_with_counts_hashes_and_basis(merchant, dm_approved, consented_consumers):
    campaign = run_activation(make_campaign(merchant), consented_consumers, exclude=consented_consumers[:10])
    [entry] = AuditEntry.objects.filter(action="campaign.launched")
    assert entry.object_id == str(campaign.pk)
    assert entry.activity_id == dm_approved.pk
    assert entry.purpose == Purpose.DIRECT_MARKETING and entry.legal_basis == "consent"
    assert entry.counts["included"] == 200 and entry.counts["excluded"] == 10 and entry.counts["audience"] == 190
    assert entry.counts["treatment"] + entry.counts["control"] == 190
    assert entry.details["segments"]["include"] == [{"segment_id": 1, "definition_sha256": "a" * 64}]
    assert AuditEntry.objects.filter(action="campaign.completed").count() == 1


def test_frequency_caps_hold_across_two_campaigns_back_to_back(merchant, dm_approved):
    ids = make_consumers(400)
    record_consent(ids)
    first = run_activation(make_campaign(merchant, name="First", frequency_cap=1), ids[:250])
    second = run_activation(make_campaign(merchant, name="Second", frequency_cap=1), ids[150:])
    assert first.status == second.status == CampaignStatus.COMPLETED
    messages = Counter(
        Delivery.objects.filter(group=Group.TREATMENT, status=DeliveryStatus.DISPATCHED).values_list(
            "consumer_id", flat=True
        )
    )
    assert max(messages.values()) == 1
    first_treated = set(
        Delivery.objects.filter(campaign=first, group=Group.TREATMENT).values_list("consumer_id", flat=True)
    )
    second_reached = set(deliveries_per_consumer(second))
    assert second_reached.isdisjoint(first_treated)
    # held-out (control) consumers of the first campaign got no message, so they may get the second
    first_control = set(
        Delivery.objects.filter(campaign=first, group=Group.CONTROL).values_list("consumer_id", flat=True)
    )
    assert first_control & set(ids[150:250]) <= second_reached


def test_platform_cap_holds_across_merchants(merchant, other_merchant, dm_approved, settings):
    settings.PLATFORM_FREQUENCY_CAP = 1
    ids = make_consumers(300)
    record_consent(ids)
    run_activation(make_campaign(merchant, control_share=Decimal("0")), ids[:150])
    theirs = run_activation(make_campaign(other_merchant, control_share=Decimal("0")), ids)
    assert set(deliveries_per_consumer(theirs)) == set(ids[150:])


def test_caps_are_checked_again_when_two_launches_overlap(merchant, dm_approved):
    """Both audiences resolved before either is written: the write re-checks the cap under a lock."""
    ids = make_consumers(200)
    record_consent(ids)
    first = make_campaign(merchant, name="First", frequency_cap=1, control_share=Decimal("0"))
    second = make_campaign(merchant, name="Second", frequency_cap=1, control_share=Decimal("0"))
    first_token = campaign_run_begin(campaign_id=first.pk)
    second_token = campaign_run_begin(campaign_id=second.pk)
    freeze_audience(first, ids)
    freeze_audience(second, ids)
    run_steps(first, first_token)
    run_steps(second, second_token)
    second_statuses = Counter(Delivery.objects.filter(campaign=second).values_list("status", "last_error"))
    assert second_statuses == {(DeliveryStatus.WITHDRAWN, ERROR_FREQUENCY_CAP): 200}
    assert Delivery.objects.filter(status=DeliveryStatus.DISPATCHED).count() == 200


def test_a_crashed_run_resumes_from_the_database_without_loss_or_duplicates(merchant, dm_approved, settings):
    settings.CAMPAIGN_BATCH_SIZE = 40
    ids = make_consumers(300)
    record_consent(ids)
    campaign = make_campaign(merchant)
    token = campaign_run_begin(campaign_id=campaign.pk)
    freeze_audience(campaign, ids)
    # one batch is written, then the worker "dies": nothing re-queues the chain
    ctx = run_context(Campaign.objects.select_related("merchant").get(pk=campaign.pk))
    assert deliveries_write_batch(ctx=ctx, run_token=token)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.RUNNING and campaign.written_count == 40

    # a restart resumes it: a new run token, enqueued (eagerly, here) from the database state
    assert campaigns_resume_stalled(min_idle_s=0) == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    per_consumer = deliveries_per_consumer(campaign)
    assert set(per_consumer) == set(ids) and set(per_consumer.values()) == {1}
    assert campaign.written_count == 300
    assert campaign.dispatched_count == campaign.treatment_count

    # the dead worker's step, delivered late, finds itself superseded and does nothing
    assert campaign_activation_step(campaign_id=campaign.pk, run_token=token, time_budget_s=5) in (
        StepOutcome.SUPERSEDED,
    )


def test_a_repeated_batch_writes_and_sends_nothing_twice(merchant, dm_approved, settings):
    settings.CAMPAIGN_BATCH_SIZE = 50
    ids = make_consumers(150)
    record_consent(ids)
    campaign = make_campaign(merchant)
    token = campaign_run_begin(campaign_id=campaign.pk)
    freeze_audience(campaign, ids)
    run_steps(campaign, token)
    # rewind the cursors as a replayed job would see them, and run again
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.RUNNING, phase=Phase.WRITING, write_cursor=0, dispatch_cursor=0
    )
    from campaigns.models import CampaignAudience

    CampaignAudience.objects.create(campaign=campaign, members=BitMap(ids).serialize(), resolved_at=timezone.now())
    run_steps(campaign, token)
    campaign.refresh_from_db()
    assert set(deliveries_per_consumer(campaign).values()) == {1}
    assert campaign.written_count == 150
    assert campaign.dispatched_count == campaign.treatment_count


def test_progress_is_visible_while_it_runs(merchant, dm_approved, settings):
    settings.CAMPAIGN_BATCH_SIZE = 50
    ids = make_consumers(200)
    record_consent(ids)
    campaign = make_campaign(merchant)
    token = campaign_run_begin(campaign_id=campaign.pk)
    freeze_audience(campaign, ids)
    ctx = run_context(Campaign.objects.select_related("merchant").get(pk=campaign.pk))
    deliveries_write_batch(ctx=ctx, run_token=token)
    deliveries_write_batch(ctx=ctx, run_token=token)
    campaign.refresh_from_db()
    assert (campaign.phase, campaign.audience_count, campaign.written_count) == (Phase.WRITING, 200, 100)


def test_a_cancelled_campaign_stops_and_withdraws_what_was_not_sent(merchant, dm_approved, settings):
    from campaigns.services import campaign_cancel

    settings.CAMPAIGN_BATCH_SIZE = 50
    ids = make_consumers(200)
    record_consent(ids)
    campaign = make_campaign(merchant)
    token = campaign_run_begin(campaign_id=campaign.pk)
    freeze_audience(campaign, ids)
    ctx = run_context(Campaign.objects.select_related("merchant").get(pk=campaign.pk))
    deliveries_write_batch(ctx=ctx, run_token=token)
    campaign_cancel(campaign=campaign, actor="apikey:test")
    assert run_steps(campaign, token) == StepOutcome.DONE
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    assert Delivery.objects.filter(campaign=campaign).count() == 50  # nothing written after the cancel
    assert not Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.PENDING).exists()
    assert not Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.DISPATCHED).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_run_lock_keeps_a_second_session_out(merchant):
    import threading

    from django.db import connection

    from campaigns.activation import campaign_run_lock

    campaign = make_campaign(merchant)
    results = []

    def other_session():
        with campaign_run_lock(campaign.pk) as got:
            results.append(got)
        connection.close()

    with campaign_run_lock(campaign.pk) as held:
        assert held
        thread = threading.Thread(target=other_session)
        thread.start()
        thread.join()
    assert results == [False]


def test_inserting_a_batch_twice_keeps_the_first_rows(merchant):
    """The bulk writer (COPY + ON CONFLICT on PostgreSQL, bulk_create elsewhere) never doubles or overwrites."""
    from django.db import transaction

    from campaigns.deliveries import _insert_rows, _Row

    ids = make_consumers(30)
    campaign = make_campaign(merchant)
    first = [_Row(cid, Group.TREATMENT, [1], "first", "b", DeliveryStatus.PENDING) for cid in ids[:20]]
    second = [_Row(cid, Group.TREATMENT, [2], "second", "b", DeliveryStatus.PENDING) for cid in ids[10:]]
    with transaction.atomic():
        _insert_rows(campaign.pk, first, timezone.now())
    with transaction.atomic():
        _insert_rows(campaign.pk, second, timezone.now())
    titles = dict(Delivery.objects.filter(campaign=campaign).values_list("consumer_id", "title"))
    assert len(titles) == 30
    assert {titles[c] for c in ids[:20]} == {"first"} and {titles[c] for c in ids[20:]} == {"second"}
    assert Delivery.objects.get(campaign=campaign, consumer_id=ids[0]).product_ids == [1]


@pytest.mark.parametrize(("batch", "window"), [(10_000, 50_000), (30, 70)])
def test_treatment_is_personalised_from_the_merchants_own_catalogue(
    merchant, other_merchant, all_purposes_approved, catalogue, settings, batch, window
):
    # the second case asks the recommender per window of 70 consumers while writing batches of 30
    settings.CAMPAIGN_BATCH_SIZE, settings.CAMPAIGN_PERSONALISE_WINDOW = batch, window
    from consumers.models import Event, EventType

    own, foreign = catalogue
    ids = make_consumers(150)
    record_consent(ids)
    now = timezone.now()
    # popular products: tents 1-3 at this merchant; the other merchant's lipstick is the most popular of all
    events = [
        Event(
            source_key=f"v-{cid}-{product.pk}",
            consumer_id=cid,
            merchant_id=product.merchant_id,
            product=product,
            event_type=EventType.VIEW,
            occurred_at=now - timedelta(days=1),
        )
        for cid in ids
        for product in (own[0], own[1], own[2], foreign)
    ]
    Event.objects.bulk_create(events)
    campaign = run_activation(
        make_campaign(
            merchant,
            personalised_products=2,
            title_template="{product_1_title} at {store_name}",
            body_template="Picked for you: {products}. {product_2_title} from {product_2_price}",
        ),
        ids,
    )
    assert campaign.status == CampaignStatus.COMPLETED, campaign.failure_reason
    treatment = list(Delivery.objects.filter(campaign=campaign, group=Group.TREATMENT))
    own_ids = {p.pk for p in own}
    titles = {p.pk: p.title for p in own}
    for delivery in treatment:
        assert len(delivery.product_ids) == 2 and set(delivery.product_ids) <= own_ids
        assert delivery.title == f"{titles[delivery.product_ids[0]]} at Acme Outdoor"
        assert "Lipstick" not in delivery.body
    assert campaign.personalised_count == len(treatment)
    control = Delivery.objects.filter(campaign=campaign, group=Group.CONTROL)
    assert all(d.product_ids == [] and d.body == "" for d in control)


def test_messages_older_than_the_window_do_not_count(merchant, dm_approved):
    ids = make_consumers(150)
    record_consent(ids)
    first = run_activation(make_campaign(merchant, control_share=Decimal("0")), ids)
    long_ago = timezone.now() - timedelta(days=8)
    Delivery.objects.filter(campaign=first).update(created_at=long_ago)
    Campaign.objects.filter(pk=first.pk).update(started_at=long_ago)
    second = run_activation(make_campaign(merchant, frequency_cap=1, frequency_window_days=7), ids)
    assert set(deliveries_per_consumer(second)) == set(ids)


def test_a_run_stops_when_the_recommendation_activity_is_suspended(
    merchant, officer, all_purposes_approved, consented_consumers
):
    from privacy.services import activity_suspend

    campaign = make_campaign(merchant, personalised_products=1, body_template="{product_1_title}")
    token = campaign_run_begin(campaign_id=campaign.pk)
    freeze_audience(campaign, consented_consumers)
    activity_suspend(activity=all_purposes_approved[Purpose.RECOMMENDATION], officer=officer)
    run_steps(campaign, token)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.FAILED and "recommendation" in campaign.failure_reason
    assert not Delivery.objects.filter(campaign=campaign).exists()
