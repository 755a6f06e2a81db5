"""The grouping helpers agree with plain Python on random data (they replace sorts and np.unique)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tags.arrays import sorted_unique, sorted_unique_inverse
from tags.rules import base
from tags.rules.base import distinct_codes, distinct_count, group_pairs, top_within

ints = arrays(np.int64, st.integers(0, 40), elements=st.integers(-(2**40), 2**40))


@given(ints)
def test_sorted_unique_matches_python(values):
    assert sorted_unique(values).tolist() == sorted(set(values.tolist()))
    unique, inverse = sorted_unique_inverse(values)
    assert unique.tolist() == sorted(set(values.tolist()))
    assert unique[inverse].tolist() == values.tolist()


pairs = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 4)), max_size=60)


@given(pairs, st.booleans())
def test_group_pairs_dense_and_sorted_paths_agree_with_python(rows, dense):
    first = np.array([r[0] for r in rows], dtype=np.int32)
    second = np.array([r[1] for r in rows], dtype=np.int64)
    previous = base.DENSE_PAIR_LIMIT
    base.DENSE_PAIR_LIMIT = previous if dense else 0
    try:
        pair_first, pair_second, inverse = group_pairs(first, second, 5)
    finally:
        base.DENSE_PAIR_LIMIT = previous
    expected = sorted(set(rows))
    assert list(zip(pair_first.tolist(), pair_second.tolist(), strict=True)) == expected
    assert [expected[i] for i in inverse.tolist()] == rows


@given(pairs)
def test_distinct_counts_match_python(rows):
    group = np.array([r[0] for r in rows], dtype=np.int32)
    item = np.array([r[1] for r in rows], dtype=np.int64)
    sets = defaultdict(set)
    for g, i in rows:
        sets[g].add(i)
    expected = [len(sets[g]) for g in range(10)]
    assert distinct_count(group, item, 10).tolist() == expected
    assert distinct_codes(group, item, 5, 10).tolist() == expected


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5)), max_size=50), st.integers(1, 4))
def test_top_within_matches_sorting_each_group(rows, k):
    rows = sorted(rows, key=lambda r: r[0])  # rows sorted by group, as the rules pass them
    group = np.array([r[0] for r in rows], dtype=np.int64)
    score = np.array([float(r[1]) for r in rows])
    expected = []
    for g in sorted(set(group.tolist())):
        members = [i for i, r in enumerate(rows) if r[0] == g]
        expected += sorted(sorted(members, key=lambda i: (-rows[i][1], i))[:k])
    assert top_within(group, score, k).tolist() == sorted(expected)
