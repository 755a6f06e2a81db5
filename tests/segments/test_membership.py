"""Real-time segments: streaming membership after ingestion, the sweep of lapsed windows, transitions, and the
property that streaming and a full refresh always agree."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from consumers.models import EventType
from segments.evaluation import definition_resolve, evaluate_bitmap
from segments.language import ActionTerm, And, Not, Or, SegmentTerm, TagTerm, parse, to_json
from segments.membership import (
    SWEEP_MARK_KEY,
    current_members,
    membership_clock,
    membership_entries_subscribe,
    membership_entries_unsubscribe,
    membership_sweep,
    segment_dependencies,
)
from segments.models import MembershipTransition, RefreshPolicy, Segment, SegmentScope
from segments.services import segment_create, segment_refresh, segments_refresh_batch
from tests.factories import consumers_ingest, event_row, events_ingest_rows

from .conftest import caches_clear, event_add

EVENTS_URL = "/api/v1/ingest/events"


def _realtime(merchant, name: str, expression: str) -> Segment:
    segment = segment_create(
        merchant=merchant, name=name, actor="test", expression=expression, refresh_policy=RefreshPolicy.REALTIME
    )
    segment_refresh(segment_id=segment.pk, actor="test")
    return segment


def _transitions(segment: Segment) -> list[tuple[int, str, str]]:
    return list(
        MembershipTransition.objects.filter(segment=segment).order_by("id").values_list("consumer_id", "kind", "source")
    )


# ------------------------------------------------------------------------------------------------ dependencies


def test_dependencies_are_read_from_the_expression():
    deps = segment_dependencies(parse('purchased(category="beauty", within="30d") AND NOT viewed() AND segment:7'))
    assert deps.event_types == {EventType.PURCHASE, EventType.VIEW}
    assert deps.segments == {7}
    assert [t.action for t in deps.windowed] == ["purchased"]
    assert not deps.empty_member
    # A consumer with nothing at all is in "NOT interest:sports": a new consumer from any door may enter it.
    assert segment_dependencies(parse("NOT interest:sports")).empty_member
    assert not segment_dependencies(parse("country:SG OR purchased()")).empty_member


# ------------------------------------------------------------------------------------------------ streaming


def test_an_event_accepted_through_the_api_moves_a_real_time_segment_at_once(
    big_world, merchant, products, tagging_approved, operator_client, django_capture_on_commit_callbacks
):
    segment = _realtime(merchant, "SG buyers", 'country:SG AND purchased(category="beauty", within="7d")')
    daily = segment_create(
        merchant=merchant, name="daily", actor="test", expression="purchased()", refresh_policy=RefreshPolicy.DAILY
    )
    segment_refresh(segment_id=daily.pk, actor="test")
    assert current_members(segment.pk) == BitMap()
    buyer, abroad = big_world.consumers[3], big_world.consumers[250]  # SG and MY
    rows = [event_row(consumer=c, merchant=merchant, sku="L1", event_type=EventType.PURCHASE) for c in (buyer, abroad)]
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(EVENTS_URL, rows, format="json")
    assert response.status_code in (200, 201), response.content
    assert current_members(segment.pk) == BitMap([buyer.pk])
    assert _transitions(segment) == [(buyer.pk, "entered", "stream")]
    # Only real-time segments stream; a daily one waits for its refresh.
    assert current_members(daily.pk) == BitMap()
    # What the stream wrote is what a full refresh computes.
    segment_refresh(segment_id=segment.pk, actor="test")
    assert current_members(segment.pk) == BitMap([buyer.pk])


def test_a_new_consumer_from_any_door_enters_a_segment_of_everyone_without_a_tag(
    big_world, merchant, tagging_approved, django_capture_on_commit_callbacks
):
    segment = _realtime(merchant, "not sporty", "NOT interest:sports")
    before = current_members(segment.pk)
    with django_capture_on_commit_callbacks(execute=True):
        (new,) = consumers_ingest(["new-shopper-1"], country="SG")
    assert current_members(segment.pk) == before | BitMap([new.pk])
    assert _transitions(segment)[-1] == (new.pk, "entered", "stream")


def test_segments_naming_a_real_time_segment_follow_it(
    big_world, merchant, products, tagging_approved, django_capture_on_commit_callbacks
):
    inner = _realtime(merchant, "buyers", "purchased()")
    outer = _realtime(merchant, "SG buyers", f"segment:{inner.pk} AND country:SG")
    buyer = big_world.consumers[5]
    with django_capture_on_commit_callbacks(execute=True):
        event_add(buyer, products["lipstick"], EventType.PURCHASE)
    assert current_members(inner.pk) == BitMap([buyer.pk])
    assert current_members(outer.pk) == BitMap([buyer.pk])


def test_entries_are_told_after_they_commit_and_exits_and_failing_listeners_are_not(
    big_world, merchant, products, tagging_approved, django_capture_on_commit_callbacks, caplog
):
    """Journeys start on entries: whoever subscribed hears which segments had entries once they commit (streamed
    or refreshed), never of exits alone, and a listener that fails is logged without undoing the update."""
    heard: list[frozenset[int]] = []
    membership_entries_subscribe(name="test.record", listener=heard.append)
    membership_entries_subscribe(name="test.broken", listener=lambda ids: 1 / 0)
    try:
        buyers = _realtime(merchant, "buyers", "purchased()")
        viewers = _realtime(merchant, "viewers", 'viewed(within="2d")')
        viewer = big_world.consumers[7]
        event_add(viewer, products["tent"], EventType.VIEW, days_ago=1)
        segment_refresh(segment_id=viewers.pk, actor="test")  # the viewer is a member now
        heard.clear()
        buyer = big_world.consumers[5]
        with django_capture_on_commit_callbacks(execute=False) as pending:
            event_add(buyer, products["lipstick"], EventType.PURCHASE)
            assert heard == []  # not before the commit
        with django_capture_on_commit_callbacks(execute=True):  # the ingestion commits; then the update does
            for callback in pending:
                callback()
        assert current_members(buyers.pk) == BitMap([buyer.pk])
        assert heard == [frozenset({buyers.pk})]
        assert "segments.entries_listener_failed" in caplog.text

        heard.clear()
        with django_capture_on_commit_callbacks(execute=True):
            membership_sweep(now=timezone.now())
            membership_sweep(now=timezone.now() + timedelta(days=3))  # the viewer's window lapses: an exit only
        assert current_members(viewers.pk) == BitMap()
        assert _transitions(viewers)[-1] == (viewer.pk, "exited", "sweep")
        assert heard == []

        sg = segment_create(merchant=merchant, name="SG", actor="test", expression="country:SG")
        segment_refresh(segment_id=sg.pk, actor="test")
        big_world.tag([205], "country", "SG")  # a refresh with an entry tells too
        big_world.rebuild()
        with django_capture_on_commit_callbacks(execute=True):
            segment_refresh(segment_id=sg.pk, actor="test")
        assert heard == [frozenset({sg.pk})]
    finally:
        membership_entries_unsubscribe(name="test.record")
        membership_entries_unsubscribe(name="test.broken")


def test_a_lapsed_window_is_swept_out(big_world, merchant, products, tagging_approved):
    segment = _realtime(merchant, "recent viewers", 'viewed(within="2d")')
    viewer = big_world.consumers[7]
    event_add(viewer, products["tent"], EventType.VIEW, days_ago=1)
    segment_refresh(segment_id=segment.pk, actor="test")
    assert current_members(segment.pk) == BitMap([viewer.pk])
    now = timezone.now()
    membership_sweep(now=now)  # nothing has lapsed yet
    assert current_members(segment.pk) == BitMap([viewer.pk])
    outcome = membership_sweep(now=now + timedelta(days=2))
    assert outcome.exited == 1
    assert current_members(segment.pk) == BitMap()
    assert _transitions(segment)[-1] == (viewer.pk, "exited", "sweep")
    # The clock never goes back: streaming now evaluates at the sweep's time, not before it.
    assert membership_clock() >= now + timedelta(days=2)


# ------------------------------------------------------------------------------------------------ refresh


def test_a_refresh_records_entries_and_exits_up_to_the_limit(big_world, merchant, tagging_approved, settings):
    segment = segment_create(
        merchant=merchant, name="SG", actor="test", expression="country:SG AND NOT interest:outdoor"
    )
    segment_refresh(segment_id=segment.pk, actor="test")
    assert _transitions(segment) == []  # the first computation is not a transition
    big_world.tag(range(200, 210), "country", "SG")  # join
    big_world.tag(range(5), "interest", "outdoor")  # leave
    big_world.rebuild()
    settings.SEGMENT_REFRESH_TRANSITIONS_MAX = 12
    segment_refresh(segment_id=segment.pk, actor="test")
    rows = _transitions(segment)
    assert len(rows) == 12
    assert [kind for _, kind, _ in rows] == ["entered"] * 10 + ["exited"] * 2
    assert {source for *_, source in rows} == {"refresh"}
    assert [c for c, kind, _ in rows if kind == "entered"] == sorted(big_world.ids(range(200, 210)))


def test_a_lookalike_cannot_be_real_time(big_world, merchant, merchant_client, tagging_approved):
    seed = segment_create(merchant=merchant, name="seed", actor="test", expression="country:SG")
    response = merchant_client.post(
        f"/api/v1/segments/{seed.pk}/lookalike", {"name": "like", "size": 150, "refresh_policy": "realtime"}
    )
    assert response.status_code == 422, response.content
    assert "cannot be real-time" in str(response.json())


def test_real_time_is_a_policy_the_api_accepts(big_world, merchant, merchant_client, tagging_approved):
    response = merchant_client.post(
        "/api/v1/segments/",
        {"name": "live SG", "expression": "country:SG", "refresh_policy": "realtime"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert Segment.objects.get(pk=response.json()["id"]).refresh_policy == RefreshPolicy.REALTIME


# ------------------------------------------------------------------------------------------------ the property

TAGS = [("country", "SG"), ("country", "MY"), ("interest", "sports"), ("discount_sensitivity", "high")]
ACTIONS = st.builds(
    ActionTerm,
    st.sampled_from(["viewed", "carted", "purchased"]),
    category=st.none() | st.sampled_from(["beauty", "outdoor"]),
    within=st.none() | st.sampled_from(["6h", "1d", "3d"]),
    min_count=st.integers(1, 2),
) | st.builds(  # "did not": consumers with no matching event are members too
    ActionTerm,
    st.sampled_from(["viewed", "carted", "purchased"]),
    category=st.none() | st.sampled_from(["beauty", "outdoor"]),
    within=st.none() | st.sampled_from(["6h", "1d", "3d"]),
    min_count=st.just(0),
    max_count=st.just(0),
)
SCOPES = st.sampled_from([SegmentScope.MARKETPLACE, SegmentScope.MY_CUSTOMERS])
EVENT_TYPES = [EventType.VIEW, EventType.CART, EventType.PURCHASE]


def _tree(leaves):
    return st.recursive(
        leaves,
        lambda children: (
            st.builds(Not, children)
            | st.builds(And, st.lists(children, min_size=2, max_size=3).map(tuple))
            | st.builds(Or, st.lists(children, min_size=2, max_size=3).map(tuple))
        ),
        max_leaves=5,
    )


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("events"),
            st.lists(
                st.tuples(
                    st.integers(0, 11),
                    st.sampled_from(["lipstick", "tent", "serum"]),  # serum: another store's
                    st.sampled_from(EVENT_TYPES),
                    st.floats(0, 96),
                ),
                min_size=1,
                max_size=6,
            ),
        ),
        st.tuples(st.just("sweep"), st.floats(0.5, 30)),
        st.tuples(st.just("new consumer"), st.integers(0, 10_000)),
    ),
    min_size=1,
    max_size=8,
)


class _Rollback(Exception):
    pass


def _streaming_equals_refresh(world, merchant, products, data, capture):
    n = 12
    assignments = data.draw(st.lists(st.sets(st.sampled_from(TAGS), max_size=2), min_size=n, max_size=n))
    history = data.draw(
        st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(EVENT_TYPES), st.floats(0, 96)), max_size=8)
    )
    try:
        with transaction.atomic():
            caches_clear()
            cache.delete(SWEEP_MARK_KEY)
            world.consumers = []
            world.add_consumers(n)
            for index, tags in enumerate(assignments):
                for family, value in tags:
                    world.tag([index], family, value)
            for index, event_type, hours_ago in history:
                event_add(world.consumers[index], products["tent"], event_type, days_ago=hours_ago / 24)
            world.rebuild()
            leaves = st.sampled_from(TAGS).map(lambda fv: TagTerm(*fv)) | ACTIONS
            inner_tree = data.draw(_tree(leaves), label="inner")
            inner = segment_create(
                merchant=merchant,
                name="inner",
                actor="test",
                definition=to_json(inner_tree),
                refresh_policy=RefreshPolicy.REALTIME,
                scope=data.draw(SCOPES, label="inner scope"),
            )
            outer_tree = data.draw(_tree(leaves | st.just(SegmentTerm(inner.pk))), label="outer")
            outer = segment_create(
                merchant=merchant,
                name="outer",
                actor="test",
                definition=to_json(outer_tree),
                refresh_policy=RefreshPolicy.REALTIME,
                scope=data.draw(SCOPES, label="outer scope"),
            )
            segments_refresh_batch(segment_ids=[inner.pk, outer.pk], actor="test")
            clock = timezone.now()
            for operation in data.draw(OPERATIONS, label="operations"):
                if operation[0] == "events":
                    rows = [
                        event_row(
                            consumer=world.consumers[index],
                            merchant=products[sku].merchant,
                            sku=products[sku].sku,
                            event_type=event_type,
                            occurred_at=timezone.now() - timedelta(hours=hours_ago),
                        )
                        for index, sku, event_type, hours_ago in operation[1]
                    ]
                    with capture(execute=True):
                        events_ingest_rows(rows)
                elif operation[0] == "sweep":
                    clock = max(clock, timezone.now()) + timedelta(hours=operation[1])
                    membership_sweep(now=clock)
                else:
                    with capture(execute=True):
                        consumers_ingest([f"property-new-{operation[1]}"], country="SG")
            now = membership_clock()
            for segment in (inner, outer):
                resolved = definition_resolve(parse(segment.definition), merchant=merchant)
                full = evaluate_bitmap(resolved, now=now, scope=segment.scope)
                assert current_members(segment.pk) == full, segment.definition
            raise _Rollback
    except _Rollback:
        pass
    finally:
        caches_clear()
        cache.delete(SWEEP_MARK_KEY)


PROPERTY_SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(max_examples=30, **PROPERTY_SETTINGS)
@given(data=st.data())
def test_streaming_membership_equals_a_full_refresh(
    world, merchant, products, tagging_approved, django_capture_on_commit_callbacks, data
):
    """Any interleaving of event batches, new consumers and sweeps: each real-time segment's streamed members
    are what a full evaluation at the membership clock gives (nested real-time segments included)."""
    _streaming_equals_refresh(world, merchant, products, data, django_capture_on_commit_callbacks)


@pytest.mark.postgres
@settings(max_examples=8, **PROPERTY_SETTINGS)
@given(data=st.data())
def test_streaming_membership_equals_a_full_refresh_on_postgresql(
    world, merchant, products, tagging_approved, django_capture_on_commit_callbacks, data
):
    _streaming_equals_refresh(world, merchant, products, data, django_capture_on_commit_callbacks)


def test_the_sweep_task_runs_by_its_name(big_world, merchant, products, tagging_approved):
    from config.celery import app as celery_app
    from segments.tasks import membership_drain_task, membership_sweep_task

    assert (membership_sweep_task.name, membership_drain_task.name) == (
        "segments.membership_sweep",
        "segments.membership_drain",
    )
    segment = _realtime(merchant, "recent carts", 'carted(within="1h")')
    result = celery_app.tasks["segments.membership_sweep"].apply().get()
    assert result["orphans_finished"] == 0 and result["exited"] == 0
    assert current_members(segment.pk) == BitMap()


# ------------------------------------------------------------------------------------------------ failures


def test_a_failed_streaming_update_is_shown_on_the_segment_until_an_update_succeeds(
    big_world, merchant, products, tagging_approved, merchant_user
):
    from django.test import Client

    from segments.membership import membership_update
    from segments.models import SegmentSnapshot

    segment = _realtime(merchant, "Beauty buyers", 'purchased(category="beauty")')
    buyer = big_world.consumers[3]
    latest = SegmentSnapshot.objects.filter(segment=segment).latest("id")
    good = bytes(latest.members)
    # The stored members became unreadable: every streaming update of this segment fails.
    SegmentSnapshot.objects.filter(pk=latest.pk).update(members=b"not a bitmap", computed_at=timezone.now())
    caches_clear()
    with pytest.raises(Exception):  # noqa: B017 - whatever the bitmap library raises for corrupt bytes
        membership_update(consumer_ids=[buyer.pk])
    segment.refresh_from_db()
    assert "real time failed" in segment.stream_error and segment.stream_error_at is not None
    assert str(buyer.pk) not in segment.stream_error  # no consumer in it

    # The members are readable again; the page says the last update failed until one succeeds.
    SegmentSnapshot.objects.filter(pk=latest.pk).update(members=good, computed_at=timezone.now())
    caches_clear()
    client = Client()
    client.force_login(merchant_user)
    assert "The last real-time update failed" in client.get(f"/segments/{segment.pk}/").content.decode()
    membership_update(consumer_ids=[buyer.pk])
    segment.refresh_from_db()
    assert segment.stream_error == "" and segment.stream_error_at is None
    assert "The last real-time update failed" not in client.get(f"/segments/{segment.pk}/").content.decode()


def test_a_refresh_clears_a_streaming_failure(big_world, merchant, products, tagging_approved):
    segment = _realtime(merchant, "Viewers", "viewed()")
    Segment.objects.filter(pk=segment.pk).update(stream_error="failed", stream_error_at=timezone.now())
    segment_refresh(segment_id=segment.pk, actor="test")
    segment.refresh_from_db()
    assert segment.stream_error == "" and segment.stream_error_at is None
