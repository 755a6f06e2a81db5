import json
from decimal import Decimal

import pytest

from campaigns.models import Campaign, Delivery
from campaigns.selectors import campaign_subject
from segments.services import segment_create, segment_refresh
from tests.factories import CampaignFactory, SegmentFactory
from tests.release_helpers import released_public


@pytest.fixture
def audience(population, merchant, approve_activity):
    """A refreshed segment of 400 SG consumers (300 of them opted in) and the direct-marketing basis."""
    approve_activity("direct_marketing")
    return SegmentFactory(merchant=merchant, name="Singapore", expression="country:SG", refresh=True)


def wizard_data(segment, **overrides):
    data = {
        "name": "Weekend sale",
        "include_segments": [segment.pk],
        "title_template": "{discount} off this weekend",
        "body_template": "Hello from {store_name}! Code {coupon_code}.",
        "personalised_products": "0",
        "coupon_code": "WEEKEND",
        "discount_percent": "15",
        "channel": "inbox",
        "schedule_kind": "now",
        "frequency_window_days": "7",
        "control_share": "20",
        "attribution_window_days": "7",
    }
    data.update(overrides)
    return data


def draft(merchant, segment, **overrides):
    values = {
        "name": "Weekend sale",
        "include_segments": [segment],
        "title_template": "{discount} off",
        "body_template": "Code {coupon_code}",
        "coupon_code": "WEEKEND",
        "discount_percent": Decimal("15"),
        "personalised_products": 0,
        "control_share": Decimal("0.2"),
    }
    values.update(overrides)
    return CampaignFactory(merchant=merchant, actor="test", **values)


def test_wizard_saves_a_draft_with_every_setting(portal_client, audience, merchant):
    response = portal_client.post("/campaigns/new/", wizard_data(audience, frequency_cap="2"))
    campaign = Campaign.objects.get(merchant=merchant)
    assert response.status_code == 302 and response["Location"] == f"/campaigns/{campaign.pk}/"
    assert campaign.status == "draft"
    assert campaign.control_share == Decimal("0.200")
    assert campaign.frequency_cap == 2
    assert list(campaign.include_segments.values_list("pk", flat=True)) == [audience.pk]


def test_review_shows_consent_filtered_reach_and_the_message(portal_client, audience, merchant):
    campaign = draft(merchant, audience)
    page = portal_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    reach = released_public(campaign_subject(campaign.pk, "audience"), 300)["display"]
    assert f'data-testid="campaign-reach">{reach}<' in page
    assert "15% off" in page and "Code WEEKEND" in page
    assert "Launch campaign" in page


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"include_segments": []}, "include_segments"),
        ({"title_template": "{nonsense}"}, "title_template"),
        ({"body_template": "Unclosed {store_name"}, "body_template"),
        ({"coupon_code": "no spaces allowed"}, "coupon_code"),
        ({"discount_percent": "150"}, "discount_percent"),
        ({"control_share": "80"}, "control_share"),
        ({"schedule_kind": "at", "scheduled_at": ""}, "scheduled_at"),
        ({"schedule_kind": "at", "scheduled_at": "2001-01-01T10:00"}, "scheduled_at"),
        ({"schedule_kind": "recurring", "recurrence": "every day"}, "recurrence"),
        ({"frequency_cap": "0"}, "frequency_cap"),
        ({"personalised_products": "99"}, "personalised_products"),
        ({"name": ""}, "name"),
    ],
)
def test_every_bad_answer_is_refused_next_to_its_field(portal_client, audience, overrides, field):
    response = portal_client.post("/campaigns/new/", wizard_data(audience, **overrides))
    assert response.status_code == 400
    assert f'id="id_{field}_error"' in response.content.decode()
    assert not Campaign.objects.exists()


def test_another_merchants_segment_cannot_be_chosen(portal_client, audience, other_merchant):
    theirs = segment_create(merchant=other_merchant, name="Theirs", expression="country:MY", actor="test")
    response = portal_client.post("/campaigns/new/", wizard_data(audience, include_segments=[theirs.pk]))
    assert response.status_code == 400
    assert "Theirs" not in response.content.decode()
    assert not Campaign.objects.exists()


