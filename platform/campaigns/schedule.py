"""Recurring schedules: crontab expressions in the merchant's time zone, the picker that writes them, and the
shortest gap between two runs (which CAMPAIGN_MIN_RECURRENCE_MINUTES bounds from below)."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from celery.schedules import crontab

CRONTAB_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
REPEAT_CHOICES = (("daily", "Every day"), ("weekly", "Every week"), ("monthly", "Every month"))
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")  # crontab numbering
# Days 1-28 exist in every month, so a monthly run never skips one.
MAX_MONTHLY_DAY = 28


def crontab_parse(expression: str) -> dict[str, str]:
    """'m h dom mon dow' → django_celery_beat CrontabSchedule fields; ValueError naming the bad field."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(
            "A repeat schedule is five crontab fields 'minute hour day-of-month month day-of-week' "
            f"(in your time zone); got {len(parts)} field{'s' if len(parts) != 1 else ''}."
        )
    fields = dict(zip(CRONTAB_FIELDS, parts, strict=True))
    for name, value in fields.items():
        try:
            crontab(**{name: value})
        except (ValueError, TypeError) as exc:
            raise ValueError(f"The crontab field {name.replace('_', '-')} {value!r} is not valid: {exc}") from exc
    return fields


def recurrence_min_gap_minutes(expression: str, *, horizon_days: int = 4 * 366 + 7) -> int | None:
    """The shortest time between two consecutive runs of a crontab schedule, in minutes (None: it runs at most
    once in four years). Days match when both the day of the month and the day of the week match, as Celery's
    crontab does. Every matching day has the same times, so the gap is the shorter of the gap within a day and
    the gap from one matching day's last run to the next one's first."""
    schedule = crontab(**crontab_parse(expression))
    times = sorted(h * 60 + m for h in schedule.hour for m in schedule.minute)
    within = min((b - a for a, b in itertools.pairwise(times)), default=None)
    start = date(2024, 1, 1)  # a leap year, so 29 February schedules are seen
    matching: list[int] = []
    for offset in range(horizon_days):
        day = start + timedelta(days=offset)
        if (
            day.month in schedule.month_of_year
            and day.day in schedule.day_of_month
            and (day.isoweekday() % 7) in schedule.day_of_week
        ):
            matching.append(offset)
    across = min((b - a for a, b in itertools.pairwise(matching)), default=None)
    gaps = [g for g in (within, None if across is None else across * 1440 - (times[-1] - times[0])) if g]
    return min(gaps) if gaps else None


def recurrence_from_picker(*, every: str, at_minutes: int, weekday: int = 1, day_of_month: int = 1) -> str:
    """The crontab a "daily / weekly / monthly at a local time" choice stands for."""
    hour, minute = divmod(at_minutes, 60)
    if not 0 <= hour < 24:
        raise ValueError("The time of day must be between 00:00 and 23:59.")
    if every == "daily":
        return f"{minute} {hour} * * *"
    if every == "weekly":
        if not 0 <= weekday <= 6:
            raise ValueError("Choose a day of the week.")
        return f"{minute} {hour} * * {weekday}"
    if every == "monthly":
        if not 1 <= day_of_month <= MAX_MONTHLY_DAY:
            raise ValueError(f"Choose a day of the month from 1 to {MAX_MONTHLY_DAY}.")
        return f"{minute} {hour} {day_of_month} * *"
    raise ValueError(f"Repeat {every!r} is not one of daily, weekly or monthly.")


def recurrence_describe(expression: str) -> str:
    """'Every Monday at 09:00' for what the picker writes; the expression itself otherwise."""
    parts = expression.split()
    if len(parts) != 5 or not (parts[0].isdigit() and parts[1].isdigit()):
        return expression
    at = f"{int(parts[1]):02d}:{int(parts[0]):02d}"
    dom, month, dow = parts[2:]
    if (dom, month, dow) == ("*", "*", "*"):
        return f"Every day at {at}"
    if dom == "*" and month == "*" and dow.isdigit() and int(dow) <= 6:
        return f"Every {WEEKDAYS[int(dow)]} at {at}"
    if dom.isdigit() and month == "*" and dow == "*":
        return f"Every month on day {int(dom)} at {at}"
    return expression


def duration_text(minutes: int) -> str:
    """'1 minute', '3 hours', '1 day 6 hours'."""
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    units = ((days, "day"), (hours, "hour"), (mins, "minute"))
    return " ".join(f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in units if n) or "0 minutes"
