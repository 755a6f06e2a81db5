"""Every figure of estimates, insights and overlaps is the release layer's, and small audiences stay hidden
(property-based)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pyroaring import BitMap

from privacy.release import released_jaccard
from segments.insights import overlap_subject, round_ratio, segment_insights, segment_overlap
from segments.selectors import audience_estimate
from segments.services import segment_create, segment_refresh
from tags.models import ConsumerTag
from tests.release_helpers import released_count, released_public

from .conftest import caches_clear, released

EXPRESSIONS = [
    "country:SG",
    "country:MY",
    "interest:sports",
    "country:SG AND interest:sports",
    "NOT interest:sports",
    "country:SG OR discount_sensitivity:high",
    "interest:sports AND NOT discount_sensitivity:high",
    "age_range:25-34 AND country:MY",
]


class _Rollback(Exception):
    pass


def _assert_released(count: dict, subject: str, true_value: int, precision: str = "standard") -> None:
    """The figure is the release layer's for this subject and value; below MIN_AUDIENCE it is never a number."""
    assert count == released_public(subject, true_value, precision)
    if true_value < settings.MIN_AUDIENCE:
        assert count["hidden"] is True and count["size"] is None


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sizes=st.lists(st.integers(0, 260), min_size=5, max_size=5),
    first=st.sampled_from(EXPRESSIONS),
    second=st.sampled_from(EXPRESSIONS),
)
def test_no_figure_reveals_an_audience_below_the_minimum(world, merchant, tagging_approved, sizes, first, second):
    """Random populations around the threshold: every count shown is hidden below it and rounded above it."""
    sg, sports, high, odd, extra = sizes
    try:
        with transaction.atomic():
            caches_clear()
            world.consumers = []
            world.add_consumers(sg + extra)
            world.tag(range(sg), "country", "SG")
            world.tag(range(sg, sg + extra), "country", "MY")
            world.tag(range(min(sports, sg + extra)), "interest", "sports")
            world.tag(range(max(0, sg + extra - high), sg + extra), "discount_sensitivity", "high")
            world.tag(range(0, min(odd * 2, sg + extra), 2), "age_range", "25-34")
            world.rebuild()
            for expression in (first, second):
                # Estimates leave through the release layer: exactly its number for this question on this data.
                shown = audience_estimate(merchant=merchant, expression=expression).size
                assert shown == released(merchant, expression)
            a = segment_create(merchant=merchant, name="a", actor="test", expression=first)
            b = segment_create(merchant=merchant, name="b", actor="test", expression=second)
            members_a = segment_refresh(segment_id=a.pk, actor="test").members_bitmap()
            members_b = segment_refresh(segment_id=b.pk, actor="test").members_bitmap()

            overlap = segment_overlap(segment=a, other=b, merchant_id=merchant.pk)
            _assert_released(overlap["size"], f"segment:{a.pk}:size", len(members_a))
            _assert_released(overlap["other_size"], f"segment:{b.pk}:size", len(members_b))
            both = len(members_a & members_b)
            _assert_released(overlap["both"], overlap_subject(a.pk, b.pk), both)
            jaccard = released_jaccard(
                size=released_count(f"segment:{a.pk}:size", len(members_a)),
                other_size=released_count(f"segment:{b.pk}:size", len(members_b)),
                both=released_count(overlap_subject(a.pk, b.pk), both),
            )
            assert overlap["jaccard"] == (None if jaccard is None else round_ratio(jaccard))
            if both < settings.MIN_AUDIENCE:
                assert overlap["jaccard"] is None

            insights = segment_insights(segment=a, merchant_id=merchant.pk)
            _assert_released(insights["size"], f"segment:{a.pk}:size", len(members_a))
            if insights["size"]["hidden"]:
                assert insights["families"] == []
            for family in insights["families"]:
                for cell in family["values"]:
                    tag = world.tags[(family["family"], cell["value"])]
                    holders = BitMap(ConsumerTag.objects.filter(tag=tag).values_list("consumer_id", flat=True))
                    in_segment = len(members_a & holders)
                    if cell["suppressed"]:
                        assert set(cell) == {"value", "label", "suppressed"}
                    else:
                        assert in_segment >= settings.MIN_AUDIENCE
                        subject = f"segment:{a.pk}:tag:{family['family']}:{cell['value']}"
                        _assert_released(cell["segment_count"], subject, in_segment, "preview")
            raise _Rollback
    except _Rollback:
        pass
    finally:
        caches_clear()
