import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from dbtools.backend import on_postgresql
from privacy.audit import audit_chain_verify, audit_record
from privacy.models import AuditEntry


def write_entries(n: int) -> list[AuditEntry]:
    return [
        audit_record(actor="task:test", action="test.action", merchant_id=i, counts={"rows": i}, details={"i": i})
        for i in range(n)
    ]


def run_verify() -> tuple[int, str]:
    import io

    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("audit_verify", stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code), out.getvalue() + err.getvalue()
    return 0, out.getvalue() + err.getvalue()


def tamper(sql: str, params: list) -> None:
    """Edit a row by hand, as an attacker with database access would (bypassing the trigger on PostgreSQL)."""
    with transaction.atomic(), connection.cursor() as cursor:
        if on_postgresql():
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)


def test_intact_chain_verifies(db):
    write_entries(5)
    code, output = run_verify()
    assert code == 0
    assert "5 entries verified" in output


def test_each_entry_chains_to_the_previous(db):
    entries = write_entries(3)
    assert entries[1].prev_hash == entries[0].entry_hash
    assert entries[2].prev_hash == entries[1].entry_hash


@pytest.mark.parametrize(
    "column,value", [("action", "'nothing.happened'"), ("counts", "'{\"rows\": 999}'"), ("actor", "'user:1'")]
)
def test_editing_any_row_by_hand_names_that_entry(db, column, value):
    entries = write_entries(5)
    target = entries[2]
    tamper(f"UPDATE privacy_auditentry SET {column} = {value} WHERE id = %s", [target.pk])
    code, output = run_verify()
    assert code == 1
    assert f"entry {target.pk}" in output
    assert audit_chain_verify().first_break.entry_id == target.pk


def test_deleting_a_row_by_hand_breaks_the_next_link(db):
    entries = write_entries(4)
    tamper("DELETE FROM privacy_auditentry WHERE id = %s", [entries[1].pk])
    code, output = run_verify()
    assert code == 1
    assert f"entry {entries[2].pk}" in output


@pytest.mark.postgres
def test_postgres_refuses_update_and_delete(db):
    entry = write_entries(1)[0]
    for statement in (
        "UPDATE privacy_auditentry SET action = 'x' WHERE id = %s",
        "DELETE FROM privacy_auditentry WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement, [entry.pk])
    assert AuditEntry.objects.get(pk=entry.pk).action == "test.action"