def test_launch_sends_and_the_report_shows_deliveries(
    portal_client, audience, merchant, django_capture_on_commit_callbacks
):
    campaign = draft(merchant, audience)
    with django_capture_on_commit_callbacks(execute=True):
        response = portal_client.post(f"/campaigns/{campaign.pk}/launch/")
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == "completed"
    assert Delivery.objects.filter(campaign=campaign).count() == 300
    page = portal_client.get(f"/campaigns/{campaign.pk}/report/").content.decode()
    treatment = campaign.treatment_count  # about 80% of 300; the exact split is a hash of campaign and consumer
    assert 200 < treatment < 280
    shown = released_public(campaign_subject(campaign.pk, "size", "treatment"), treatment)["display"]
    assert f'data-testid="report-treatment-size">{shown}<' in page
    assert "Funnel per group" in page and '<svg class="chart"' in page
    progress = portal_client.get(f"/campaigns/{campaign.pk}/progress.json").json()
    assert progress["finished"] and progress["percent_dispatched"] == 100
    # The list shows the campaign's KPIs, the report's released figures (nobody bought yet: hidden, no rate).
    listed = portal_client.get("/campaigns/").content.decode()
    sent = released_public(campaign_subject(campaign.pk, "dispatched"), campaign.dispatched_count)["display"]
    bought = released_public(campaign_subject(campaign.pk, "converted", "treatment"), 0)["display"]
    assert f'<td class="num">{sent}</td><td class="num">{bought}</td>' in listed
    assert "Sending finished" in portal_client.get(f"/campaigns/{campaign.pk}/").content.decode()


def test_launch_refusals_are_explained(portal_client, population, merchant, approve_activity):
    approve_activity("direct_marketing")
    small = segment_create(merchant=merchant, name="Chess", expression="interest:chess", actor="test")
    segment_refresh(segment_id=small.pk, actor="test")
    campaign = draft(merchant, small)
    page = portal_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "cannot be launched" in page
    response = portal_client.post(f"/campaigns/{campaign.pk}/launch/", follow=True)
    assert "Not launched" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == "draft"


@pytest.mark.parametrize("like", ["abc", "²", "0", "-3", "9" * 30, "12 "])
def test_a_launch_learning_from_text_that_is_no_id_is_refused_not_launched_automatically(
    portal_client, audience, merchant, like
):
    campaign = draft(merchant, audience)
    response = portal_client.post(f"/campaigns/{campaign.pk}/launch/", {"like": like})
    assert response.status_code == 400
    assert "Not launched: The campaign to learn from must be given by its id." in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == "draft"


def test_preview_uses_a_consumer_of_the_audience_and_checks_placeholders(portal_client, audience):
    body = portal_client.post(
        "/campaigns/preview/",
        json.dumps(
            {
                "title_template": "{discount} off at {store_name}",
                "body_template": "Use {coupon_code}",
                "coupon_code": "X1",
                "discount_percent": "12.5",
                "personalised_products": 0,
                "include_segment_ids": [audience.pk],
            }
        ),
        content_type="application/json",
    ).json()
    assert body["title"] == "12.5% off at Acme Outdoor"
    assert body["body"] == "Use X1"
    bad = portal_client.post(
        "/campaigns/preview/", json.dumps({"title_template": "{product_4_title}"}), content_type="application/json"
    ).json()
    assert "product 4" in bad["problems"]["title_template"][0]


@pytest.mark.parametrize(
    "payload",
    [
        "nope",
        "[1]",
        '{"personalised_products": "x", "discount_percent": "NaN"}',
        '{"include_segment_ids": "12", "discount_percent": "1e999999"}',
        '{"include_segment_ids": [99999999999999999999999], "title_template": 5}',
        '{"sample": Infinity, "personalised_products": -Infinity}',
        '{"sample": [2], "include_segment_ids": [1]}',
    ],
)
def test_preview_never_fails_on_garbage(portal_client, audience, payload):
    response = portal_client.post("/campaigns/preview/", payload, content_type="application/json")
    assert response.status_code in (200, 400)


def test_another_merchants_campaign_is_a_404_everywhere(portal_client, population, other_merchant):
    theirs_segment = segment_create(merchant=other_merchant, name="T", expression="country:MY", actor="test")
    theirs = draft(other_merchant, theirs_segment)
    for url in ("", "edit/", "report/", "progress.json"):
        assert portal_client.get(f"/campaigns/{theirs.pk}/{url}").status_code == 404
    for url in ("launch/", "cancel/", "delete/"):
        assert portal_client.post(f"/campaigns/{theirs.pk}/{url}").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "draft"


def test_analysts_cannot_create_or_launch(analyst_client, audience, merchant):
    campaign = draft(merchant, audience)
    assert analyst_client.get("/campaigns/new/").status_code == 403
    assert analyst_client.post(f"/campaigns/{campaign.pk}/launch/").status_code == 403
    page = analyst_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Launch campaign" not in page


