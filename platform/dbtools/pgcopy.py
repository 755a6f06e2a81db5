"""COPY on PostgreSQL: fast writes (binary from numpy, text, rows), staging tables, and packed reads into numpy.

Writes: binary COPY FROM STDIN. With fixed-width columns every row of the
binary format has the same length, so a block of rows is one numpy structured
array. Text COPY (`copy_text`) and row COPY (`copy_rows`) for mixed columns.

Staging: `staging_table` gives an empty temporary table for this transaction;
COPY into it, then move the rows with one statement (INSERT ... SELECT ... ON
CONFLICT DO NOTHING, or DELETE ... USING). COPY itself cannot skip conflicts.

Reads: packed aggregation. The server packs rows into one bytea of fixed-width
big-endian values (string_agg over the types' send functions), which numpy
reads directly. Reading with COPY TO STDOUT instead costs one protocol message,
and so several Python calls, per row: about twice as slow for the events table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from django.db import connection, transaction

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
# PostgreSQL timestamps count microseconds from 2000-01-01 UTC.
PG_EPOCH_UNIX_SECONDS = 946_684_800

# column kind -> (big-endian numpy type, byte length on the wire)
KINDS: dict[str, tuple[str, int]] = {
    "bool": ("u1", 1),
    "int2": (">i2", 2),
    "int4": (">i4", 4),
    "int8": (">i8", 8),
    "float4": (">f4", 4),
    "float8": (">f8", 8),
    "timestamptz": (">i8", 8),  # microseconds since 2000-01-01 UTC
}


class CopyFormatError(RuntimeError):
    """The server sent rows that do not match the declared fixed-width layout."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    nullable_all: bool = False  # write side only: every value NULL (no bytes on the wire)


def _row_dtype(columns: Sequence[Column]) -> np.dtype:
    fields: list[tuple[str, str]] = [("_n", ">i2")]
    for column in columns:
        fields.append((f"_len_{column.name}", ">i4"))
        if not column.nullable_all:
            fields.append((column.name, KINDS[column.kind][0]))
    return np.dtype(fields)


def encode_rows(columns: Sequence[Column], arrays: dict[str, np.ndarray | int | float]) -> bytes:
    """The rows as binary COPY data (no header or trailer). Scalars are broadcast."""
    lengths = [len(v) for v in arrays.values() if isinstance(v, np.ndarray)]
    if not lengths:
        raise ValueError("at least one column must be an array")
    rows = lengths[0]
    if any(n != rows for n in lengths):
        raise ValueError("all columns must have the same length")
    block = np.empty(rows, dtype=_row_dtype(columns))
    block["_n"] = len(columns)
    for column in columns:
        if column.nullable_all:
            block[f"_len_{column.name}"] = -1
            continue
        width = KINDS[column.kind][1]
        block[f"_len_{column.name}"] = width
        block[column.name] = arrays[column.name]
    return block.tobytes()


def copy_in(
    cursor,
    table: str,
    columns: Sequence[Column],
    arrays: dict[str, np.ndarray | int | float],
    *,
    chunk_rows: int = 500_000,
) -> int:
    """`COPY table (columns) FROM STDIN (FORMAT binary)` from arrays. Returns the number of rows written.

    Timestamp columns take int64 microseconds since 2000-01-01 UTC (see
    pg_timestamp). Quote-safe: table and column names come from model metadata,
    never from input.
    """
    names = ", ".join(f'"{c.name}"' for c in columns)
    lengths = [len(v) for v in arrays.values() if isinstance(v, np.ndarray)]
    rows = lengths[0] if lengths else 0
    with cursor.copy(f'COPY "{table}" ({names}) FROM STDIN (FORMAT binary)') as copy:
        copy.write(HEADER)
        for start in range(0, rows, chunk_rows):
            part = {
                name: (values[start : start + chunk_rows] if isinstance(values, np.ndarray) else values)
                for name, values in arrays.items()
            }
            copy.write(encode_rows(columns, part))
        copy.write(TRAILER)
    return rows


def copy_text(cursor, table: str, columns: Sequence[str], data: str | bytes) -> None:
    """`COPY table (columns) FROM STDIN` from one buffer of COPY text (tab-separated, `\\N` for NULL).

    The caller escapes values (or, like the event writer, writes only digests, numbers and timestamps).
    `cursor` is Django's; errors come out as Django's database errors.
    """
    _check_names(table, columns)
    with connection.wrap_database_errors, cursor.cursor.copy(_copy_statement(table, columns)) as copy:
        copy.write(data)


