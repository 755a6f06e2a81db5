import pytest

from privacy.release import released_rate
from segments.services import segment_create, segment_refresh
from tests.release_helpers import released_count


def test_dashboard_shows_population_and_reachable_population(portal_client, population):
    page = portal_client.get("/").content.decode()
    shown_population = released_count("population:live", 600)
    shown_reachable = released_count("population:reachable", 300)
    assert f'data-testid="population">{shown_population.display}<' in page
    assert f'data-testid="reachable">{shown_reachable.display}<' in page
    share = round(100 * released_rate(shown_reachable, shown_population))
    assert f"{share}% gave express opt-in consent" in page


def test_dashboard_lists_recent_segments_with_status(portal_client, population, merchant, other_merchant):
    segment = segment_create(merchant=merchant, name="SG shoppers", expression="country:SG", actor="test")
    segment_refresh(segment_id=segment.pk, actor="test")
    segment_create(merchant=other_merchant, name="Not mine", expression="country:MY", actor="test")
    page = portal_client.get("/").content.decode()
    assert "SG shoppers" in page and "Ready" in page
    assert "Not mine" not in page
    assert "No campaigns yet" in page


def test_empty_marketplace_hides_counts(portal_client):
    page = portal_client.get("/").content.decode()
    assert 'data-testid="population">fewer than 170<' in page
    assert "No segments yet" in page


@pytest.mark.parametrize("made", [4, 5, 6])
def test_the_dashboard_counts_segments_and_campaigns_exactly(portal_client, population, merchant, made):
    """Exactly five segments read "5", not "5+" (the recent list is five long; the count is the merchant's)."""
    for i in range(made):
        segment_create(merchant=merchant, name=f"s{i}", expression="country:SG", actor="test")
    page = portal_client.get("/").content.decode()
    assert f'data-testid="object-counts">{made} · 0<' in page
