"""What the release layer shows for a subject and an exact count: the oracle the page and report tests compare to."""

from __future__ import annotations

from privacy.release import ReleasedCount, count_from_noisy, noisy_count


def released_count(subject: str, count: int, precision: str = "standard") -> ReleasedCount:
    key, noisy = noisy_count(subject=subject, count=int(count), precision=precision)
    return count_from_noisy(noisy=noisy, precision=precision, key=key)


def released_public(subject: str, count: int, precision: str = "standard") -> dict:
    return released_count(subject, count, precision).public()