def copy_rows(cursor, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """`COPY table (columns) FROM STDIN` from Python rows (psycopg adapts and escapes each value)."""
    _check_names(table, columns)
    with connection.wrap_database_errors, cursor.cursor.copy(_copy_statement(table, columns)) as copy:
        for row in rows:
            copy.write_row(row)


@contextmanager
def staging_table(cursor, name: str, columns_sql: str) -> Iterator[str]:
    """An empty temporary staging table for the block, inside one transaction; yields its name.

    Created once per database session (`ON COMMIT DELETE ROWS`), emptied on entry (inside an enclosing
    transaction no commit has emptied it since its last use) and on the way out. COPY into it, then move its
    rows with one statement. `columns_sql` is the column list, e.g. `"tag_id int8, consumer_id int8"`;
    names are constants of the caller, never input.
    """
    _check_names(name, [])
    with transaction.atomic():
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({columns_sql}) ON COMMIT DELETE ROWS")
        cursor.execute(f"TRUNCATE {name}")
        yield name
        cursor.execute(f"TRUNCATE {name}")


_NAME = re.compile(r'^"?[A-Za-z_][A-Za-z0-9_]*"?$')


def _check_names(table: str, columns: Sequence[str]) -> None:
    # Table and column names are interpolated into COPY statements: they must be plain identifiers.
    for name in (table, *columns):
        if not _NAME.match(name):
            raise ValueError(f"not a plain SQL identifier: {name!r}")


def _copy_statement(table: str, columns: Sequence[str]) -> str:
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN"


def pg_timestamp(unix_seconds: float) -> int:
    """A Unix time as PostgreSQL's binary timestamp (microseconds since 2000-01-01 UTC)."""
    return round((unix_seconds - PG_EPOCH_UNIX_SECONDS) * 1_000_000)


# Packed aggregation: for full-table reads, the server packs a range of the table's pages into one bytea of
# fixed-width big-endian rows (string_agg over the types' binary send functions). The client receives one
# value per range instead of one message per row, and ranges can be read on several connections at once.
SEND_FUNCTIONS = {
    "bool": "boolsend",
    "int2": "int2send",
    "int4": "int4send",
    "int8": "int8send",
    "float4": "float4send",
    "float8": "float8send",
    "timestamptz": "timestamptz_send",
}


def packed_expression(expressions: Sequence[tuple[str, Column]]) -> str:
    """`string_agg(send(a) || send(b) ..., '')` for (SQL expression, column) pairs.

    Every expression must be NOT NULL: string_agg skips a row whose packed
    value is NULL, so COALESCE anything nullable.
    """
    packed = " || ".join(f"{SEND_FUNCTIONS[column.kind]}({expression})" for expression, column in expressions)
    return f"string_agg({packed}, ''::bytea)"


def packed_decode(data: bytes | memoryview | None, columns: Sequence[Column]) -> dict[str, np.ndarray]:
    dtype = np.dtype([(c.name, KINDS[c.kind][0]) for c in columns])
    raw = b"" if data is None else bytes(data)
    if len(raw) % dtype.itemsize:
        raise CopyFormatError(f"{len(raw)} bytes do not make whole rows of {dtype.itemsize} bytes")
    block = np.frombuffer(raw, dtype=dtype)
    out: dict[str, np.ndarray] = {}
    for column in columns:
        values = block[column.name].astype(np.dtype(KINDS[column.kind][0]).newbyteorder("="))
        if column.kind == "timestamptz":
            values = values // 1_000_000 + PG_EPOCH_UNIX_SECONDS
        elif column.kind == "bool":
            values = values.astype(bool)
        out[column.name] = values
    return out


def page_ranges(cursor, table: str, pages_per_range: int) -> list[tuple[int, int | None]]:
    """Ranges of the table's pages covering all of it; the last is open-ended for rows added meanwhile."""
    cursor.execute("SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int", [table])
    pages = int(cursor.fetchone()[0])
    starts = list(range(0, max(pages, 1), pages_per_range))
    return [(start, starts[i + 1] if i + 1 < len(starts) else None) for i, start in enumerate(starts)]


def page_range_condition(page_range: tuple[int, int | None]) -> tuple[str, list[str]]:
    """A TID range condition (a TID range scan on PostgreSQL 14 and later) for one page range."""
    start, end = page_range
    if end is None:
        return "ctid >= %s::tid", [f"({start},0)"]
    return "ctid >= %s::tid AND ctid < %s::tid", [f"({start},0)", f"({end},0)"]
