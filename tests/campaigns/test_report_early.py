"""A report says "too early to tell" until each compared group has enough released data."""

from __future__ import annotations

from campaigns.selectors import TOO_EARLY, enough_to_compare
from privacy.release import count_from_noisy

from .test_api import URL, create, launch


def test_a_just_sent_campaign_is_too_early_to_tell(merchant_client, world, django_capture_on_commit_callbacks):
    created = create(merchant_client, world)
    launch(merchant_client, created["id"], django_capture_on_commit_callbacks)
    report = merchant_client.get(f"{URL}{created['id']}/report").json()
    assert report["uplift"] is None and report["too_early"] is True
    assert TOO_EARLY in report["note"]


def test_a_draft_is_not_sent_yet_rather_than_too_early(merchant_client, world):
    created = create(merchant_client, world)
    report = merchant_client.get(f"{URL}{created['id']}/report").json()
    assert report["too_early"] is False and report["note"] == "The campaign has not been sent yet."


def test_enough_means_a_minimum_released_size_per_group_and_shown_conversions(settings):
    settings.CAMPAIGN_REPORT_MIN_RELEASED = 1000

    def count(n):
        return count_from_noisy(noisy=n, precision="standard")

    assert enough_to_compare(count(300), count(250), sizes=(count(5000), count(1200)))
    assert not enough_to_compare(count(300), count(250), sizes=(count(5000), count(800)))  # control too small
    assert not enough_to_compare(count(300), count(0), sizes=(count(5000), count(1200)))  # hidden conversions
