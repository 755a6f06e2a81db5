"""Reads of the privacy core."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import ActivityStatus, ConsentKind, ConsentState, ConsentStatus, ProcessingActivity, Purpose


def approved_activities() -> QuerySet[ProcessingActivity]:
    return ProcessingActivity.objects.filter(status=ActivityStatus.APPROVED).order_by("purpose", "name")


def direct_marketing_opt_in_consumer_ids() -> QuerySet:
    """Consumer ids whose current direct-marketing consent is an express opt-in."""
    return ConsentState.objects.filter(
        purpose=Purpose.DIRECT_MARKETING, status=ConsentStatus.GRANTED, kind=ConsentKind.EXPRESS
    ).values_list("consumer_id", flat=True)


def suppressed_consumer_ids(*, has_offer: bool) -> QuerySet:
    """Consumers that a campaign must not reach: every active suppression, and offer-only ones for offers."""
    from .models import Suppression, SuppressionScope

    scopes = [SuppressionScope.ALL, SuppressionScope.OFFERS] if has_offer else [SuppressionScope.ALL]
    return Suppression.objects.filter(lifted_at__isnull=True, scope__in=scopes).values_list("consumer_id", flat=True)
