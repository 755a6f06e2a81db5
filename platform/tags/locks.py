"""One lock shared by tagging runs and tag erasure, so neither sees the other half-done.

A tagging run holds it for its whole length (session lock); erasing a
consumer's tags takes it for its transaction, so an erasure waits for a
running tagging run to finish and a tagging run starts only after an erasure
in flight has committed (and the consumer is gone from what it reads).
On SQLite, which has a single writer, there is nothing to lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

# Any fixed number, distinct from the audit log's.
TAGGING_LOCK_ID = 7_320_551_003


@contextmanager
def tagging_run_lock() -> Iterator[None]:
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [TAGGING_LOCK_ID])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [TAGGING_LOCK_ID])


def tagging_transaction_lock() -> None:
    """Take the lock until the current transaction ends (call inside transaction.atomic)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [TAGGING_LOCK_ID])
