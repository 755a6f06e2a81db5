"""The automatic winner of an A/B/n test in a recurring series (a write, beside services.py).

Before each run of a series with auto_winner on, the latest finished run's variant report is read (released
figures only). A variant wins when every variant has at least CAMPAIGN_VARIANT_MIN_SAMPLE released recipients and
the 95% interval of its conversion rate's lead over every other variant lies above zero. The series records which,
when and why (winner_variant, winner_picked_at, winner_reason, and an audit entry); later runs send only it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction

from privacy.audit import audit_record
from privacy.models import Purpose

from .models import Campaign, CampaignStatus
from .selectors import PublicVariant, campaign_variants_report_public, uplift_from_released

logger = logging.getLogger("dmp.campaigns")


def _pct(rate: float | None) -> str:
    return "hidden" if rate is None else f"{rate * 100:.1f}%"


def variant_winner(rows: list[PublicVariant], *, min_sample: int) -> tuple[PublicVariant, str] | None:
    """The winning variant of one run's released report and the reason, or None while there is none."""
    if len(rows) < 2:
        return None
    if any(r.size.value is None or r.size.value < min_sample or r.converted.value is None for r in rows):
        return None
    best = max(rows, key=lambda r: r.conversion_rate or 0.0)
    leads = []
    for other in rows:
        if other is best:
            continue
        lead = uplift_from_released(
            a_converted=best.converted, a_size=best.size, b_converted=other.converted, b_size=other.size
        )
        if lead.ci_low is None or lead.ci_high is None or lead.ci_low <= 0:
            return None
        leads.append(f"{other.letter} by {lead.ci_low * 100:+.1f} to {lead.ci_high * 100:+.1f} pp")
    rates = ", ".join(f"{r.letter} {_pct(r.conversion_rate)}" for r in rows)
    reason = (
        f"Variant {best.letter} converted best ({rates}); every variant had at least {min_sample:,} recipients "
        f"and the 95% interval of its lead is above zero against each other variant ({'; '.join(leads)})."
    )
    return best, reason


def series_winner_pick(*, series_id: int, now: datetime) -> int | None:
    """Pick the series' winner from its latest finished run if there is one now; returns the winner's position."""
    series = Campaign.objects.filter(pk=series_id, parent__isnull=True).first()
    if series is None or not series.auto_winner or series.winner_variant is not None:
        return None if series is None else series.winner_variant
    latest = (
        Campaign.objects.filter(parent_id=series.pk, status=CampaignStatus.COMPLETED)
        .order_by("-occurrence_at", "-pk")
        .first()
    )
    if latest is None:
        return None
    picked = variant_winner(campaign_variants_report_public(latest), min_sample=settings.CAMPAIGN_VARIANT_MIN_SAMPLE)
    if picked is None:
        return None
    best, reason = picked
    reason = f"{reason} Decided from the run of {latest.occurrence_at or latest.completed_at:%Y-%m-%d %H:%M} UTC."
    with transaction.atomic():
        updated = Campaign.objects.filter(pk=series.pk, winner_variant__isnull=True).update(
            winner_variant=best.position, winner_picked_at=now, winner_reason=reason
        )
        if updated:
            audit_record(
                actor="platform",
                action="campaign.variant_winner",
                merchant_id=series.merchant_id,
                purpose=Purpose.DIRECT_MARKETING,
                object_type="Campaign",
                object_id=series.pk,
                counts={},
                details={"winner": best.letter, "from_run": latest.pk, "reason": reason},
            )
    logger.info("campaign.variant_winner", extra={"fields": {"campaign_id": series.pk, "winner": best.letter}})
    return best.position
