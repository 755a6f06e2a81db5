"""Budget periods: when the current one started and when it renews (UTC), by settings.PRIVACY_BUDGET_PERIOD."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.utils import timezone


def period_start(at: datetime | None = None) -> date:
    """The first day of the budget period holding `at` (now by default): month, ISO week (Monday) or day."""
    day = (at or timezone.now()).astimezone(UTC).date()
    kind = settings.PRIVACY_BUDGET_PERIOD
    if kind == "month":
        return day.replace(day=1)
    if kind == "week":
        return day - timedelta(days=day.weekday())
    return day


def period_renews_at(start: date) -> datetime:
    """When the period starting on `start` ends and a fresh allowance begins (midnight UTC)."""
    kind = settings.PRIVACY_BUDGET_PERIOD
    if kind == "month":
        following = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    elif kind == "week":
        following = start + timedelta(days=7)
    else:
        following = start + timedelta(days=1)
    return datetime(following.year, following.month, following.day, tzinfo=UTC)
