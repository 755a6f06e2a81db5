"""Retiring the phone pseudonyms made before phone numbers were normalised to E.164.

After the upgrade every spelling of a phone number reaches the new pseudonym, so nothing that arrives can reach a
consumer held under an old one, and that consumer's marketing opt-in would stand for ever. The operator still has
the identifiers as they were sent; this service recomputes each one's old pseudonym and, where a consumer is held
under it (and it differs from the new one), records a withdrawal of direct-marketing consent for it. Nothing is
stored or logged about the identifiers; the result is counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from django.utils import timezone

from .audit import audit_record
from .models import ConsentKind, ConsentStatus, Purpose
from .pseudonyms import InvalidIdentifier, legacy_pseudonymise, looks_like_phone_number, pseudonymise
from .services import ConsentChange, consents_record
from .subject_data import consumer_id_for

SOURCE = "upgrade:e164-phone-pseudonyms"


@dataclass
class RetireReport:
    read: int = 0
    phone_numbers: int = 0
    unchanged: int = 0  # the old rule already gave the new pseudonym
    not_held: int = 0
    withdrawn: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def legacy_phone_pseudonyms_retire(*, raw_identifiers: Iterable[str], actor: str) -> RetireReport:
    """Withdraw direct-marketing consent of the consumers held under the old pseudonyms of these phone numbers."""
    report = RetireReport()
    consumer_ids: set[int] = set()
    for raw in raw_identifiers:
        raw = raw.strip()
        if not raw:
            continue
        report.read += 1
        if not looks_like_phone_number(raw):
            continue
        report.phone_numbers += 1
        old = legacy_pseudonymise(raw)
        try:
            unchanged = old == pseudonymise(raw)
        except InvalidIdentifier:  # no possible number now: the old consumer is still retired
            unchanged = False
        if unchanged:
            report.unchanged += 1
            continue
        consumer_id = consumer_id_for(old)
        if consumer_id is None:
            report.not_held += 1
            continue
        consumer_ids.add(consumer_id)
    now = timezone.now()
    changes = [
        ConsentChange(cid, Purpose.DIRECT_MARKETING, ConsentStatus.WITHDRAWN, ConsentKind.EXPRESS, SOURCE, now)
        for cid in sorted(consumer_ids)
    ]
    if changes:
        consents_record(changes=changes, actor=actor)
    report.withdrawn = len(changes)
    audit_record(actor=actor, action="pseudonyms.legacy_phones_retired", counts=report.as_dict())
    return report
