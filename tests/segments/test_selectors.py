"""Reads: what uses a segment (segment_used_by, segments_used_by)."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from segments.models import Segment, SegmentKind
from segments.selectors import User, segment_used_by, segments_used_by
from segments.services import segment_create, segment_update


def _campaign(merchant, name, *, include, exclude=()):
    from campaigns.services import campaign_create

    return campaign_create(
        merchant=merchant,
        actor="test",
        name=name,
        include_segment_ids=[s.pk for s in include],
        exclude_segment_ids=[s.pk for s in exclude],
        title_template="Hello",
        body_template="From {store_name}",
        personalised_products=0,
    )


def test_used_by_names_campaigns_lookalikes_and_segments(world, merchant, other_merchant):
    base = segment_create(merchant=merchant, name="base", actor="test", expression="country:SG")
    other = segment_create(merchant=merchant, name="other", actor="test", expression="country:MY")
    outer = segment_create(
        merchant=merchant, name="Outer", actor="test", expression=f"segment:{base.pk} OR age_range:18-24"
    )
    lookalike = Segment.objects.create(merchant=merchant, name="like base", kind=SegmentKind.LOOKALIKE, seed=base)
    sent = _campaign(merchant, "Spring", include=[base])
    left_out = _campaign(merchant, "autumn", include=[other], exclude=[base])

    used = segment_used_by(segment=base)
    assert used.campaigns == [User(id=left_out.pk, name="autumn"), User(id=sent.pk, name="Spring")]
    assert used.lookalikes == [User(id=lookalike.pk, name="like base")]
    assert used.segments == [User(id=outer.pk, name="Outer")]
    assert used.count == 4 and bool(used)
    assert used.as_dict()["segments"] == [{"id": outer.pk, "name": "Outer"}]

    assert not segment_used_by(segment=outer)
    # An edit that stops naming it stops the use.
    segment_update(segment=outer, actor="test", expression="age_range:18-24")
    assert segment_used_by(segment=base).segments == []


def test_used_by_for_a_page_of_segments_is_a_fixed_number_of_queries(world, merchant):
    segments = [
        segment_create(merchant=merchant, name=f"s{i}", actor="test", expression="country:SG") for i in range(6)
    ]
    for i, segment in enumerate(segments[1:]):
        segment_create(merchant=merchant, name=f"user {i}", actor="test", expression=f"segment:{segment.pk}")
    with CaptureQueriesContext(connection) as queries:
        used = segments_used_by(segment_ids=[s.pk for s in segments])
    assert len(queries) == 4
    assert [used[s.pk].count for s in segments] == [0, 1, 1, 1, 1, 1]


def test_find_by_text_kind_status_and_policy_within_the_merchant(world, merchant, other_merchant):
    from segments.selectors import segments_find

    segment_create(merchant=merchant, name="SG shoppers", actor="test", expression="country:SG")
    segment_create(
        merchant=merchant, name="Morning", description="Shoppers at dawn", actor="test", expression="country:MY"
    )
    segment_create(merchant=merchant, name="Daily", actor="test", expression="country:MY", refresh_policy="daily")
    segment_create(merchant=other_merchant, name="Their shoppers", actor="test", expression="country:SG")

    def names(**filters):
        return [s.name for s in segments_find(merchant=merchant, **filters)]

    assert names(text="SHOPPERS") == ["Morning", "SG shoppers"]
    assert names(refresh_policy="daily") == ["Daily"]
    assert names(kind="lookalike") == [] and names(status="pending") == ["Daily", "Morning", "SG shoppers"]
    assert names() == ["Daily", "Morning", "SG shoppers"]
