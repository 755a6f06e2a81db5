"""The backend checks: exactly one answers, with or without a connection passed."""

from django.db import connection

from dbtools.backend import on_postgresql, on_sqlite


def test_exactly_one_backend_answers():
    assert on_postgresql() != on_sqlite()
    assert on_postgresql(connection) == on_postgresql()
