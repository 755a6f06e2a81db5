"""Schedules: the minimum gap between recurring runs, the picker, the merchant's time zone, and prose errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from campaigns.schedule import recurrence_describe, recurrence_from_picker, recurrence_min_gap_minutes
from merchants.models import Merchant

from .test_api import URL, body, create


@pytest.mark.parametrize(
    ("expression", "minutes"),
    [
        ("* * * * *", 1),
        ("*/15 * * * *", 15),
        ("0 9,21 * * *", 720),
        ("0 9 * * *", 1440),
        ("0 23 * * 1,2", 1440),
        ("0 9 * * 1", 7 * 1440),
        ("30 8 1 * *", 28 * 1440),
    ],
)
def test_the_shortest_gap_between_runs(expression, minutes):
    assert recurrence_min_gap_minutes(expression) == minutes


def test_the_picker_writes_a_crontab_and_reads_it_back():
    assert recurrence_from_picker(every="daily", at_minutes=9 * 60 + 5) == "5 9 * * *"
    assert recurrence_from_picker(every="weekly", at_minutes=18 * 60, weekday=1) == "0 18 * * 1"
    assert recurrence_from_picker(every="monthly", at_minutes=0, day_of_month=28) == "0 0 28 * *"
    assert recurrence_describe("0 18 * * 1") == "Every Monday at 18:00"
    assert recurrence_describe("5 9 * * *") == "Every day at 09:05"
    with pytest.raises(ValueError, match="1 to 28"):
        recurrence_from_picker(every="monthly", at_minutes=0, day_of_month=31)


def test_every_minute_is_refused_with_a_clear_message(merchant_client, world):
    response = merchant_client.post(URL, body(world, schedule_kind="recurring", recurrence="* * * * *"), format="json")
    assert response.status_code == 400
    [message] = response.json()["error"]["details"]["recurrence"]
    assert message.startswith("This schedule sends every 1 minute; runs must be at least 1 day apart.")


def test_the_minimum_is_a_setting(merchant_client, world, settings):
    settings.CAMPAIGN_MIN_RECURRENCE_MINUTES = 60
    create(merchant_client, world, schedule_kind="recurring", recurrence="0 * * * *")
    data = body(world, schedule_kind="recurring", recurrence="*/30 * * * *")
    response = merchant_client.post(URL, data, format="json")
    assert "at least 1 hour apart" in response.json()["error"]["details"]["recurrence"][0]


def test_schedule_messages_are_prose_not_field_names(merchant_client, world):
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    details = merchant_client.post(URL, body(world, schedule_kind="at", scheduled_at=past), format="json").json()
    message = details["error"]["details"]["scheduled_at"][0]
    assert message == "The send time has passed; choose a time in the future."
    details = merchant_client.post(URL, body(world, schedule_kind="at"), format="json").json()
    assert "scheduled_at" not in details["error"]["details"]["scheduled_at"][0]


def test_recurring_schedules_run_in_the_merchants_time_zone(
    merchant, merchant_client, world, django_capture_on_commit_callbacks
):
    merchant.time_zone = "Asia/Singapore"
    merchant.save()
    created = create(merchant_client, world, schedule_kind="recurring", recurrence="0 9 * * 1")
    merchant_client.post(f"{URL}{created['id']}/launch")
    task = PeriodicTask.objects.get(name=f"campaign:{created['id']}")
    assert str(task.crontab.timezone) == "Asia/Singapore" and task.crontab.hour == "9"


def test_merchant_time_zone_and_currency_are_validated(db, settings):
    settings.MERCHANT_DEFAULT_TIME_ZONE = "Europe/Paris"
    merchant = Merchant.objects.create(slug="tz", name="TZ")
    assert merchant.time_zone == "Europe/Paris" and merchant.currency == settings.MERCHANT_DEFAULT_CURRENCY
    merchant.time_zone, merchant.currency = "Mars/Olympus", "dollars"
    with pytest.raises(ValidationError) as caught:
        merchant.full_clean()
    assert "IANA" in str(caught.value.message_dict["time_zone"]) and "ISO 4217" in str(caught.value.message_dict)
