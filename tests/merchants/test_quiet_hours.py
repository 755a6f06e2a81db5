"""Quiet hours: windows crossing midnight, several parties' windows combined (the union), other time zones."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from merchants.errors import Invalid
from merchants.quiet_hours import QuietHours, quiet_until
from merchants.services import merchant_quiet_hours_set
from tests.factories import MerchantFactory

SINGAPORE, LONDON = ZoneInfo("Asia/Singapore"), ZoneInfo("Europe/London")


def sg(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=SINGAPORE)


NIGHT = QuietHours(time(21), time(8), SINGAPORE)


def test_a_window_crossing_midnight_defers_to_its_end_the_next_morning():
    assert quiet_until([NIGHT], sg(22, 30)) == sg(8, day=3)
    assert quiet_until([NIGHT], sg(3)) == sg(8)  # after midnight: the same morning
    assert quiet_until([NIGHT], sg(8)) is None  # the end is not quiet
    assert quiet_until([NIGHT], sg(20, 59)) is None
    assert quiet_until([NIGHT], sg(21)) == sg(8, day=3)  # the start is


def test_windows_are_combined_and_a_chain_defers_to_the_end_of_the_last():
    merchant = QuietHours(time(7), time(10), SINGAPORE)  # overlaps the platform's end
    assert quiet_until([NIGHT, merchant], sg(23)) == sg(10, day=3)
    lunch = QuietHours(time(12), time(13), SINGAPORE)
    assert quiet_until([NIGHT, lunch], sg(12, 30)) == sg(13)
    assert quiet_until([NIGHT, lunch, None], sg(11)) is None


def test_a_merchant_in_another_time_zone_is_quiet_in_its_own_night():
    # London's 22:00-07:00 is 06:00-15:00 in Singapore in March (GMT); the platform's night is Singapore's.
    london = QuietHours(time(22), time(7), LONDON)
    assert quiet_until([NIGHT, london], sg(9)) == datetime(2026, 3, 2, 7, 0, tzinfo=LONDON)
    assert quiet_until([NIGHT, london], sg(16)) is None
    # Singapore's 23:00 is 15:00 in London: the platform's night until 08:00, which is London's midnight, inside
    # London's night: the message waits for London's 07:00 (15:00 in Singapore).
    assert quiet_until([NIGHT, london], sg(23)) == sg(15, day=3)
    # Singapore 06:00 is London 22:00 the evening before: the platform's night ends at 08:00, London's at 15:00.
    assert quiet_until([NIGHT, london], sg(6)).astimezone(SINGAPORE) == sg(15)


def test_the_end_keeps_its_local_time_across_a_daylight_saving_change():
    london = QuietHours(time(22), time(7), LONDON)
    before_change = datetime(2026, 3, 28, 23, 0, tzinfo=LONDON)  # clocks go forward on the 29th
    assert quiet_until([london], before_change) == datetime(2026, 3, 29, 7, 0, tzinfo=LONDON)
    assert quiet_until([london], before_change).astimezone(UTC).hour == 6


def test_windows_covering_the_whole_day_defer_a_bounded_way_ahead():
    day, night = QuietHours(time(8), time(21), SINGAPORE), NIGHT
    deferred = quiet_until([night, day], sg(12))
    assert deferred is not None and deferred > sg(12)


def test_a_window_whose_start_is_its_end_is_empty():
    assert quiet_until([QuietHours(time(9), time(9), SINGAPORE)], sg(9)) is None


@pytest.mark.django_db
def test_merchant_quiet_hours_are_both_or_neither_and_not_empty():
    merchant = MerchantFactory()
    merchant.time_zone = "Europe/London"
    merchant.save(update_fields=["time_zone"])
    with pytest.raises(Invalid, match="both the start and the end"):
        merchant_quiet_hours_set(merchant=merchant, quiet_start=time(22), quiet_end=None)
    with pytest.raises(Invalid, match="same time"):
        merchant_quiet_hours_set(merchant=merchant, quiet_start=time(22), quiet_end=time(22))
    merchant_quiet_hours_set(merchant=merchant, quiet_start=time(22), quiet_end=time(7))
    merchant.refresh_from_db()
    assert merchant.quiet_hours == QuietHours(time(22), time(7), LONDON)
    merchant_quiet_hours_set(merchant=merchant, quiet_start=None, quiet_end=None)
    merchant.refresh_from_db()
    assert merchant.quiet_hours is None
    merchant.quiet_start = time(1)
    with pytest.raises(ValidationError, match="both the start and the end"):
        merchant.full_clean()


def test_a_window_ending_on_a_second_defers_to_that_second_not_to_the_next_day():
    """The admin and the settings form accept HH:MM:SS: the end kept its minute only, so a message due inside the
    window's last minute was deferred by a day."""
    window = QuietHours(time(21), time(8, 0, 30), SINGAPORE)
    assert quiet_until([window], sg(8).replace(second=10)) == sg(8).replace(second=30)
