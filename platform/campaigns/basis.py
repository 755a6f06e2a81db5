"""What a campaign send needs before it may touch consumers: approved processing bases; the refusal it raises."""

from __future__ import annotations

from django.conf import settings

from privacy.models import LegalBasis, Purpose
from privacy.services import ProcessingBasis, ProcessingNotPermitted, processing_basis_require

from .models import (
    Campaign,
)


class ActivationRefused(Exception):
    """The activation cannot go on; `reason` is written on the campaign for the merchant to read."""

    def __init__(self, reason: str, *, code: str):
        self.reason = reason
        self.code = code
        super().__init__(reason)


def audience_too_small_reason() -> str:
    return (
        f"The audience has fewer than {settings.MIN_AUDIENCE} consumers once excluded segments, suppressed "
        "consumers, frequency caps and consumers without express direct-marketing consent are removed, so it "
        "cannot be used for a campaign. Widen the included segments or loosen the exclusions."
    )


def processing_refused_reason(exc: ProcessingNotPermitted) -> str:
    return (
        "Campaign sends need an approved direct-marketing processing activity based on consumers' express "
        f"opt-in consent, and there is none ({exc.reason}). A privacy officer must approve one first."
    )


def personalisation_basis_check(campaign: Campaign) -> None:
    """Personalising reads consumers' behaviour for recommendations: that needs its own approved activity."""
    if campaign.personalised_products == 0:
        return
    try:
        processing_basis_require(purpose=Purpose.RECOMMENDATION)
    except ProcessingNotPermitted as exc:
        raise ActivationRefused(
            f"Personalisation needs an approved recommendation processing activity ({exc.reason}). Set the "
            "number of personalised products to 0, or ask a privacy officer to approve one.",
            code="personalisation_not_permitted",
        ) from exc


def direct_marketing_basis() -> ProcessingBasis:
    """The guard every activation step and export runs first; raises ActivationRefused otherwise."""
    try:
        basis = processing_basis_require(purpose=Purpose.DIRECT_MARKETING)
    except ProcessingNotPermitted as exc:
        raise ActivationRefused(processing_refused_reason(exc), code="processing_not_permitted") from exc
    if basis.legal_basis != LegalBasis.CONSENT:  # the register enforces this too; never send on anything else
        raise ActivationRefused(
            "The approved direct-marketing activity is not based on consent.", code="processing_not_permitted"
        )
    return basis
