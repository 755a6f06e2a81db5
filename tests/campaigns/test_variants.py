"""A/B/n message variants: deterministic assignment, rendering per variant, the per-variant report and the
automatic winner."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.assignment import variant_pick, variant_positions
from campaigns.models import Campaign, CampaignVariant, Delivery, Group
from campaigns.selectors import PublicVariant, campaign_variants_report_public, variant_subject
from campaigns.winner import variant_winner
from privacy.release import count_from_noisy
from tests.release_helpers import released_public

from .conftest import make_campaign, run_activation
from .test_api import URL, body, create, launch

SHARES = st.lists(st.integers(min_value=1, max_value=60), min_size=2, max_size=5).filter(lambda s: sum(s) <= 100)


@settings(max_examples=60, deadline=None)
@given(
    campaign_id=st.integers(min_value=1, max_value=2**40),
    ids=st.lists(st.integers(min_value=0, max_value=2**32 - 1), min_size=1, max_size=50),
    shares=SHARES,
)
def test_vectorised_variant_assignment_agrees_with_the_reference(campaign_id, ids, shares):
    shares = [*shares[:-1], shares[-1] + 100 - sum(shares)]
    vectorised = variant_positions(campaign_id, np.array(ids, dtype=np.uint32), shares).tolist()
    assert vectorised == [variant_pick(campaign_id, i, shares) for i in ids]


def test_variant_shares_are_respected_and_assignment_is_stable():
    ids = np.arange(1, 40_001, dtype=np.uint32)
    positions = variant_positions(7, ids, [50, 30, 20])
    counts = Counter(positions.tolist())
    for position, share in ((1, 0.5), (2, 0.3), (3, 0.2)):
        assert abs(counts[position] / len(ids) - share) < 0.015
    assert variant_positions(7, ids, [50, 30, 20]).tolist() == positions.tolist()
    assert variant_positions(8, ids, [50, 30, 20]).tolist() != positions.tolist()  # another campaign, another split


def variants_body(world, shares=(50, 50)):
    return body(
        world,
        variants=[
            {"title_template": f"Variant {letter} from {{store_name}}", "body_template": "Take a look.", "share": share}
            for letter, share in zip("ABCDE", shares, strict=False)
        ],
        title_template=None,
        body_template=None,
    )


def _without_none(data):
    return {k: v for k, v in data.items() if v is not None}


def test_create_a_campaign_with_variants(merchant_client, world):
    response = merchant_client.post(URL, _without_none(variants_body(world)), format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert [v["share"] for v in created["variants"]] == [50, 50]
    assert created["title_template"] == "Variant A from {store_name}"  # the campaign's own message is A's
    # Editing replaces them; an empty list turns the test off.
    patched = merchant_client.patch(f"{URL}{created['id']}", {"variants": []}, format="json").json()
    assert patched["variants"] == []


@pytest.mark.parametrize(
    ("shares", "expected"),
    [((60, 30), "add up to 90%"), ((100,), "2 to 5 message variants")],
)
def test_variant_problems_are_prose(merchant_client, world, shares, expected):
    response = merchant_client.post(URL, _without_none(variants_body(world, shares)), format="json")
    assert response.status_code == 400
    [message] = response.json()["error"]["details"]["variants"]
    assert expected in message and "share" not in message.split(" ")[0]


def test_a_variant_template_error_names_the_variant(merchant_client, world):
    data = _without_none(variants_body(world))
    data["variants"][1]["body_template"] = "Hi {nope}"
    response = merchant_client.post(URL, data, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["variants"][0].startswith("Variant B, message: Unknown placeholder")


def test_activation_sends_each_consumer_their_variant(merchant, dm_approved, consented_consumers):
    campaign = make_campaign(merchant)
    for position, share in ((1, 70), (2, 30)):
        CampaignVariant.objects.create(
            campaign=campaign,
            position=position,
            title_template=f"Message {'AB'[position - 1]}",
            body_template="Hello",
            share=share,
        )
    run_activation(campaign, consented_consumers)
    treated = list(Delivery.objects.filter(campaign=campaign, group=Group.TREATMENT))
    assert treated and {d.variant for d in treated} == {1, 2}
    for delivery in treated:
        assert delivery.variant == variant_pick(campaign.pk, delivery.consumer_id, [70, 30])
        assert delivery.title == f"Message {'AB'[delivery.variant - 1]}"
    assert not Delivery.objects.filter(campaign=campaign, group=Group.CONTROL, variant__isnull=False).exists()


def test_a_chosen_winner_goes_to_everyone(merchant, dm_approved, consented_consumers):
    series = make_campaign(merchant, winner_variant=2)
    child = make_campaign(merchant, parent=series)
    for campaign in (series, child):
        for position in (1, 2):
            CampaignVariant.objects.create(
                campaign=campaign, position=position, title_template=f"M{position}", body_template="b", share=50
            )
    run_activation(child, consented_consumers)
    assert set(Delivery.objects.filter(campaign=child, group=Group.TREATMENT).values_list("variant", flat=True)) == {2}


def test_report_shows_each_variant_released(merchant_client, world, django_capture_on_commit_callbacks, settings):
    settings.CAMPAIGN_REPORT_MIN_RELEASED = 10
    created = create(merchant_client, world, **_without_none(variants_body(world)))
    launch(merchant_client, created["id"], django_capture_on_commit_callbacks)
    campaign = Campaign.objects.get(pk=created["id"])
    report = merchant_client.get(f"{URL}{created['id']}/report").json()
    assert [v["variant"] for v in report["variants"]] == ["A", "B"]
    for row, position in zip(report["variants"], (1, 2), strict=True):
        exact = Delivery.objects.filter(campaign=campaign, group=Group.TREATMENT, variant=position).count()
        assert row["size"] == released_public(variant_subject(campaign.pk, position, "size"), exact)
    assert report["variants"][0]["versus_first"] is None
    assert report["variants"][1]["too_early"] is True  # nobody bought yet: hidden conversions
    assert [v.letter for v in campaign_variants_report_public(campaign)] == ["A", "B"]


def _row(letter: str, size: int, converted: int) -> PublicVariant:
    size_c = count_from_noisy(noisy=size, precision="standard")
    conv_c = count_from_noisy(noisy=converted, precision="standard")
    return PublicVariant(
        position="ABC".index(letter) + 1,
        letter=letter,
        share=50,
        title_template="t",
        size=size_c,
        sent=size_c,
        opened=size_c,
        clicked=size_c,
        converted=conv_c,
        conversion_rate=converted / size,
        versus_first=None,
        too_early=False,
    )


def test_the_winner_needs_the_minimum_sample_and_a_clear_lead():
    clear = [_row("A", 5000, 250), _row("B", 5000, 400)]
    picked = variant_winner(clear, min_sample=1000)
    assert picked is not None and picked[0].letter == "B"
    assert "Variant B converted best" in picked[1] and "at least 1,000 recipients" in picked[1]
    assert variant_winner(clear, min_sample=10_000) is None  # not enough recipients yet
    assert variant_winner([_row("A", 5000, 250), _row("B", 5000, 260)], min_sample=1000) is None  # could be chance


def test_a_series_picks_its_winner_from_the_last_run_and_records_why(merchant, settings):
    from datetime import timedelta

    from django.utils import timezone

    from campaigns.deliveries import Renderer
    from campaigns.models import CampaignStatus, DeliveryStatus, Phase, ScheduleKind, TrackingEvent, TrackingKind
    from campaigns.services import campaign_occurrence_create
    from privacy.models import AuditEntry

    from .conftest import make_consumers

    settings.CAMPAIGN_VARIANT_MIN_SAMPLE = 200
    series = make_campaign(merchant, schedule_kind=ScheduleKind.RECURRING, recurrence="0 9 * * 1", auto_winner=True)
    sent = timezone.now() - timedelta(days=8)
    run = make_campaign(merchant, parent=series, occurrence_at=sent, status=CampaignStatus.COMPLETED, phase=Phase.DONE)
    for campaign in (series, run):
        for position in (1, 2):
            CampaignVariant.objects.create(
                campaign=campaign, position=position, title_template=f"M{position}", body_template="b", share=50
            )
    ids = make_consumers(1000, start=70_000)
    Delivery.objects.bulk_create(
        [
            Delivery(
                campaign=run,
                consumer_id=cid,
                group=Group.TREATMENT,
                variant=1 + i % 2,
                status=DeliveryStatus.DISPATCHED,
                created_at=sent,
                dispatched_at=sent,
            )
            for i, cid in enumerate(ids)
        ]
    )
    deliveries = list(Delivery.objects.filter(campaign=run))
    # 450 of 500 against 300 of 500: both more than six noise deviations above the suppression threshold (220 was
    # under three, and ids that put the noise low hid variant A on PostgreSQL).
    buyers = [d for d in deliveries if d.variant == 2][:450] + [d for d in deliveries if d.variant == 1][:300]
    TrackingEvent.objects.bulk_create(
        [
            TrackingEvent(
                delivery=d, kind=TrackingKind.CONVERTED, occurred_at=sent + timedelta(hours=2), idempotency_key="c"
            )
            for d in buyers
        ]
    )
    child = campaign_occurrence_create(series_id=series.pk, at=timezone.now())
    series.refresh_from_db()
    assert series.winner_variant == 2 and series.winner_picked_at is not None
    assert (
        series.winner_reason.startswith("Variant B converted best")
        and "Decided from the run of" in series.winner_reason
    )
    assert AuditEntry.objects.filter(action="campaign.variant_winner", object_id=str(series.pk)).count() == 1
    assert child is not None and Renderer.for_campaign(child).winner == 2  # this run and later ones send B only
