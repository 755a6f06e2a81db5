"""Portal: the review step's forecast (or its plain refusal), the report's comparison, persuadables from a report,
and officers' fairness spread of persuadable segments in the admin."""

from __future__ import annotations

from tests.campaigns.conftest import make_campaign
from tests.campaigns.test_forecast import _scheduled_draft, _segment
from tests.campaigns.test_uplift import _completed_campaign_with_a_planted_effect
from tests.release_helpers import released_count


def test_the_review_step_renders_at_once_and_fetches_the_released_forecast_or_its_refusal(
    merchant, other_merchant, all_purposes_approved, portal_client
):
    from campaigns.models import CampaignStatus
    from campaigns.uplift import campaign_forecast_exact
    from privacy.selectors import budget_remaining

    draft = _scheduled_draft(merchant, _segment(merchant, "audience", []))
    page = portal_client.get(f"/campaigns/{draft.pk}/").content.decode()
    # The page does not train a model: the card says it is working and points at the fragment it fetches.
    assert "Working out the forecast…" in page and 'data-testid="forecast-incremental"' not in page
    assert f'data-forecast-url="/campaigns/{draft.pk}/forecast/"' in page
    card = portal_client.get(f"/campaigns/{draft.pk}/forecast/").content.decode()
    assert 'data-testid="forecast-refused"' in card and "Not enough past campaigns to forecast" in card

    like, browsers, _ = _completed_campaign_with_a_planted_effect(merchant, name="Spring sale")
    draft.include_segments.set([_segment(merchant, "browsers", browsers)])
    page = portal_client.get(f"/campaigns/{draft.pk}/", {"like": like.pk}).content.decode()
    assert f'data-forecast-url="/campaigns/{draft.pk}/forecast/?like={like.pk}"' in page
    assert f'<input type="hidden" name="like" value="{like.pk}">' in page  # the launch learns from the same one
    card = portal_client.get(f"/campaigns/{draft.pk}/forecast/", {"like": like.pk}).content.decode()
    exact = campaign_forecast_exact(campaign=draft, like_campaign_id=like.pk)
    shown = [released_count(subject, count).display for subject, count in exact.figures(draft.pk)]
    assert f'data-testid="forecast-incremental">{shown[1]}<' in card
    assert f"95% interval {shown[2]} to {shown[3]}" in card
    assert "Learned from “Spring sale”, which you picked" in card
    high = released_count(*exact.figures(draft.pk)[3])
    too_few = f"we expect {shown[3]} more purchases than if you did not, in 19 cases out of 20: too few to show"
    assert (too_few in card) == high.suppressed and "about fewer than" not in card
    # Viewed again: the same figures, and no more privacy budget spent.
    spent = budget_remaining(merchant_id=merchant.pk)
    again = portal_client.get(f"/campaigns/{draft.pk}/forecast/", {"like": like.pk}).content.decode()
    assert again == card
    after = budget_remaining(merchant_id=merchant.pk)
    assert (after.spent, after.releases) == (spent.spent, spent.releases)

    foreign = make_campaign(other_merchant, status=CampaignStatus.DRAFT)
    assert portal_client.get(f"/campaigns/{foreign.pk}/").status_code == 404
    assert portal_client.get(f"/campaigns/{foreign.pk}/forecast/").status_code == 404


