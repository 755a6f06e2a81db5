"""IdsIn filters by a list of ids as `__in` does, on both databases (one array parameter on PostgreSQL)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.models import Consumer
from dbtools.expressions import IdsIn

pytestmark = pytest.mark.django_db


@pytest.fixture
def consumer_ids() -> list[int]:
    made = Consumer.objects.bulk_create(Consumer(pseudonym=f"{i:064x}") for i in range(1, 41))
    return sorted(c.pk for c in Consumer.objects.filter(pk__in=[m.pk for m in made]).only("pk"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(min_value=0, max_value=60), max_size=50))
def test_ids_in_selects_what_an_in_list_selects(consumer_ids, picks):
    # Indexes past the 40 consumers stand for ids no row has; repeats are allowed.
    wanted = [consumer_ids[i] if i < len(consumer_ids) else 10_000_000 + i for i in picks]
    through_expression = set(Consumer.objects.filter(IdsIn("id", wanted)).values_list("pk", flat=True))
    through_lookup = set(Consumer.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    assert through_expression == through_lookup


def test_an_empty_list_selects_nothing_and_combines_with_other_conditions(consumer_ids):
    assert not Consumer.objects.filter(IdsIn("id", [])).exists()
    first, second = consumer_ids[:2]
    both = Consumer.objects.filter(IdsIn("id", [first, second]))
    assert list(both.exclude(pk=first).values_list("pk", flat=True)) == [second]
    assert Consumer.objects.filter(IdsIn("id", [first]) | IdsIn("id", [second])).count() == 2
