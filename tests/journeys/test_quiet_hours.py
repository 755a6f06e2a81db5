"""Quiet hours at every level (platform, merchant, journey) defer a journey message to the end of the combined quiet
period, in each party's own time zone; nothing is dropped. The clock is moved with time-machine."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from journeys import engine
from journeys.models import EnrolmentState, JourneyEnrolment, JourneySend
from merchants.services import merchant_quiet_hours_set

from .conftest import CART, MORNING, event, shoppers, tick

H = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
LONDON, SINGAPORE = ZoneInfo("Europe/London"), ZoneInfo("Asia/Singapore")


def _sent(journey) -> int:
    return JourneySend.objects.filter(journey=journey).count()


def _cart_at(merchant, journey, moment: datetime):
    """A cart at `moment`, read by the next tick; the nudge falls due two hours later."""
    [shopper] = shoppers(1, moment=moment)
    event(merchant, shopper, CART, moment)
    tick(moment + MINUTE)
    return JourneyEnrolment.objects.get(journey=journey)


def test_a_merchant_in_another_time_zone_defers_to_the_end_of_its_own_night(abandoned_cart, merchant):
    merchant.time_zone = "Europe/London"
    merchant.save(update_fields=["time_zone"])
    merchant_quiet_hours_set(merchant=merchant, quiet_start=time(22), quiet_end=time(7))
    # 10:00 in Singapore (outside the platform's night) is 02:00 in London: the merchant's night.
    assert MORNING.astimezone(LONDON).hour == 2
    _cart_at(merchant, abandoned_cart, MORNING)
    tick(MORNING + 2 * H + 5 * MINUTE)  # the nudge falls due at 04:00 London time
    assert _sent(abandoned_cart) == 0
    enrolment = JourneyEnrolment.objects.get(journey=abandoned_cart)
    assert enrolment.state == EnrolmentState.ACTIVE  # deferred, not dropped
    london_morning = datetime(2026, 3, 2, 7, 0, tzinfo=LONDON)
    assert enrolment.next_run_at == london_morning
    tick(london_morning - MINUTE)
    assert _sent(abandoned_cart) == 0
    tick(london_morning + MINUTE)
    assert _sent(abandoned_cart) == 1


def test_a_journey_window_adds_to_the_platform_night_instead_of_replacing_it(abandoned_cart, merchant):
    # The journey's own 22:00-06:00 lies inside the platform's 21:00-08:00: the platform's promise still holds.
    abandoned_cart.quiet_start, abandoned_cart.quiet_end = time(22), time(6)
    abandoned_cart.save(update_fields=["quiet_start", "quiet_end"])
    evening = datetime(2026, 3, 2, 19, 20, tzinfo=SINGAPORE)
    _cart_at(merchant, abandoned_cart, evening)
    tick(evening + 2 * H + 5 * MINUTE)  # due at 21:20 Singapore: the platform's night only
    enrolment = JourneyEnrolment.objects.get(journey=abandoned_cart)
    assert _sent(abandoned_cart) == 0
    assert enrolment.next_run_at == datetime(2026, 3, 3, 8, 0, tzinfo=SINGAPORE)


def test_windows_crossing_midnight_chain_into_one_deferral(abandoned_cart, merchant, settings):
    settings.JOURNEY_QUIET_HOURS = ""  # only the journey's and the merchant's windows
    abandoned_cart.quiet_start, abandoned_cart.quiet_end = time(23), time(1)  # crosses midnight
    abandoned_cart.save(update_fields=["quiet_start", "quiet_end"])
    merchant.time_zone = "Asia/Singapore"
    merchant.save(update_fields=["time_zone"])
    merchant_quiet_hours_set(merchant=merchant, quiet_start=time(0, 30), quiet_end=time(9))
    late = datetime(2026, 3, 2, 21, 40, tzinfo=SINGAPORE)
    _cart_at(merchant, abandoned_cart, late)
    tick(late + 2 * H + 5 * MINUTE)  # due at 23:40: the journey's window, then the merchant's from 00:30
    enrolment = JourneyEnrolment.objects.get(journey=abandoned_cart)
    assert _sent(abandoned_cart) == 0
    assert enrolment.next_run_at == datetime(2026, 3, 3, 9, 0, tzinfo=SINGAPORE)
    tick(datetime(2026, 3, 3, 9, 1, tzinfo=SINGAPORE))
    assert _sent(abandoned_cart) == 1


def test_without_any_quiet_hours_the_message_goes_at_night(abandoned_cart, merchant, settings):
    settings.JOURNEY_QUIET_HOURS = ""
    night = datetime(2026, 3, 2, 23, 0, tzinfo=SINGAPORE)
    _cart_at(merchant, abandoned_cart, night)
    tick(night + 2 * H + 5 * MINUTE)
    assert _sent(abandoned_cart) == 1
    assert JourneySend.objects.get().created_at.astimezone(UTC) == (night + 2 * H + 5 * MINUTE).astimezone(UTC)


def test_the_platform_quiet_hours_are_parsed_once_per_text_of_the_setting(
    abandoned_cart, merchant, settings, monkeypatch
):
    parsed = []
    real = engine.parse_time_of_day
    monkeypatch.setattr(engine, "parse_time_of_day", lambda text, **kw: parsed.append(text) or real(text, **kw))
    settings.JOURNEY_QUIET_HOURS = "13:17-13:43"  # a text no other test uses (Singapore time)
    moment = datetime(2026, 3, 2, 13, 30, tzinfo=SINGAPORE)
    people = shoppers(5, moment=moment - 2 * H)
    for person in people:
        event(merchant, person, CART, moment - 2 * H)
    tick(moment - 2 * H + MINUTE)
    tick(moment + MINUTE)  # every nudge falls due inside the window and is deferred
    assert _sent(abandoned_cart) == 0
    assert set(JourneyEnrolment.objects.values_list("next_run_at", flat=True)) == {moment.replace(minute=43)}
    assert parsed == ["13:17", "13:43"]  # once, not once per send step
    settings.JOURNEY_QUIET_HOURS = "13:17-13:44"  # a new text is read at once
    assert engine.platform_quiet_hours().end == time(13, 44)