def test_persuadables_from_a_report_become_a_segment_with_a_released_evaluation(
    merchant, other_merchant, all_purposes_approved, portal_client
):
    from campaigns.models import CampaignStatus
    from segments.models import Segment, SegmentKind

    campaign, _, _ = _completed_campaign_with_a_planted_effect(merchant, name="Spring sale")
    report = portal_client.get(f"/campaigns/{campaign.pk}/report/").content.decode()
    assert 'data-testid="persuadables-form"' in report and 'data-testid="forecast-verdict"' in report
    assert "No forecast was frozen when this campaign was launched." in report

    url = f"/campaigns/{campaign.pk}/persuadables/"
    response = portal_client.post(url, {"name": "Movable", "by": "share", "amount": "40"})
    segment = Segment.objects.get(name="Movable")
    assert response.status_code == 302 and response["Location"] == f"/segments/{segment.pk}/"
    assert segment.kind == SegmentKind.PERSUADABLE and segment.lookalike_spec["share"] == 0.4
    page = portal_client.get(f"/segments/{segment.pk}/").content.decode()
    assert "the top 40% by predicted uplift" in page
    assert 'data-testid="persuadables-evaluation"' in page  # in words, from released counts (or why it cannot)
    # Usable like any segment: offered in the campaign wizard.
    assert f'value="{segment.pk}"' in portal_client.get("/campaigns/new/").content.decode()

    bad = portal_client.post(url, {"name": "Nope", "by": "share", "amount": "140"}, follow=True)
    assert "a whole percent from 1 to 100" in bad.content.decode()
    foreign = make_campaign(other_merchant, status=CampaignStatus.COMPLETED)
    assert portal_client.post(f"/campaigns/{foreign.pk}/persuadables/", {"amount": "10"}).status_code == 404
    assert portal_client.get(f"/campaigns/{foreign.pk}/report/").status_code == 404


def test_officers_see_how_a_persuadable_segment_spreads_against_the_population(
    merchant, all_purposes_approved, officer, client
):
    from campaigns.uplift import persuadables_create

    campaign, _, _ = _completed_campaign_with_a_planted_effect(merchant)
    segment = persuadables_create(
        campaign_id=campaign.pk, merchant_id=merchant.pk, name="Persuadables", size=150, actor="test"
    )
    client.force_login(officer)
    page = client.get(f"/admin/segments/segment/{segment.pk}/change/").content.decode()
    assert "Spread over age ranges and countries" in page
    assert "members; flagged:" in page and "Population share" in page
    rule = _segment(merchant, "rule", [])
    assert (
        "Shown for persuadable and lookalike segments"
        in client.get(f"/admin/segments/segment/{rule.pk}/change/").content.decode()
    )


def test_the_card_says_when_no_past_campaign_shares_enough_of_the_audience(
    merchant, all_purposes_approved, portal_client, settings
):
    _, browsers, _ = _completed_campaign_with_a_planted_effect(merchant, name="First")
    _completed_campaign_with_a_planted_effect(merchant, start=5000, seed=9, name="Second")
    draft = _scheduled_draft(merchant, _segment(merchant, "a few", sorted(browsers)[:20]))
    card = portal_client.get(f"/campaigns/{draft.pk}/forecast/").content.decode()
    assert "First" not in card  # the campaign those 20 received is not named
    assert (
        "Learned from “Second”, your most recently completed campaign: none shares at least "
        f"{settings.MIN_AUDIENCE} consumers with this audience" in card
    )


