"""A tag's reach leaves through the release layer: one subject per tag, one number everywhere, small ones hidden."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from privacy.release import suppression_threshold
from tags.reach import REACH_PRECISION, released_reach, tag_reach_subject
from tests.release_helpers import released_public


@dataclass
class _Tag:
    family: str
    value: str
    consumer_count: int


@pytest.mark.django_db
def test_reach_is_the_release_of_its_subject(merchant):
    tags = [_Tag("country", "SG", 12_345), _Tag("interest", "sports", 99), _Tag("interest", "beauty", 0)]
    shown = [r.public() for r in released_reach(merchant_id=merchant.pk, tags=tags)]
    assert shown == [
        released_public(tag_reach_subject(t.family, t.value), t.consumer_count, REACH_PRECISION) for t in tags
    ]
    assert shown[0]["size"] != 12_345 and abs(shown[0]["size"] - 12_345) <= shown[0]["error_bound"] * 3
    for hidden in shown[1:]:
        assert hidden["hidden"] and hidden["size"] is None and "99" not in hidden["display"]


@pytest.mark.django_db
def test_the_same_tag_gets_the_same_number_for_every_merchant_and_repeat(merchant, other_merchant):
    tags = [_Tag("country", "SG", 5_000)]
    first = released_reach(merchant_id=merchant.pk, tags=tags)[0]
    again = released_reach(merchant_id=merchant.pk, tags=tags)[0]
    other = released_reach(merchant_id=other_merchant.pk, tags=tags)[0]
    assert first.value == again.value == other.value
    assert suppression_threshold(REACH_PRECISION) > 100
