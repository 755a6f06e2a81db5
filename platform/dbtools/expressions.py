"""Query expressions whose best SQL differs by database."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import BooleanField, Expression, F


class IdsIn(Expression):
    """`column IN ids` as a filter: `queryset.filter(IdsIn("consumer_id", ids))`.

    PostgreSQL gets one array parameter (`column = ANY(%s)`) instead of a placeholder per id: Django builds and
    psycopg parses a query of 20,000 placeholders on every call, which cost more than running it. Elsewhere it is
    an IN list (the caller keeps lists within SQLite's parameter limit). An empty list matches nothing.
    """

    output_field = BooleanField()
    conditional = True

    def __init__(self, column: str, ids: Iterable[int]) -> None:
        super().__init__()
        self.column = F(column)
        self.ids = [int(i) for i in ids]

    def get_source_expressions(self) -> list[Any]:
        return [self.column]

    def set_source_expressions(self, exprs: list[Any]) -> None:
        (self.column,) = exprs

    def as_sql(self, compiler, connection, **extra_context):
        if not self.ids:
            return "1 = 0", []
        column, params = compiler.compile(self.column)
        return f"{column} IN ({', '.join(['%s'] * len(self.ids))})", [*params, *self.ids]

    def as_postgresql(self, compiler, connection, **extra_context):
        if not self.ids:
            return "1 = 0", []
        column, params = compiler.compile(self.column)
        return f"{column} = ANY(%s::bigint[])", [*params, self.ids]