def test_the_forecast_card_reads_the_campaigns_it_may_learn_from_once(merchant, all_purposes_approved, portal_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _, browsers, _ = _completed_campaign_with_a_planted_effect(merchant, name="Spring sale")
    draft = _scheduled_draft(merchant, _segment(merchant, "browsers", browsers))
    with CaptureQueriesContext(connection) as queries:
        card = portal_client.get(f"/campaigns/{draft.pk}/forecast/").content.decode()
    assert 'data-testid="forecast-incremental"' in card
    # forecast_candidates: the merchant's completed campaigns, newest first, and their group sizes.
    candidate_reads = [q["sql"] for q in queries if '"completed_at" DESC' in q["sql"]]
    assert len(candidate_reads) == 1, candidate_reads


def test_a_campaign_to_learn_from_that_is_not_yours_is_a_404_on_the_card_as_in_the_api(
    merchant, other_merchant, all_purposes_approved, portal_client, merchant_client
):
    from campaigns.models import CampaignStatus

    like, browsers, _ = _completed_campaign_with_a_planted_effect(merchant, name="Spring sale")
    draft = _scheduled_draft(merchant, _segment(merchant, "browsers", browsers))
    card, api = f"/campaigns/{draft.pk}/forecast/", f"/api/v1/campaigns/{draft.pk}/forecast"
    foreign = make_campaign(other_merchant, status=CampaignStatus.COMPLETED)
    running = make_campaign(merchant, status=CampaignStatus.RUNNING, name="Not finished")
    for unknown in (foreign.pk, foreign.pk + 1000, running.pk):
        assert portal_client.get(card, {"like": unknown}).status_code == 404, unknown
        assert merchant_client.get(api, {"like": unknown}).status_code == 404, unknown
    for text in ("abc", "²", "0", ""):  # not an id at all (nor an empty one: no `like` is automatic): the API's 400
        assert portal_client.get(card, {"like": text}).status_code == 400, text
        assert merchant_client.get(api, {"like": text}).status_code == 400, text
    assert portal_client.get(card).status_code == 200  # no pick: the automatic choice
    assert merchant_client.get(api).status_code == 200
    assert portal_client.get(card, {"like": like.pk}).status_code == 200
    assert merchant_client.get(api, {"like": like.pk}).status_code == 200


def test_a_pick_on_the_review_page_that_is_not_yours_is_a_404_and_text_a_400_as_on_the_card(
    merchant, other_merchant, all_purposes_approved, portal_client
):
    from campaigns.models import CampaignStatus

    draft = _scheduled_draft(merchant, _segment(merchant, "audience", []))
    page = f"/campaigns/{draft.pk}/"
    foreign = make_campaign(other_merchant, status=CampaignStatus.COMPLETED)
    running = make_campaign(merchant, status=CampaignStatus.RUNNING, name="Not finished")
    for unknown in (foreign.pk, foreign.pk + 1000, running.pk, draft.pk):
        assert portal_client.get(page, {"like": unknown}).status_code == 404, unknown
    for text in ("abc", "²", "0"):  # not an id at all: a 400 whose card says why, never the automatic choice
        response = portal_client.get(page, {"like": text})
        body = response.content.decode()
        assert response.status_code == 400, text
        assert 'data-testid="forecast-refused">The campaign to learn from must be given by its id.' in body
        assert "data-forecast-url" not in body and 'name="like" value=' not in body
    # The form's "The most similar (automatic)" sends an empty pick.
    automatic = portal_client.get(page, {"like": ""})
    assert automatic.status_code == 200
    assert f'data-forecast-url="/campaigns/{draft.pk}/forecast/"' in automatic.content.decode()
    # Your own completed campaign, even one not among those offered (too small to learn from): the page shows
    # it picked, and the card says why it cannot learn from it, as the API would.
    small = make_campaign(merchant, status=CampaignStatus.COMPLETED, name="Tiny test")
    picked = portal_client.get(page, {"like": small.pk}).content.decode()
    assert f'<option value="{small.pk}" selected>Tiny test</option>' in picked
    assert f'data-forecast-url="/campaigns/{draft.pk}/forecast/?like={small.pk}"' in picked
    assert f'<input type="hidden" name="like" value="{small.pk}">' in picked  # the launch learns from it too


def test_a_card_waiting_for_a_segment_says_what_it_waits_for_not_the_hint_about_past_campaigns(
    merchant, all_purposes_approved, portal_client
):
    from segments.models import Segment

    draft = _scheduled_draft(merchant, _segment(merchant, "audience", []))
    card = portal_client.get(f"/campaigns/{draft.pk}/forecast/").content.decode()
    assert "Not enough past campaigns to forecast" in card  # no campaign to learn from: the hint about them
    assert "held out a control group of at least 50 consumers" in card

    pending = Segment.objects.create(merchant=merchant, name="Bought lately", definition="fixed", created_by="test")
    draft.exclude_segments.set([pending])  # not computed yet
    card = portal_client.get(f"/campaigns/{draft.pk}/forecast/").content.decode()
    assert "A segment of this campaign has not been computed yet" in card
    assert "A segment is computed at its first refresh" in card
    assert "held out a control group" not in card
