"""Which database we are on. Every backend-specific branch asks here, not `connection.vendor` directly."""

from __future__ import annotations

from django.db import connection as default_connection
from django.db.backends.base.base import BaseDatabaseWrapper


def on_postgresql(connection: BaseDatabaseWrapper | None = None) -> bool:
    """True on PostgreSQL (production, and the PostgreSQL test run); False on the embedded SQLite.

    Pass a connection where one is at hand (a migration's `schema_editor.connection`); the default
    connection otherwise.
    """
    return (connection or default_connection).vendor == "postgresql"


def on_sqlite(connection: BaseDatabaseWrapper | None = None) -> bool:
    return (connection or default_connection).vendor == "sqlite"
