"""Writing and verifying the hash-chained audit log.

The chain proves that no entry was edited, removed or reordered between the
first and the last one. What it cannot prove on its own is that the last one
is still there: deleting the tail (or everything) leaves a shorter chain that
verifies. So every append also advances a signed checkpoint of the chain's
length and head, HMAC(AUDIT_KEY, ...), kept apart from the table (a file under
the var dir, and the shared cache), and the verifier insists the table still
reaches it. See docs/privacy.md, "Audit log", for the trust model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from dbtools.locks import AUDIT_CHAIN

from .models import AuditEntry

logger = logging.getLogger("dmp.privacy")

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
        last = AuditEntry.objects.order_by("-id").values_list("entry_hash", "seq").first()
        prev_hash, prev_seq = last if last is not None else (GENESIS_HASH, 0)
        if prev_seq is None:  # not numbered (cannot happen after migration 0008): count once
            prev_seq = AuditEntry.objects.count()
        # One set of fields is both hashed and stored, so what is stored is what the chain vouches for.
        fields: dict[str, Any] = {
            "created_at": created_at,
            "actor": actor,
            "merchant_id": merchant_id,
            "purpose": purpose,
            "legal_basis": legal_basis,
            "activity_id": activity_id,
            "action": action,
            "object_type": object_type,
            "object_id": str(object_id),
            "counts": counts,
            "details": details,
        }
        entry = AuditEntry.objects.create(
            seq=prev_seq + 1,
            **fields,
            prev_hash=prev_hash,
            entry_hash=chain_hash(prev_hash, canonical_entry(**fields)),
        )
        head = (entry.seq, entry.pk, entry.entry_hash, prev_hash)
        # Only a committed entry may move the checkpoint: a rolled-back one would look like a truncation.
        transaction.on_commit(lambda: checkpoint_advance(*head), robust=True)
        return entry


# --------------------------------------------------------------------------- the signed checkpoint

CHECKPOINT_CACHE_KEY = "privacy:audit-checkpoint:v1"


@dataclass(frozen=True)
class Checkpoint:
    """The chain's length and head, signed with AUDIT_KEY, so the table alone cannot be cut back unnoticed."""

    length: int
    head_id: int
    head_hash: str
    signature: str = ""

    def _payload(self) -> bytes:
        return f"audit-checkpoint:v1:{self.length}:{self.head_id}:{self.head_hash}".encode()

    @classmethod
    def signed(cls, *, length: int, head_id: int, head_hash: str) -> Checkpoint:
        unsigned = cls(length=length, head_id=head_id, head_hash=head_hash)
        signature = hmac.new(settings.AUDIT_KEY.encode(), unsigned._payload(), hashlib.sha256).hexdigest()
        return cls(length=length, head_id=head_id, head_hash=head_hash, signature=signature)

    @property
    def valid(self) -> bool:
        expected = hmac.new(settings.AUDIT_KEY.encode(), self._payload(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, str(self.signature))


def _checkpoint_path() -> Path:
    return Path(settings.AUDIT_CHECKPOINT_PATH)


def _parse_checkpoint(raw) -> Checkpoint | None:
    """A stored checkpoint, or None when there is none; ValueError when it is there but malformed."""
    if raw is None:
        return None
    data = json.loads(raw) if isinstance(raw, str | bytes) else raw
    try:
        return Checkpoint(
            length=int(data["length"]),
            head_id=int(data["head_id"]),
            head_hash=str(data["head_hash"]),
            signature=str(data["signature"]),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError("malformed") from exc


def _read_stores() -> tuple[list[tuple[str, Checkpoint]], list[str]]:
    """Every stored checkpoint with its store's name, and the problems found (bad signature, unreadable)."""
    found: list[tuple[str, Checkpoint]] = []
    problems: list[str] = []
    readers = (
        ("the checkpoint file", lambda: _checkpoint_path().read_text() if _checkpoint_path().exists() else None),
        ("the cached checkpoint", lambda: cache.get(CHECKPOINT_CACHE_KEY)),
    )
    for name, read in readers:
        try:
            checkpoint = _parse_checkpoint(read())
        except (OSError, ValueError):
            problems.append(f"{name} is unreadable or malformed (tampered?)")
            continue
        except Exception:  # a cache that is down is no evidence of anything
            logger.warning("audit.checkpoint_store_unavailable", extra={"fields": {"store": name}})
            continue
        if checkpoint is None:
            continue
        if not checkpoint.valid:
            problems.append(f"{name}'s signature does not verify (forged, or signed with another AUDIT_KEY)")
            continue
        found.append((name, checkpoint))
    return found, problems


def checkpoint_load() -> tuple[Checkpoint | None, list[str]]:
    """The furthest valid checkpoint over all stores, and the problems found with the stores."""
    found, problems = _read_stores()
    best = max((checkpoint for _, checkpoint in found), key=lambda c: c.length, default=None)
    return best, problems


@contextlib.contextmanager
def _checkpoint_lock() -> Iterator[None]:
    """One writer at a time across the processes sharing the var dir."""
    path = _checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _checkpoint_write(checkpoint: Checkpoint) -> None:
    path = _checkpoint_path()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(asdict(checkpoint), sort_keys=True))
    os.replace(temporary, path)
    try:
        cache.set(CHECKPOINT_CACHE_KEY, asdict(checkpoint), timeout=None)
    except Exception:  # the file is the primary copy; a cache outage must not fail the append
        logger.warning("audit.checkpoint_cache_unavailable")


def _on_chain(checkpoint: Checkpoint) -> bool:
    return AuditEntry.objects.filter(
        seq=checkpoint.length, pk=checkpoint.head_id, entry_hash=checkpoint.head_hash
    ).exists()


def checkpoint_advance(length: int, head_id: int, head_hash: str, prev_hash: str) -> bool:
    """Move the checkpoint forward to a committed entry (after commit; never fails the caller).

    Moves only forward, and only along the chain: when the stored head is no longer in the table (the tail was
    cut and new entries written on the shorter chain), the checkpoint stays where it is, as evidence for the
    verifier, and an ERROR is logged.
    """
    try:
        with _checkpoint_lock():
            current, problems = checkpoint_load()
            if problems:
                logger.error("audit.checkpoint_invalid", extra={"fields": {"problem": problems[0]}})
                return False
            if current is not None:
                if length <= current.length:
                    return False
                follows = length == current.length + 1 and hmac.compare_digest(prev_hash, current.head_hash)
                if not follows and not _on_chain(current):
                    logger.error(
                        "audit.checkpoint_diverged",
                        extra={"fields": {"checkpoint_length": current.length, "checkpoint_head": current.head_id}},
                    )
                    return False
            _checkpoint_write(Checkpoint.signed(length=length, head_id=head_id, head_hash=head_hash))
            return True
    except OSError as exc:
        logger.warning("audit.checkpoint_unwritable", extra={"fields": {"error": type(exc).__name__}})
        return False


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class ChainBreak:
    entry_id: int | None  # the first broken entry; None when what is wrong is missing entries or the checkpoint
    reason: str

    def describe(self) -> str:
        where = f"at entry {self.entry_id}" if self.entry_id is not None else ""
        return " ".join(part for part in ("audit chain broken", where) if part) + f": {self.reason}"


@dataclass(frozen=True)
class ChainReport:
    checked: int
    first_break: ChainBreak | None
    head_id: int | None = None
    head_hash: str = GENESIS_HASH
    checkpoint_length: int | None = None
    checkpoint_created: bool = False

    @property
    def intact(self) -> bool:
        return self.first_break is None


def _entries() -> Iterator[AuditEntry]:
    return AuditEntry.objects.order_by("id").iterator(chunk_size=5000)


def _missing_tail(checked: int, last_id: int | None, checkpoint: Checkpoint) -> ChainBreak:
    missing = checkpoint.length - checked
    held = f"the table holds {checked}, ending at entry {last_id}" if checked else "the table is empty"
    return ChainBreak(
        None,
        f"{missing} entr{'y is' if missing == 1 else 'ies are'} missing from the end of the log (deleted or "
        f"truncated): the signed checkpoint names {checkpoint.length} entries ending at entry "
        f"{checkpoint.head_id}, {held}",
    )


def audit_chain_verify(*, update_checkpoint: bool = True) -> ChainReport:
    """Walk the chain in order; report the first entry whose link or content does not verify, or the entries
    missing from its end according to the signed checkpoint.

    An intact chain moves the checkpoint to its head (and creates it where there was none, e.g. on the first
    run after an upgrade, which is then said in the report).
    """
    checkpoint, problems = checkpoint_load()
    expected_prev = GENESIS_HASH
    checked = 0
    last_id: int | None = None

    def broken(brk: ChainBreak) -> ChainReport:
        return ChainReport(checked, brk, last_id, expected_prev, checkpoint.length if checkpoint else None)

    for entry in _entries():
        checked += 1
        if entry.prev_hash != expected_prev:
            return broken(
                ChainBreak(entry.pk, "its previous-hash does not match the entry before it (removed or reordered)")
            )
        if not hmac.compare_digest(entry.entry_hash, chain_hash(entry.prev_hash, _entry_canonical(entry))):
            return broken(ChainBreak(entry.pk, "its content does not match its hash (edited)"))
        if entry.seq is not None and entry.seq != checked:
            return broken(ChainBreak(entry.pk, f"it is numbered {entry.seq} but is entry {checked} of the chain"))
        if checkpoint is not None and checked == checkpoint.length and entry.entry_hash != checkpoint.head_hash:
            return broken(
                ChainBreak(
                    entry.pk,
                    f"it is not the entry the signed checkpoint names at position {checkpoint.length} (entry "
                    f"{checkpoint.head_id}): the log was cut back and written on",
                )
            )
        expected_prev = entry.entry_hash
        last_id = entry.pk
    if problems:
        return broken(ChainBreak(None, "; ".join(problems)))
    if checkpoint is not None and checked < checkpoint.length:
        return broken(_missing_tail(checked, last_id, checkpoint))
    created = False
    if update_checkpoint and last_id is not None:
        created = checkpoint is None
        if not checkpoint_advance(checked, last_id, expected_prev, "") and created:
            created = False
    return ChainReport(checked, None, last_id, expected_prev, checkpoint.length if checkpoint else None, created)
