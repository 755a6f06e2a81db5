"""Writing and verifying the hash-chained audit log."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dbtools.locks import AUDIT_CHAIN

from .models import AuditEntry

GENESIS_HASH = "0" * 64


def canonical_entry(
    *,
    created_at: datetime,
    actor: str,
    merchant_id: int | None,
    purpose: str,
    legal_basis: str,
    activity_id: int | None,
    action: str,
    object_type: str,
    object_id: str,
    counts: dict,
    details: dict,
) -> str:
    return json.dumps(
        {
            "created_at": created_at.isoformat(timespec="microseconds"),
            "actor": actor,
            "merchant_id": merchant_id,
            "purpose": purpose,
            "legal_basis": legal_basis,
            "activity_id": activity_id,
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "counts": counts,
            "details": details,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )


def chain_hash(prev_hash: str, canonical: str) -> str:
    return hmac.new(settings.AUDIT_KEY.encode(), (prev_hash + canonical).encode(), hashlib.sha256).hexdigest()


def _entry_canonical(entry: AuditEntry) -> str:
    return canonical_entry(
        created_at=entry.created_at,
        actor=entry.actor,
        merchant_id=entry.merchant_id,
        purpose=entry.purpose,
        legal_basis=entry.legal_basis,
        activity_id=entry.activity_id,
        action=entry.action,
        object_type=entry.object_type,
        object_id=entry.object_id,
        counts=entry.counts,
        details=entry.details,
    )


def audit_record(
    *,
    actor: str,
    action: str,
    merchant_id: int | None = None,
    purpose: str = "",
    legal_basis: str = "",
    activity_id: int | None = None,
    object_type: str = "",
    object_id: str | int = "",
    counts: dict | None = None,
    details: dict | None = None,
) -> AuditEntry:
    """Append one entry. Runs inside the caller's transaction, so a rolled-back job leaves no entry.

    Callers pass counts, ids and hashes, never raw consumer identifiers.
    """
    counts = json.loads(json.dumps(counts or {}, default=str))
    details = json.loads(json.dumps(details or {}, default=str))
    # Microsecond timestamps survive the round trip through every database backend.
    created_at = timezone.now()
    with transaction.atomic():
        # Serialises appends on PostgreSQL, so two writers never chain to the same predecessor.
        AUDIT_CHAIN.hold_for_transaction()
        last = AuditEntry.objects.order_by("-id").values_list("entry_hash", flat=True).first()
        prev_hash = last or GENESIS_HASH
        canonical = canonical_entry(
            created_at=created_at,
            actor=actor,
            merchant_id=merchant_id,
            purpose=purpose,
            legal_basis=legal_basis,
            activity_id=activity_id,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            counts=counts,
            details=details,
        )
        return AuditEntry.objects.create(
            created_at=created_at,
            actor=actor,
            merchant_id=merchant_id,
            purpose=purpose,
            legal_basis=legal_basis,
            activity_id=activity_id,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            counts=counts,
            details=details,
            prev_hash=prev_hash,
            entry_hash=chain_hash(prev_hash, canonical),
        )


@dataclass(frozen=True)
class ChainBreak:
    entry_id: int
    reason: str


@dataclass(frozen=True)
class ChainReport:
    checked: int
    first_break: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def _entries() -> Iterator[AuditEntry]:
    return AuditEntry.objects.order_by("id").iterator(chunk_size=5000)


def audit_chain_verify() -> ChainReport:
    """Walk the chain in order; report the first entry whose link or content does not verify."""
    expected_prev = GENESIS_HASH
    checked = 0
    for entry in _entries():
        checked += 1
        if entry.prev_hash != expected_prev:
            return ChainReport(
                checked,
                ChainBreak(entry.pk, "its previous-hash does not match the entry before it (removed or reordered)"),
            )
        if not hmac.compare_digest(entry.entry_hash, chain_hash(entry.prev_hash, _entry_canonical(entry))):
            return ChainReport(checked, ChainBreak(entry.pk, "its content does not match its hash (edited)"))
        expected_prev = entry.entry_hash
    return ChainReport(checked, None)