def test_only_drafts_can_be_edited(portal_client, audience, merchant, django_capture_on_commit_callbacks):
    campaign = draft(merchant, audience)
    with django_capture_on_commit_callbacks(execute=True):
        portal_client.post(f"/campaigns/{campaign.pk}/launch/")
    response = portal_client.get(f"/campaigns/{campaign.pk}/edit/", follow=True)
    assert "Only a draft can be changed" in response.content.decode()


def _initial_value(page: str, name: str) -> str:
    import html
    import re

    tag = re.search(rf'<(?:input|textarea)[^>]*name="{name}"[^>]*>([^<]*)', page)
    assert tag, name
    value = re.search(r'value="([^"]*)"', tag.group(0))
    return html.unescape(value.group(1) if value else tag.group(1).lstrip("\n"))


def test_the_wizards_own_default_message_saves_without_an_offer(portal_client, audience, merchant):
    """The starting title and message must not need the optional offer (they used {discount} and {coupon_code})."""
    page = portal_client.get("/campaigns/new/").content.decode()
    data = wizard_data(
        audience,
        title_template=_initial_value(page, "title_template"),
        body_template=_initial_value(page, "body_template"),
        personalised_products="3",
        coupon_code="",
        discount_percent="",
    )
    response = portal_client.post("/campaigns/new/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Campaign.objects.get(merchant=merchant).has_offer is False


def test_the_wizard_reads_and_shows_the_merchants_local_time(portal_client, audience, merchant):
    from datetime import UTC, datetime

    merchant.time_zone = "Asia/Singapore"  # UTC+8, no daylight saving
    merchant.save()
    data = wizard_data(audience, schedule_kind="at", scheduled_at="2031-03-04T09:30")
    assert portal_client.post("/campaigns/new/", data).status_code == 302
    campaign = Campaign.objects.get(merchant=merchant)
    assert campaign.scheduled_at == datetime(2031, 3, 4, 1, 30, tzinfo=UTC)
    page = portal_client.get(f"/campaigns/{campaign.pk}/edit/").content.decode()
    assert 'value="2031-03-04T09:30"' in page and "Asia/Singapore" in page


def test_the_repeat_picker_writes_the_schedule(portal_client, audience, merchant):
    data = wizard_data(
        audience, schedule_kind="recurring", repeat_every="weekly", repeat_time="18:15", repeat_weekday="3"
    )
    assert portal_client.post("/campaigns/new/", data).status_code == 302
    assert Campaign.objects.get(merchant=merchant).recurrence == "15 18 * * 3"


def test_a_too_frequent_custom_schedule_is_refused_in_prose(portal_client, audience):
    data = wizard_data(audience, schedule_kind="recurring", repeat_every="custom", recurrence="*/5 * * * *")
    page = portal_client.post("/campaigns/new/", data).content.decode()
    assert "runs must be at least 1 day apart" in page


def test_wizard_saves_variants(portal_client, audience, merchant):
    data = wizard_data(
        audience,
        variant_a_share="60",
        variant_b_title="Another title",
        variant_b_body="Another message from {store_name}",
        variant_b_share="40",
    )
    assert portal_client.post("/campaigns/new/", data).status_code == 302
    campaign = Campaign.objects.get(merchant=merchant)
    assert [(v.position, v.share, v.title_template) for v in campaign.variants.all()] == [
        (1, 60, "{discount} off this weekend"),
        (2, 40, "Another title"),
    ]
    bad = wizard_data(audience, variant_b_title="B", variant_b_body="b", variant_b_share="30", variant_a_share="60")
    assert "add up to 90%" in portal_client.post("/campaigns/new/", bad).content.decode()


def test_scheduled_and_cancelled_campaigns_show_their_true_state(portal_client, audience, merchant):
    from datetime import UTC, datetime

    from campaigns.services import campaign_cancel, campaign_launch

    merchant.time_zone = "Asia/Singapore"
    merchant.save()
    campaign = draft(merchant, audience, schedule_kind="at", scheduled_at=datetime(2031, 3, 4, 1, 30, tzinfo=UTC))
    campaign_launch(campaign=campaign, actor="test")
    page = portal_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'data-testid="campaign-state">Scheduled<' in page and "Sending…" not in page
    assert "sends 4 Mar 2031 09:30 (Asia/Singapore)" in page  # local time, not UTC
    listed = portal_client.get("/campaigns/").content.decode()
    assert "sends 4 Mar 2031 09:30" in listed and ">Launched<" not in listed
    assert portal_client.get(f"/campaigns/{campaign.pk}/progress.json").json()["heading"] == "Scheduled"
    campaign_cancel(campaign=campaign, actor="test")
    page = portal_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'data-testid="campaign-state">Cancelled<' in page and "Sending…" not in page


def test_report_shows_daily_figures_released_and_exports_csv(portal_client, audience, merchant):
    import csv
    import io
    from datetime import timedelta

    from django.utils import timezone

    from campaigns.models import CampaignStatus, DeliveryStatus, Group, Phase, TrackingEvent, TrackingKind
    from campaigns.timeseries import day_subject

    campaign = draft(merchant, audience)
    sent = timezone.now() - timedelta(days=2)
    Campaign.objects.filter(pk=campaign.pk).update(
        status=CampaignStatus.COMPLETED, phase=Phase.DONE, started_at=sent, launched_at=sent
    )
    from consumers.models import Consumer

    consumers = list(Consumer.objects.order_by("pk").values_list("pk", flat=True)[:150])
    Delivery.objects.bulk_create(
        [
            Delivery(
                campaign=campaign,
                consumer_id=cid,
                group=Group.TREATMENT,
                status=DeliveryStatus.DISPATCHED,
                created_at=sent,
                dispatched_at=sent,
            )
            for cid in consumers
        ]
    )
    opened_at = sent + timedelta(hours=1)
    TrackingEvent.objects.bulk_create(
        [
            TrackingEvent(delivery=d, kind=TrackingKind.OPENED, occurred_at=opened_at, idempotency_key="o")
            for d in Delivery.objects.filter(campaign=campaign)
        ]
    )
    page = portal_client.get(f"/campaigns/{campaign.pk}/report/").content.decode()
    day = timezone.localtime(opened_at, merchant.zone).date()
    expected = released_public(day_subject(campaign.pk, "treatment", "opened", day), len(consumers))["display"]
    assert 'data-testid="daily-table"' in page and f'<td class="num">{expected}</td>' in page
    assert "too early to tell" in page and "Money is in SGD" in page
    response = portal_client.get(f"/campaigns/{campaign.pk}/report.csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:3] == ["section", "group", "measure"]
    [opened] = [r for r in rows if r[0] == "daily" and r[2] == "opened" and r[3] == day.isoformat()]
    assert opened[5] == expected
    size = [r for r in rows if r[:3] == ["funnel", "treatment", "size"]][0]
    assert size[5] == released_public(campaign_subject(campaign.pk, "size", "treatment"), len(consumers))["display"]


def test_the_preview_as_a_chosen_sample_never_names_them(portal_client, audience):
    from consumers.models import Consumer

    response = portal_client.post(
        "/campaigns/preview/",
        {"title_template": "Hi", "body_template": "x", "include_segment_ids": [audience.pk], "sample": 2},
        content_type="application/json",
    ).json()
    assert response["sample"] == 2 and "Sample consumer 2" in response["note"]
    text = json.dumps(response)
    assert not any(p in text for p in Consumer.objects.values_list("pseudonym", flat=True))


def test_review_previews_every_variant_for_the_same_sample(portal_client, audience, merchant):
    from campaigns.models import CampaignVariant

    campaign = draft(merchant, audience)
    for position, title in ((1, "{discount} off"), (2, "Second idea at {store_name}")):
        CampaignVariant.objects.create(
            campaign=campaign, position=position, title_template=title, body_template="Code {coupon_code}", share=50
        )
    page = portal_client.get(f"/campaigns/{campaign.pk}/?sample=2").content.decode()
    assert 'data-testid="variant-preview"' in page and f"Second idea at {merchant.name}" in page
    assert '<option value="2" selected>sample consumer 2</option>' in page


def test_a_segment_whose_members_cannot_be_read_is_named_on_the_review_and_refuses_the_launch(
    portal_client, merchant_client, audience, merchant
):
    from segments.evaluation import snapshot_cache_clear
    from segments.models import SegmentSnapshot

    campaign = draft(merchant, audience)
    SegmentSnapshot.objects.filter(segment=audience).update(members=b"not a bitmap")
    snapshot_cache_clear()
    response = portal_client.get(f"/campaigns/{campaign.pk}/")
    assert response.status_code == 200
    assert "The members of the segment “Singapore” could not be read; refresh it to rebuild them." in (
        response.content.decode()
    )
    card = portal_client.get(f"/campaigns/{campaign.pk}/forecast/")
    assert card.status_code == 200 and 'data-testid="forecast-refused"' in card.content.decode()
    launched = portal_client.post(f"/campaigns/{campaign.pk}/launch/", follow=True).content.decode()
    assert "Not launched" in launched and "could not be read" in launched
    api = merchant_client.post(f"/api/v1/campaigns/{campaign.pk}/launch", {}, format="json")
    assert api.status_code == 409 and api.json()["error"]["code"] == "segment_members_unreadable"
    campaign.refresh_from_db()
    assert campaign.status == "draft"
