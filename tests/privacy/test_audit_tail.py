"""Issue 11, item 6: the audit log's tail cannot vanish unnoticed.

Deleting the last entries, deleting them all, or TRUNCATE leaves a shorter chain that links up; the signed
checkpoint of the chain's length and head (kept outside the database) is what gives it away. Each way of cutting
the tail below is one "truncation tried"; `audit_verify` must exit 1 naming what is missing.
"""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from privacy.audit import Checkpoint, audit_chain_verify, audit_record, checkpoint_load
from privacy.models import AuditEntry


@pytest.fixture
def write(db, django_capture_on_commit_callbacks):
    """write(n) -> n committed entries (their on-commit checkpoint updates run, as they do outside a test)."""

    def write(n: int) -> list[AuditEntry]:
        with django_capture_on_commit_callbacks(execute=True):
            return [audit_record(actor="task:test", action="test.action", counts={"i": i}) for i in range(n)]

    return write


def run_verify() -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("audit_verify", stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code), out.getvalue() + err.getvalue()
    return 0, out.getvalue() + err.getvalue()


def attack(sql: str, params: list | None = None) -> None:
    """What an attacker with the database owner's rights does (triggers off on PostgreSQL)."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params or [])


def test_every_committed_append_moves_the_signed_checkpoint(write):
    entries = write(4)
    checkpoint, problems = checkpoint_load()
    assert problems == []
    assert (checkpoint.length, checkpoint.head_id, checkpoint.head_hash) == (4, entries[-1].pk, entries[-1].entry_hash)
    assert checkpoint.valid
    assert [e.seq for e in entries] == [1, 2, 3, 4]


def test_a_rolled_back_append_does_not_move_it(write):
    write(2)
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(actor="task:test", action="rolled.back")
        raise RuntimeError
    assert checkpoint_load()[0].length == 2
    assert run_verify()[0] == 0


def delete_last_two(entries):
    attack("DELETE FROM privacy_auditentry WHERE id >= %s", [entries[-2].pk])


def delete_all(entries):
    attack("DELETE FROM privacy_auditentry")


def truncate(entries):
    attack("TRUNCATE privacy_auditentry")


@pytest.mark.parametrize(
    "cut,missing",
    [
        pytest.param(delete_last_two, "2 entries are missing from the end", id="delete-last-entries"),
        pytest.param(delete_all, "5 entries are missing from the end", id="delete-all"),
        pytest.param(truncate, "5 entries are missing from the end", id="truncate", marks=pytest.mark.postgres),
    ],
)
def test_cutting_the_tail_is_detected_and_named(write, cut, missing):
    entries = write(5)
    assert run_verify()[0] == 0
    cut(entries)
    code, output = run_verify()
    assert code == 1
    assert missing in output
    assert f"ending at entry {entries[-1].pk}" in output  # names the last entry the checkpoint signed
    report = audit_chain_verify()
    assert not report.intact and report.checked == len(entries) - int(missing.split()[0])


def test_cutting_the_tail_and_writing_on_is_detected(write):
    entries = write(5)
    attack("DELETE FROM privacy_auditentry WHERE id >= %s", [entries[-2].pk])
    more = write(3)  # the app carries on: the chain is whole again and longer than before
    assert checkpoint_load()[0].head_id == entries[-1].pk  # the checkpoint refused to follow the new branch
    code, output = run_verify()
    assert code == 1
    assert f"at entry {more[1].pk}" in output
    assert "cut back and written on" in output


@pytest.mark.parametrize("store", ["file", "cache"])
def test_a_forged_or_rolled_back_checkpoint_is_detected(write, settings, store):
    from django.core.cache import cache

    from privacy.audit import CHECKPOINT_CACHE_KEY

    write(3)
    forged = {"length": 1, "head_id": 1, "head_hash": "0" * 64, "signature": "f" * 64}
    if store == "file":
        settings.AUDIT_CHECKPOINT_PATH.write_text(json.dumps(forged))
    else:
        cache.set(CHECKPOINT_CACHE_KEY, forged, timeout=None)
    code, output = run_verify()
    assert code == 1
    assert "signature does not verify" in output


def test_the_furthest_copy_wins_so_losing_one_store_hides_nothing(write, settings):
    entries = write(4)
    settings.AUDIT_CHECKPOINT_PATH.unlink()  # the file is lost; the shared cache still has the checkpoint
    delete_last_two(entries)
    assert run_verify()[0] == 1


def test_first_run_after_the_upgrade_writes_the_checkpoint(db, settings):
    from django.core.cache import cache

    from privacy.audit import CHECKPOINT_CACHE_KEY

    audit_record(actor="task:test", action="before.upgrade")  # no on-commit in this test: no checkpoint yet
    assert checkpoint_load() == (None, [])
    code, output = run_verify()
    assert code == 0 and "one was written for the current head" in output
    assert checkpoint_load()[0] == Checkpoint.signed(
        length=1, head_id=AuditEntry.objects.get().pk, head_hash=AuditEntry.objects.get().entry_hash
    )
    assert cache.get(CHECKPOINT_CACHE_KEY)["length"] == 1


@pytest.mark.postgres
def test_postgres_refuses_truncate(write):
    write(2)
    with connection.cursor() as cursor:  # the suite's test database lets TRUNCATE through; production does not
        cursor.execute("ALTER TABLE privacy_auditentry ENABLE TRIGGER privacy_auditentry_no_truncate")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE privacy_auditentry")
    assert AuditEntry.objects.count() == 2
