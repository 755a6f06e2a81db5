"""Every PostgreSQL advisory lock of the platform, named, in one registry.

An advisory lock is only as good as its number: two jobs that picked the same number by accident wait on each
other, and a job that picks another's number breaks that job's guarantee. So every lock is declared here, by
name and number, and `advisory_lock` refuses a name or a number already taken (in either of PostgreSQL's key
spaces, to keep the table readable). Keep numbers once deployed: during a rolling deploy old and new processes
must still exclude each other.

On SQLite, which has a single writer and runs tasks eagerly in one process, every lock is a no-op that
always succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import DatabaseError, connection

from .backend import on_postgresql

logger = logging.getLogger("dmp.db")

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


class LockCollision(ValueError):
    """A second advisory lock with a name or number already registered."""


@dataclass(frozen=True)
class AdvisoryLock:
    """A named advisory lock: one 64-bit key, or (with `per_object`) a namespace of two-key locks, one per id."""

    name: str
    key: int
    per_object: bool = False

    def _args(self, object_id: int | None) -> tuple[str, list[int]]:
        if self.per_object:
            if object_id is None:
                raise ValueError(f"the {self.name} lock is per object: pass the object's id")
            return "%s, %s", [self.key, object_id % INT32_MAX]
        if object_id is not None:
            raise ValueError(f"the {self.name} lock is not per object")
        return "%s", [self.key]

    def _call(self, function: str, object_id: int | None) -> bool:
        placeholders, params = self._args(object_id)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {function}({placeholders})", params)
            row = cursor.fetchone()
        return row[0] is not False

    @contextmanager
    def held(self, object_id: int | None = None) -> Iterator[None]:
        """Hold the lock for the block (a session lock: waits for it, releases it at the end)."""
        if not on_postgresql():
            yield
            return
        self._call("pg_advisory_lock", object_id)
        try:
            yield
        finally:
            self._call("pg_advisory_unlock", object_id)

    @contextmanager
    def try_held(self, object_id: int | None = None) -> Iterator[bool]:
        """Take the lock if nobody holds it, without waiting; yield whether it was taken."""
        if not on_postgresql():
            yield True
            return
        acquired = self._call("pg_try_advisory_lock", object_id)
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    self._call("pg_advisory_unlock", object_id)
                except DatabaseError:  # a broken connection has released the lock already
                    logger.warning(
                        "advisory_lock.release_failed", extra={"fields": {"lock": self.name, "object_id": object_id}}
                    )

    def hold_for_transaction(self, object_id: int | None = None) -> None:
        """Take the lock until the current transaction ends (call inside transaction.atomic)."""
        if on_postgresql():
            self._call("pg_advisory_xact_lock", object_id)


class LockRegistry:
    """Advisory locks by name and by number; refuses a second lock with either."""

    def __init__(self) -> None:
        self._by_name: dict[str, AdvisoryLock] = {}
        self._by_key: dict[int, AdvisoryLock] = {}

    def register(self, name: str, key: int, *, per_object: bool = False) -> AdvisoryLock:
        limit = INT32_MAX if per_object else INT64_MAX
        if not 0 < key <= limit:
            raise ValueError(f"advisory lock {name!r}: the number must be between 1 and {limit}")
        if name in self._by_name:
            raise LockCollision(f"an advisory lock named {name!r} is already registered")
        if key in self._by_key:
            raise LockCollision(f"advisory lock {name!r}: number {key} is already taken by {self._by_key[key].name!r}")
        lock = AdvisoryLock(name=name, key=key, per_object=per_object)
        self._by_name[name] = lock
        self._by_key[key] = lock
        return lock

    def locks(self) -> list[AdvisoryLock]:
        return sorted(self._by_name.values(), key=lambda lock: lock.key)


REGISTRY = LockRegistry()
advisory_lock = REGISTRY.register


# --- the platform's locks --------------------------------------------------------------------------------------

# The audit chain: one appender at a time, so each entry links to the true previous one.
AUDIT_CHAIN = advisory_lock("privacy.audit_chain", 7_320_551_001)
# Tagging runs and tag erasure: a run holds it for its whole length (session lock); erasing a consumer's tags
# takes it for its transaction, so neither sees the other half-done.
TAGGING = advisory_lock("tags.tagging", 7_320_551_003)
# One campaign's activation steps: at most one process works on a campaign at a time (per campaign id).
CAMPAIGN_RUN = advisory_lock("campaigns.activation_run", 7_320_552, per_object=True)
# Delivery writes across all campaigns, so frequency caps hold under concurrent launches (object id 0).
CAMPAIGN_CAPS = advisory_lock("campaigns.frequency_caps", 7_320_553, per_object=True)
