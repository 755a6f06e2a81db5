"""How counts of consumers are shown to merchants: hidden below MIN_AUDIENCE, two significant figures above.

Every endpoint that reveals an audience size (tags, estimates, insights,
overlaps) goes through public_count, so a small audience is never revealed
anywhere and exact figures stay with privacy officers.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings


def round_significant(n: int, figures: int = 2) -> int:
    """n rounded half-up to `figures` significant figures (12,345 -> 12,000; 1,250 -> 1,300)."""
    if n == 0:
        return 0
    exponent = len(str(abs(int(n)))) - figures
    if exponent <= 0:
        return int(n)
    quantum = Decimal(10) ** exponent
    return int((Decimal(int(n)) / quantum).quantize(Decimal(1), rounding=ROUND_HALF_UP) * quantum)


def public_count(n: int | None) -> dict:
    """What a merchant may see of a count: {"size", "display", "hidden"}.

    Below settings.MIN_AUDIENCE (or unknown): size None, display "fewer than
    100", hidden True. Otherwise size rounded to two significant figures and
    display with thousands separators ("12,000").
    """
    threshold = settings.MIN_AUDIENCE
    if n is None or n < threshold:
        return {"size": None, "display": f"fewer than {threshold:,}", "hidden": True}
    size = round_significant(int(n), 2)
    return {"size": size, "display": f"{size:,}", "hidden": False}
