"""The merchant's audience export: merchant-scoped pseudonyms of a sent campaign's reachable treatment group, paged
with a signed cursor and audited."""

from __future__ import annotations

from dataclasses import dataclass

from django.core import signing

from merchants.errors import Conflict
from privacy.audit import audit_record
from privacy.pseudonyms import merchant_pseudonym

from .basis import ActivationRefused, direct_marketing_basis
from .dispatch import consumers_reachable
from .models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Group,
    Phase,
)

EXPORT_CURSOR_SALT = "campaigns.audience-export"
EXPORT_MAX_PAGE = 10_000


@dataclass(frozen=True)
class ExportPage:
    pseudonyms: list[str]
    next_cursor: str | None


class InvalidCursor(ValueError):
    pass


def export_cursor_read(*, campaign_id: int, cursor: str | None) -> int:
    """The last delivery id a page ended at (0 for the first page); the cursor is signed and campaign-bound."""
    if not cursor:
        return 0
    try:
        value = signing.loads(cursor, salt=EXPORT_CURSOR_SALT)
    except signing.BadSignature as exc:
        raise InvalidCursor("The cursor is not valid; use the 'next' link of the previous page.") from exc
    if not isinstance(value, dict) or value.get("c") != campaign_id or not isinstance(value.get("d"), int):
        raise InvalidCursor("The cursor belongs to another export; use the 'next' link of the previous page.")
    return value["d"]


def campaign_audience_export(*, campaign: Campaign, actor: str, cursor: str | None, limit: int) -> ExportPage:
    """One page of the consented treatment audience, as merchant-scoped pseudonyms. Audited per page.

    Consent and suppressions are checked at export time, so a consumer who has withdrawn since the
    send is not exported.
    """
    if campaign.status not in (CampaignStatus.RUNNING, CampaignStatus.COMPLETED) or (
        campaign.status == CampaignStatus.RUNNING and campaign.phase not in (Phase.DISPATCHING, Phase.DONE)
    ):
        raise Conflict(
            "The audience is resolved when the campaign runs; it can be exported once its deliveries are "
            f"written (the campaign is {campaign.status}).",
            code="audience_not_ready",
            details={"status": campaign.status},
        )
    try:
        basis = direct_marketing_basis()
    except ActivationRefused as exc:
        raise Conflict(exc.reason, code=exc.code) from exc
    after = export_cursor_read(campaign_id=campaign.pk, cursor=cursor)
    limit = max(1, min(limit, EXPORT_MAX_PAGE))
    rows = list(
        Delivery.objects.filter(campaign_id=campaign.pk, group=Group.TREATMENT, pk__gt=after)
        .exclude(status=DeliveryStatus.WITHDRAWN)
        .order_by("pk")
        .values_list("pk", "consumer_id", "consumer__pseudonym")[:limit]
    )
    reachable = consumers_reachable([r[1] for r in rows], has_offer=campaign.has_offer)
    pseudonyms = [
        merchant_pseudonym(merchant_id=campaign.merchant_id, pseudonym=pseudonym)
        for _pk, consumer_id, pseudonym in rows
        if consumer_id in reachable
    ]
    next_cursor = (
        signing.dumps({"c": campaign.pk, "d": rows[-1][0]}, salt=EXPORT_CURSOR_SALT) if len(rows) == limit else None
    )
    audit_record(
        actor=actor,
        action="campaign.audience_exported",
        merchant_id=campaign.merchant_id,
        purpose=basis.purpose,
        legal_basis=basis.legal_basis,
        activity_id=basis.activity_id,
        object_type="Campaign",
        object_id=campaign.pk,
        counts={"exported": len(pseudonyms), "not_reachable_now": len(rows) - len(pseudonyms)},
        details={"first_page": after == 0, "last_page": next_cursor is None},
    )
    return ExportPage(pseudonyms=pseudonyms, next_cursor=next_cursor)
