"""COPY through a staging table: conflicts skipped, the table empty afterwards, reusable in one transaction."""

import pytest
from django.db import connection, transaction

from dbtools.pgcopy import copy_rows, copy_text, staging_table

pytestmark = pytest.mark.postgres

STAGE_COLUMNS = "k text, v integer"


def stage_into_target(rows: list[tuple[str, int]]) -> int:
    with connection.cursor() as cursor, staging_table(cursor, "test_stage", STAGE_COLUMNS) as stage:
        copy_rows(cursor, stage, ["k", "v"], rows)
        cursor.execute(f"INSERT INTO test_target (k, v) SELECT k, v FROM {stage} ON CONFLICT (k) DO NOTHING")  # noqa: S608
        inserted = cursor.rowcount
    return inserted


def test_staged_copy_skips_conflicts_and_leaves_the_stage_empty(db):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE test_target (k text PRIMARY KEY, v integer)")
    with transaction.atomic():
        assert stage_into_target([("a", 1), ("b", 2)]) == 2
        assert stage_into_target([("b", 20), ("c", 3)]) == 1  # b is there already; no commit in between
    with connection.cursor() as cursor:
        cursor.execute("SELECT k, v FROM test_target ORDER BY k")
        assert cursor.fetchall() == [("a", 1), ("b", 2), ("c", 3)]
        cursor.execute("SELECT count(*) FROM test_stage")
        assert cursor.fetchone()[0] == 0


def test_text_copy_and_names_are_checked(db):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE test_text (k text, v integer)")
        copy_text(cursor, "test_text", ["k", "v"], "x\t1\ny\t\\N\n")
        cursor.execute("SELECT k, v FROM test_text ORDER BY k")
        assert cursor.fetchall() == [("x", 1), ("y", None)]
        with pytest.raises(ValueError, match="identifier"):
            copy_text(cursor, "test_text; DROP TABLE x", ["k"], "")
