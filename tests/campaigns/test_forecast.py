"""The forecast of incremental conversions: the most similar campaign to learn from, frozen at launch, and the
report's comparison of forecast and result (released figures only)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import CampaignStatus, ScheduleKind
from tests.release_helpers import released_count, released_public

from .conftest import make_campaign, record_consent
from .test_uplift import _completed_campaign_with_a_planted_effect


def _segment(merchant, name, members):
    from segments.models import Segment
    from segments.services import segment_members_write

    segment = Segment.objects.create(merchant=merchant, name=name, definition="fixed", created_by="test")
    segment_members_write(segment_id=segment.pk, members=sorted(members), method="test", definition="t", actor="t")
    return segment


def _scheduled_draft(merchant, segment):
    """A draft sent at a later time: launching it schedules it and freezes the forecast, and sends nothing yet."""
    draft = make_campaign(
        merchant,
        name="Next sale",
        status=CampaignStatus.DRAFT,
        launched_at=None,
        launched_by="",
        schedule_kind=ScheduleKind.AT,
        scheduled_at=timezone.now() + timedelta(days=2),
    )
    draft.include_segments.set([segment])
    return draft


def test_the_forecast_learns_from_the_most_similar_completed_campaign(merchant, all_purposes_approved):
    from campaigns.uplift import campaign_forecast_exact

    first, browsers, _ = _completed_campaign_with_a_planted_effect(merchant, name="First")
    second, other_browsers, _ = _completed_campaign_with_a_planted_effect(merchant, start=5000, seed=9, name="Second")
    draft = _scheduled_draft(merchant, _segment(merchant, "audience", other_browsers))
    exact = campaign_forecast_exact(campaign=draft)
    assert (exact.like_campaign_id, exact.chosen_by) == (second.pk, "most_similar")  # its audience overlaps
    draft.include_segments.set([_segment(merchant, "first audience", browsers)])
    assert campaign_forecast_exact(campaign=draft).like_campaign_id == first.pk
    picked = campaign_forecast_exact(campaign=draft, like_campaign_id=second.pk)
    assert (picked.like_campaign_id, picked.chosen_by) == (second.pk, "picked")


def test_a_forecast_follows_purchases_that_arrive_after_the_campaign_completed(merchant, all_purposes_approved):
    """The model learned from a completed campaign is kept between forecasts, but purchases still arriving in its
    attribution window change what it learns: the next forecast is the one a fresh model gives, never a stale one."""
    from django.core.cache import cache

    from campaigns.models import Delivery, Group
    from campaigns.uplift import campaign_forecast_exact
    from consumers.models import Event, EventType, Product

    like, browsers, _ = _completed_campaign_with_a_planted_effect(merchant)
    draft = _scheduled_draft(merchant, _segment(merchant, "audience", browsers))
    before = campaign_forecast_exact(campaign=draft, like_campaign_id=like.pk)
    assert campaign_forecast_exact(campaign=draft, like_campaign_id=like.pk) == before  # the kept model

    # Late purchases by the held-out browsers, inside the attribution window: messaging them gained nothing.
    held_out = Delivery.objects.filter(campaign=like, group=Group.CONTROL, consumer_id__in=browsers)
    product = Product.objects.filter(merchant=merchant).first()
    Event.objects.bulk_create(
        Event(
            source_key=f"late-{d.consumer_id}",
            consumer_id=d.consumer_id,
            merchant=merchant,
            product=product,
            event_type=EventType.PURCHASE,
            occurred_at=like.started_at + timedelta(days=2),
        )
        for d in held_out
    )
    after = campaign_forecast_exact(campaign=draft, like_campaign_id=like.pk)
    assert after.incremental < before.incremental / 2
    cache.clear()
    assert campaign_forecast_exact(campaign=draft, like_campaign_id=like.pk) == after


def test_launch_freezes_the_released_forecast_and_it_never_changes(
    merchant, other_merchant, all_purposes_approved, merchant_client, django_capture_on_commit_callbacks
):
    from campaigns.uplift import campaign_forecast_exact, campaign_forecast_freeze

    like, browsers, buyers = _completed_campaign_with_a_planted_effect(merchant)
    segment = _segment(merchant, "audience", browsers)
    record_consent(sorted(browsers))
    draft = _scheduled_draft(merchant, segment)
    assert merchant_client.get(f"/api/v1/campaigns/{draft.pk}").json()["forecast"] is None
    exact = campaign_forecast_exact(campaign=draft, like_campaign_id=like.pk)

    foreign = make_campaign(other_merchant, status=CampaignStatus.COMPLETED)
    url = f"/api/v1/campaigns/{draft.pk}/launch"
    refused = merchant_client.post(url, {"forecast_like_campaign_id": foreign.pk}, format="json")
    assert refused.status_code == 404  # another merchant's campaign is not one to learn from
    with django_capture_on_commit_callbacks(execute=True):
        response = merchant_client.post(url, {"forecast_like_campaign_id": like.pk}, format="json")
    assert response.status_code == 202, response.json()
    frozen = merchant_client.get(f"/api/v1/campaigns/{draft.pk}").json()["forecast"]
    assert frozen["refused"] is False and frozen["like_campaign_id"] == like.pk and frozen["chosen_by"] == "picked"
    for key, (subject, count) in zip(
        ("audience", "incremental_conversions", "incremental_low", "incremental_high"),
        exact.figures(draft.pk),
        strict=True,
    ):
        assert frozen[key] == released_public(subject, count)
    assert frozen["made_at"] and frozen["model"].startswith("uplift")

    # The audience changes after launch; the frozen forecast does not (a retried task, a second call).
    from segments.services import segment_members_write

    segment_members_write(segment_id=segment.pk, members=sorted(buyers), method="t", definition="t", actor="t")
    campaign_forecast_freeze(campaign_id=draft.pk)
    assert merchant_client.get(f"/api/v1/campaigns/{draft.pk}").json()["forecast"] == frozen


def test_a_launch_without_past_campaigns_freezes_the_plain_refusal(
    merchant, all_purposes_approved, merchant_client, django_capture_on_commit_callbacks
):
    from campaigns.models import Campaign
    from campaigns.selectors import campaign_report_public

    draft = _scheduled_draft(merchant, _segment(merchant, "audience", []))
    with django_capture_on_commit_callbacks(execute=True):
        from campaigns.services import campaign_launch

        campaign_launch(campaign=draft, actor="test")
    draft = Campaign.objects.get(pk=draft.pk)
    assert draft.forecast["refused"] and draft.forecast["reason"].startswith("Not enough past campaigns to forecast")
    words = campaign_report_public(draft).forecast.words
    assert words.startswith("No forecast was made at launch: Not enough past campaigns to forecast")
    body = merchant_client.get(f"/api/v1/campaigns/{draft.pk}/report").json()
    assert body["forecast_comparison"]["verdict"] == "no_forecast"


@pytest.fixture
def report_ready(settings):
    settings.CAMPAIGN_REPORT_MIN_RELEASED = 100


def test_the_report_compares_the_frozen_forecast_with_the_released_result(
    merchant, other_merchant_client, all_purposes_approved, merchant_client, report_ready
):
    from campaigns.selectors import campaign_funnels, uplift_from_released
    from campaigns.uplift import campaign_forecast_freeze

    like, _, _ = _completed_campaign_with_a_planted_effect(merchant, name="Earlier")
    # A held-out group large enough that its purchases are released (above the suppression threshold): half of
    # 3,000 consumers, as many as 30 % of 5,000, with fewer deliveries for the report to count.
    result, _, _ = _completed_campaign_with_a_planted_effect(
        merchant, n=3000, start=5000, seed=9, name="Later", treated_share=0.5
    )
    result.include_segments.set([_segment(merchant, "audience", [])])
    frozen = campaign_forecast_freeze(campaign_id=result.pk, like_campaign_id=like.pk)
    assert frozen is not None and not frozen.get("refused")

    url = f"/api/v1/campaigns/{result.pk}/report"
    comparison = merchant_client.get(url).json()["forecast_comparison"]
    assert comparison["forecast"] == {"refused": False, **frozen}
    # The measured figure is post-processing of released counts only: the released uplift x the released size.
    funnels = campaign_funnels(result)
    shown = {
        (group, measure): released_count(f"campaign:{result.pk}:group:{group}:{measure}", getattr(f, measure))
        for group, f in funnels.items()
        for measure in ("size", "converted")
    }
    uplift = uplift_from_released(
        a_converted=shown["treatment", "converted"],
        a_size=shown["treatment", "size"],
        b_converted=shown["control", "converted"],
        b_size=shown["control", "size"],
    )
    n = shown["treatment", "size"]._noisy
    assert comparison["measured_incremental_conversions"] == pytest.approx(uplift.absolute * n)
    assert comparison["measured_low"] == pytest.approx(uplift.ci_low * n)
    low = frozen["incremental_low"]["size"] or 0
    from privacy.release import suppression_threshold

    top = frozen["incremental_high"]
    high = suppression_threshold(top["precision"]) if top["hidden"] else top["size"]
    expected = "inside" if low <= uplift.absolute * n <= high else "above" if uplift.absolute * n > high else "below"
    assert comparison["verdict"] == expected
    assert comparison["words"].startswith("The result, about")
    assert other_merchant_client.get(url).status_code == 404

    from campaigns.report_csv import campaign_report_csv_rows

    result.refresh_from_db()
    rows = {(r[0], r[2]): r for r in campaign_report_csv_rows(result)}
    assert rows["forecast", "incremental_high"][5] == frozen["incremental_high"]["display"]
    assert rows["forecast", expected][5] == comparison["words"]


def test_a_small_overlap_never_picks_the_campaign_to_learn_from(merchant, all_purposes_approved, merchant_client):
    """The automatic pick is named to the merchant: a campaign chosen because it shares a handful of consumers with
    the audience would say something about those few. Only a past campaign whose released overlap with the audience
    is at least MIN_AUDIENCE counts as similar; when none does, the forecast learns from the most recently completed
    one and says so."""
    from django.conf import settings

    from campaigns.uplift import campaign_forecast_exact

    first, browsers, _ = _completed_campaign_with_a_planted_effect(merchant, name="First")
    second, _, _ = _completed_campaign_with_a_planted_effect(merchant, start=5000, seed=9, name="Second")
    few = sorted(browsers)[: settings.MIN_AUDIENCE - 1]  # all of them reached by "First", none by "Second"
    draft = _scheduled_draft(merchant, _segment(merchant, "a few", few))
    exact = campaign_forecast_exact(campaign=draft)
    assert (exact.like_campaign_id, exact.chosen_by) == (second.pk, "most_recent")
    body = merchant_client.get(f"/api/v1/campaigns/{draft.pk}/forecast").json()
    assert (body["like_campaign_id"], body["chosen_by"]) == (second.pk, "most_recent")

    # Clearly enough: the overlaps compared are released ones, and a released count near MIN_AUDIENCE is suppressed.
    draft.include_segments.set([_segment(merchant, "enough", sorted(browsers))])
    exact = campaign_forecast_exact(campaign=draft)
    assert (exact.like_campaign_id, exact.chosen_by) == (first.pk, "most_similar")


def test_the_pick_is_made_on_released_overlaps_not_exact_ones(merchant, all_purposes_approved):
    """An exact overlap of MIN_AUDIENCE consumers passed the exact gate, so a merchant could tell from the choice
    whether a narrow audience had been in a past campaign. The overlaps compared are released: one this small is
    suppressed, and the pick falls back to the most recent campaign."""
    from django.conf import settings

    from campaigns.uplift import campaign_forecast_exact

    first, browsers, _ = _completed_campaign_with_a_planted_effect(merchant, name="First")
    second, _, _ = _completed_campaign_with_a_planted_effect(merchant, start=5000, seed=9, name="Second")
    draft = _scheduled_draft(merchant, _segment(merchant, "exactly enough", sorted(browsers)[: settings.MIN_AUDIENCE]))
    exact = campaign_forecast_exact(campaign=draft)
    assert (exact.like_campaign_id, exact.chosen_by) == (second.pk, "most_recent")


def test_each_campaign_learned_from_is_its_own_released_question(merchant, all_purposes_approved, monkeypatch):
    """The expected extra purchases learned from one campaign and from another are two questions: two picks that
    happen to give the same exact figures get their own noise and are each paid for once, and asking the same one
    again reads it back for free. The audience does not depend on the pick: one release for all picks."""
    from campaigns import uplift
    from privacy.selectors import budget_remaining

    draft = _scheduled_draft(merchant, _segment(merchant, "audience", []))
    first, second = (make_campaign(merchant, status=CampaignStatus.COMPLETED, name=n) for n in ("A", "B"))

    def same_figures(*, campaign, like_campaign_id=None):
        return uplift.ForecastExact(like_campaign_id, 500, 40.0, 20.0, 60.0, "picked")

    monkeypatch.setattr(uplift, "campaign_forecast_exact", same_figures)

    def releases() -> int:
        return budget_remaining(merchant_id=merchant.pk).releases

    before = releases()
    shown = uplift.campaign_forecast(campaign=draft, like_campaign_id=first.pk)
    assert releases() == before + 4
    assert uplift.campaign_forecast(campaign=draft, like_campaign_id=first.pk) == shown
    assert releases() == before + 4  # the same question again: read back, free
    other = uplift.campaign_forecast(campaign=draft, like_campaign_id=second.pk)
    assert releases() == before + 7  # three new figures; the audience is the same release
    assert other.audience == shown.audience
    for like, forecast in ((first, shown), (second, other)):
        prefix = f"campaign:{draft.pk}:forecast:like:{like.pk}"
        assert forecast.incremental == released_count(f"{prefix}:incremental", 40)
        assert forecast.low == released_count(f"{prefix}:incremental_low", 20)
        assert forecast.high == released_count(f"{prefix}:incremental_high", 60)


def test_the_forecast_waits_for_segments_not_computed_yet_as_the_reach_does(
    merchant, all_purposes_approved, merchant_client
):
    """The forecast's audience and the review's reach are one rule (the include segments' latest members minus the
    exclude segments'): while an excluded segment has no members worked out yet, neither pretends it excludes
    nobody."""
    from campaigns.services import audience_precheck
    from segments.models import Segment

    like, browsers, _ = _completed_campaign_with_a_planted_effect(merchant)
    draft = _scheduled_draft(merchant, _segment(merchant, "audience", browsers))
    pending = Segment.objects.create(merchant=merchant, name="Bought lately", definition="fixed", created_by="test")
    draft.exclude_segments.set([pending])
    assert audience_precheck(draft) is None  # the review: "the reach is known once it is"
    response = merchant_client.get(f"/api/v1/campaigns/{draft.pk}/forecast", {"like": like.pk})
    assert response.status_code == 409, response.json()
    error = response.json()["error"]
    assert error["code"] == "segment_not_computed" and "not been computed yet" in error["message"]


def test_the_most_similar_campaign_is_found_reading_the_candidates_consumers_in_one_query(merchant):
    """forecast_candidates counts each candidate's groups; choosing among them reads their consumers once, in one
    query however many candidates there are (it was one query per candidate)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from pyroaring import BitMap

    from campaigns.models import Delivery, Group
    from campaigns.uplift import _most_similar, forecast_candidates

    from .conftest import make_consumers

    ids = make_consumers(1500)
    past = []
    for k in range(4):  # 400 consumers each (200 treated, 200 held out), each campaign 250 further along
        campaign = make_campaign(
            merchant, name=f"Past {k}", status=CampaignStatus.COMPLETED, completed_at=timezone.now() - timedelta(k)
        )
        reached = ids[250 * k : 250 * k + 400]
        Delivery.objects.bulk_create(
            Delivery(
                campaign=campaign,
                consumer_id=c,
                group=Group.TREATMENT if i % 2 else Group.CONTROL,
                created_at=campaign.completed_at,
            )
            for i, c in enumerate(reached)
        )
        past.append(campaign)
    candidates = forecast_candidates(merchant_id=merchant.pk)
    assert [c.pk for c in candidates] == [c.pk for c in past]  # newest first
    with CaptureQueriesContext(connection) as queries:
        chosen = _most_similar(candidates, BitMap(ids[500:900]), campaign=make_campaign(merchant, name="Draft"))
    assert chosen == past[2].pk  # it reached exactly this audience
    reads = [q["sql"] for q in queries if Delivery._meta.db_table in q["sql"]]
    assert len(reads) == 1, reads


def test_a_launch_starts_the_send_before_the_forecast(merchant, all_purposes_approved, monkeypatch):
    """The forecast never holds up a launch: its task is queued after the activation's, so in embedded mode (eager
    tasks, run as they are queued) the send starts before any model is trained."""
    from django.test import TestCase

    from campaigns import services
    from campaigns.models import ScheduleKind

    started: list[str] = []
    monkeypatch.setattr(services, "_start_activation", lambda campaign_id: started.append("activation"))
    monkeypatch.setattr(services, "_start_forecast_freeze", lambda campaign_id, like: started.append("forecast"))
    draft = _scheduled_draft(merchant, _segment(merchant, "audience", []))
    draft.schedule_kind, draft.scheduled_at = ScheduleKind.NOW, None
    draft.save(update_fields=["schedule_kind", "scheduled_at"])
    monkeypatch.setattr(services, "audience_precheck", lambda campaign: None)  # the audience is not the question
    with TestCase.captureOnCommitCallbacks(execute=True):
        services.campaign_launch(campaign=draft, actor="test")
    assert started == ["activation", "forecast"]


def test_a_forecast_is_said_to_be_coming_only_while_one_can_come(merchant, all_purposes_approved):
    """A recurring series' runs never get a forecast, and a launch's freeze gives up within its retries: their
    reports say none was frozen, not that one is being made, however long they run."""
    from campaigns.selectors import campaign_report_public

    now = timezone.now()
    series = make_campaign(merchant, name="Weekly", status=CampaignStatus.SCHEDULED, launched_at=now)
    run = make_campaign(merchant, name="Weekly, run 1", status=CampaignStatus.RUNNING, launched_at=now, parent=series)
    stale = make_campaign(
        merchant, name="Long ago", status=CampaignStatus.RUNNING, launched_at=now - timedelta(hours=2)
    )
    fresh = make_campaign(merchant, name="Just now", status=CampaignStatus.RUNNING, launched_at=now)
    for campaign in (run, stale):
        assert (
            campaign_report_public(campaign).forecast.words == "No forecast was frozen when this campaign was launched."
        )
    assert campaign_report_public(fresh).forecast.words == "The forecast is still being made."
