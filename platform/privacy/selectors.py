"""Reads of the privacy core."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from merchants.models import ApiKey

from .budget import period_renews_at, period_start
from .messaging import PARTS_BY_NAME, opted_in_states
from .models import ActivityStatus, ProcessingActivity


def approved_activities() -> QuerySet[ProcessingActivity]:
    return ProcessingActivity.objects.filter(status=ActivityStatus.APPROVED).order_by("purpose", "name")


def direct_marketing_opt_in_consumer_ids() -> QuerySet:
    """Consumer ids whose current direct-marketing consent is an express opt-in (privacy.messaging, part 2)."""
    return opted_in_states().values_list("consumer_id", flat=True)


def suppressed_consumer_ids(*, has_offer: bool) -> QuerySet:
    """Consumers that active suppressions keep from a campaign: every-campaign ones, and offer-only ones for offers
    (privacy.messaging's suppression parts; the whole rule is privacy.messaging.messageable_consumer_ids)."""
    parts = [PARTS_BY_NAME["suppressed_all"], *([PARTS_BY_NAME["suppressed_offers"]] if has_offer else [])]
    query = parts[0].consumer_ids()
    return query.union(*(p.consumer_ids() for p in parts[1:])) if len(parts) > 1 else query


@dataclass(frozen=True)
class BudgetStatus:
    """A merchant's privacy budget in the current period (zCDP ρ)."""

    allowance: float
    spent: float
    releases: int
    period_start: date
    renews_at: datetime

    @property
    def remaining(self) -> float:
        return max(0.0, self.allowance - self.spent)

    def as_dict(self) -> dict:
        return {
            "allowance": round(self.allowance, 6),
            "spent": round(self.spent, 6),
            "remaining": round(self.remaining, 6),
            "releases": self.releases,
            "period_start": self.period_start.isoformat(),
            "renews_at": self.renews_at.isoformat(),
        }


def budget_allowance(*, merchant_id: int) -> float:
    """The officer's allowance for the merchant, or the documented default (settings.PRIVACY_BUDGET_DEFAULT_RHO)."""
    from .models import PrivacyBudget

    allowance = PrivacyBudget.objects.filter(merchant_id=merchant_id).values_list("allowance_rho", flat=True).first()
    return float(settings.PRIVACY_BUDGET_DEFAULT_RHO if allowance is None else allowance)


def budget_remaining(*, merchant_id: int, at: datetime | None = None) -> BudgetStatus:
    """What the merchant may still spend on new releases this period, and when the allowance renews."""
    from .models import BudgetPeriod

    start = period_start(at)
    row = (
        BudgetPeriod.objects.filter(merchant_id=merchant_id, period_start=start).values("spent_rho", "releases").first()
    )
    return BudgetStatus(
        allowance=budget_allowance(merchant_id=merchant_id),
        spent=float(row["spent_rho"]) if row else 0.0,
        releases=int(row["releases"]) if row else 0,
        period_start=start,
        renews_at=period_renews_at(start),
    )


def actor_labels(actors: Iterable[str]) -> dict[str, str]:
    """Readable names for audit actors (`user:1` → "officer (user 1)", `apikey:5` → "API key “CRM sync” of Acme").

    One query per kind, whatever the number of entries: for the audit log's list page. Actors that name nothing
    (a deleted user, a task or a command) keep their own text.
    """
    wanted: dict[str, set[int]] = {"user": set(), "apikey": set()}
    for actor in actors:
        kind, _, ident = actor.partition(":")
        if kind in wanted and ident.isdigit():
            wanted[kind].add(int(ident))
    labels = {actor: actor for actor in actors}
    if wanted["user"]:
        for pk, username in get_user_model().objects.filter(pk__in=wanted["user"]).values_list("pk", "username"):
            labels[f"user:{pk}"] = f"{username} (user {pk})"
    if wanted["apikey"]:
        for key in ApiKey.objects.filter(pk__in=wanted["apikey"]).select_related("merchant"):
            owner = key.merchant.name if key.merchant is not None else "the operator"
            labels[f"apikey:{key.pk}"] = f"API key “{key.name}” of {owner}"
    for actor in labels:
        kind, _, name = actor.partition(":")
        if kind in ("task", "command") and labels[actor] == actor:
            labels[actor] = f"{'scheduled task' if kind == 'task' else 'command'} {name}"
    return labels
