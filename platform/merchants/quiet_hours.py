"""Quiet hours: daily windows of local time in which no message goes out, and when a deferred message may go.

One home for the rule (docs/journeys.md, "Quiet hours"). Each party that promises consumers a quiet night has its
own window in its own time zone: the platform (JOURNEY_QUIET_HOURS in JOURNEY_TIME_ZONE), the merchant
(`Merchant.quiet_start`/`quiet_end` in `Merchant.time_zone`) and, optionally, one journey. A message is deferred
while *any* of them is quiet (the union: every party's promise holds), to the first moment none is: the end of the
combined quiet period, never dropped. A window may cross midnight ("21:00-08:00"); a window whose start equals its
end is empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

# Chained windows (one ending inside the next) are followed this many times at most. Windows that together cover
# the whole day would defer for ever; the bound returns the latest end found, and the sender asks again then.
MAX_CHAINED_WINDOWS = 8


@dataclass(frozen=True)
class QuietHours:
    """One party's daily quiet window [start, end) in its local time zone."""

    start: time
    end: time
    zone: ZoneInfo

    @property
    def empty(self) -> bool:
        return self.start == self.end

    def contains(self, at: datetime) -> bool:
        if self.empty:
            return False
        t = at.astimezone(self.zone).time()
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # crosses midnight

    def end_after(self, at: datetime) -> datetime:
        """The first end of this window after `at` (in UTC): when the window `at` lies in closes."""
        local = at.astimezone(self.zone)
        end_at = local.replace(
            hour=self.end.hour, minute=self.end.minute, second=self.end.second, microsecond=self.end.microsecond
        )
        if end_at <= local:
            end_at += timedelta(days=1)  # wall-clock arithmetic: 08:00 stays 08:00 across a DST change
        return end_at.astimezone(UTC)

    def describe(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} ({self.zone.key})"


def quiet_until(windows: Iterable[QuietHours | None], now: datetime) -> datetime | None:
    """When a message due at `now` may go: the end of the combined quiet period around `now`, or None when no
    window is quiet at `now`. A window that is quiet when another ends extends the deferral (the union)."""
    active = [w for w in windows if w is not None and not w.empty]
    at = now
    for _ in range(MAX_CHAINED_WINDOWS):
        ends = [w.end_after(at) for w in active if w.contains(at)]
        if not ends:
            break
        at = max(ends)
    return None if at == now else at.astimezone(UTC)


def quiet_window_problems(*, start: time | None, end: time | None) -> str | None:
    """Why a stored (start, end) pair is not a window, or None: both or neither, and not the same time."""
    if (start is None) != (end is None):
        return "Give both the start and the end of the quiet hours, or neither."
    if start is not None and start == end:
        return "The quiet hours start and end at the same time; leave both empty for no quiet hours."
    return None
