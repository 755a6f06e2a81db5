"""Binary COPY and packed reads on PostgreSQL, and the two input loaders agreeing rule by rule."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.models import EventType
from dbtools.pgcopy import Column, CopyFormatError, copy_in, packed_decode, packed_expression, pg_timestamp
from tags.inputs import TaggingInput, _OrmLoader, packed_query
from tags.rules import RULES

from .conftest import AS_OF

pytestmark = pytest.mark.postgres

COLUMNS = [Column("a", "int8"), Column("b", "int2"), Column("f", "float8"), Column("t", "timestamptz")]


def test_copy_in_then_packed_read_round_trip(db):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE roundtrip (a int8, b int2, f float8, t timestamptz)")
        arrays = {
            "a": np.array([1, 2**40, -5]),
            "b": np.array([1, 2, 3]),
            "f": np.array([0.5, -1.25, 1e10]),
            "t": np.array([pg_timestamp(AS_OF.timestamp()), pg_timestamp(0), pg_timestamp(1.5e9)]),
        }
        assert copy_in(cursor.cursor, "roundtrip", COLUMNS, arrays) == 3
    packed = packed_expression([(c.name, c) for c in COLUMNS])
    back = packed_query(f"SELECT {packed} FROM (SELECT * FROM roundtrip ORDER BY b) AS r", [], COLUMNS)
    assert back["a"].tolist() == [1, 2**40, -5]
    assert back["b"].tolist() == [1, 2, 3]
    assert back["f"].tolist() == [0.5, -1.25, 1e10]
    assert back["t"].tolist() == [int(AS_OF.timestamp()), 0, 1_500_000_000]


def test_packed_reads_of_nothing_are_empty(db):
    column = Column("a", "int8")
    packed = packed_expression([("a", column)])
    assert packed_query(f"SELECT {packed} FROM (SELECT 1::int8 AS a WHERE false) AS r", [], [column])["a"].size == 0


def test_a_misaligned_packed_value_is_refused_not_misread():
    with pytest.raises(CopyFormatError, match="whole rows"):
        packed_decode(b"\x00" * 9, [Column("a", "int8")])


events = st.lists(
    st.tuples(
        st.integers(0, 5),  # consumer
        st.integers(0, 3),  # product (0: none)
        st.sampled_from([int(t) for t in EventType]),
        st.floats(0, 400),  # days ago
        st.sampled_from(["0", "1.50"]),  # discount
        st.sampled_from(["", "a", "b", "c"]),  # order
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=events)
def test_postgres_and_orm_inputs_give_the_same_tags(world, rows):
    with transaction.atomic():
        consumers = world.consumers(6, country="SG", age_range="25-34")
        products = [None] + [world.product(category=c, brand=b) for c, b in (("A", "x"), ("B", "y"), ("A", ""))]
        world.events(
            [
                (consumers[c], t, d, products[p], None, None, 1, disc, f"{c}-{o}" if o else "")
                for c, p, t, d, disc, o in rows
            ]
        )
        for family, rule in RULES.items():
            on_postgres = TaggingInput(as_of=AS_OF)
            through_orm = TaggingInput(as_of=AS_OF)
            through_orm._loader = _OrmLoader()
            a, b = rule.compute(on_postgres), rule.compute(through_orm)
            assert [v.value for v in a.values] == [v.value for v in b.values], family
            pairs_a = sorted(zip(a.consumers.tolist(), a.value_index.tolist(), strict=True))
            pairs_b = sorted(zip(b.consumers.tolist(), b.value_index.tolist(), strict=True))
            assert pairs_a == pairs_b, family
            if a.scores is not None:
                order_a = np.lexsort((a.value_index, a.consumers))
                order_b = np.lexsort((b.value_index, b.consumers))
                np.testing.assert_allclose(a.scores[order_a], b.scores[order_b], rtol=1e-6, err_msg=family)
        transaction.set_rollback(True)
