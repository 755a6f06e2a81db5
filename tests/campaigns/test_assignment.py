import math
from decimal import Decimal

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from campaigns.assignment import assignment_hash, assignment_hashes, control_mask, is_control


@given(
    campaign_id=st.integers(min_value=1, max_value=2**40),
    consumer_ids=st.lists(st.integers(min_value=0, max_value=2**32 - 1), min_size=1, max_size=50),
)
def test_vectorised_hash_matches_the_reference(campaign_id, consumer_ids):
    vectorised = assignment_hashes(campaign_id, np.array(consumer_ids, dtype=np.uint64))
    assert [int(h) for h in vectorised] == [assignment_hash(campaign_id, c) for c in consumer_ids]


def test_assignment_is_deterministic_and_depends_on_the_campaign():
    ids = np.arange(1, 20_001, dtype=np.uint32)
    first = control_mask(7, ids, Decimal("0.2"))
    again = control_mask(7, ids, Decimal("0.2"))
    other_campaign = control_mask(8, ids, Decimal("0.2"))
    assert (first == again).all()
    assert (first != other_campaign).any()
    assert [is_control(7, int(i), Decimal("0.2")) for i in ids[:200]] == first[:200].tolist()


def test_share_is_within_statistical_tolerance():
    n = 100_000
    ids = np.arange(1, n + 1, dtype=np.uint32)
    for share in (Decimal("0.05"), Decimal("0.1"), Decimal("0.5")):
        p = float(share)
        held_out = int(control_mask(42, ids, share).sum())
        # five binomial standard errors: a false alarm about once in 3.5 million runs
        assert abs(held_out / n - p) <= 5 * math.sqrt(p * (1 - p) / n)


def test_a_larger_share_only_adds_consumers_to_the_control_group():
    ids = np.arange(1, 10_001, dtype=np.uint32)
    small = control_mask(3, ids, Decimal("0.1"))
    large = control_mask(3, ids, Decimal("0.3"))
    assert (large | ~small).all()


def test_zero_share_holds_out_nobody():
    assert not control_mask(1, np.arange(1000, dtype=np.uint32), Decimal("0")).any()
