"""The live-consumers bitmap (the universe for NOT) includes consumers created since the last tagging run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.test import TestCase
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.models import Consumer
from tags import live_bitmap
from tags.bitmaps import (
    LIVE_CONSUMERS_KEY,
    bitmap_cache_clear,
    bitmap_load,
    bitmaps_load,
    change_overlap,
    change_window_floor,
)
from tags.models import StoredBitmap
from tags.selectors import live_consumers_bitmap
from tags.services import tags_compute
from tags.subject_data import tags_erase

from .conftest import AS_OF


def test_new_consumers_join_the_universe_on_the_next_read(world, approve_activity):
    approve_activity("tagging")
    first = world.consumers(3, country="SG")
    tags_compute(families=["country"], actor="test", as_of=AS_OF)
    assert set(live_consumers_bitmap()) == {c.pk for c in first}
    newcomer = world.consumer()
    assert newcomer.pk in live_consumers_bitmap()
    # Through the generic loader too, as the segment evaluators read it.
    assert newcomer.pk in bitmaps_load([LIVE_CONSUMERS_KEY])[LIVE_CONSUMERS_KEY]
    assert set(bitmap_load(LIVE_CONSUMERS_KEY)) == set(Consumer.objects.values_list("id", flat=True))


def test_the_universe_is_built_on_first_use_and_reads_without_changes_write_nothing(world):
    consumers = world.consumers(4)
    assert set(live_consumers_bitmap()) == {c.pk for c in consumers}
    version = StoredBitmap.objects.get(key=LIVE_CONSUMERS_KEY).version
    live_consumers_bitmap()
    live_consumers_bitmap()
    assert StoredBitmap.objects.get(key=LIVE_CONSUMERS_KEY).version == version


def test_a_consumer_created_long_ago_but_committed_late_is_still_picked_up(world):
    world.consumers(2)
    live_consumers_bitmap()
    mark = StoredBitmap.objects.get(key=LIVE_CONSUMERS_KEY).source_mark
    late = world.consumer()
    Consumer.objects.filter(pk=late.pk).update(created_at=mark - timedelta(seconds=60))
    assert late.pk in live_consumers_bitmap()


def test_an_erased_consumer_leaves_the_universe(world):
    stay, leave = world.consumers(2)
    live_consumers_bitmap()
    tags_erase(leave.pk)
    Consumer.objects.filter(pk=leave.pk).delete()
    assert set(live_consumers_bitmap()) == {stay.pk}


def test_reads_after_a_big_import_rebuild_once_and_then_write_nothing(world, monkeypatch):
    # A big import puts more consumers in the change window than a read adds one by one, so the read rebuilds
    # from every consumer. That rebuild used to be stored as a new version on every read, and every new
    # version sent every other process back to the rebuild.
    monkeypatch.setattr(live_bitmap, "REBUILD_ABOVE", 2)
    imported = world.consumers(5)
    assert set(live_consumers_bitmap()) == {c.pk for c in imported}
    version = StoredBitmap.objects.get(key=LIVE_CONSUMERS_KEY).version
    for _ in range(3):
        assert set(live_consumers_bitmap()) == {c.pk for c in imported}
    assert StoredBitmap.objects.get(key=LIVE_CONSUMERS_KEY).version == version
    newcomer = world.consumer()
    assert newcomer.pk in live_consumers_bitmap()


def test_once_the_overlap_has_passed_reads_look_only_past_the_mark(world):
    world.consumers(3)
    live_consumers_bitmap()
    hour_ago = timezone.now() - timedelta(hours=1)
    Consumer.objects.update(created_at=hour_ago)
    StoredBitmap.objects.filter(key=LIVE_CONSUMERS_KEY).update(source_mark=hour_ago)
    late = world.consumer()
    Consumer.objects.filter(pk=late.pk).update(created_at=hour_ago - timedelta(seconds=60))
    # The first read after the window closed still applies it: the late commit joins.
    assert late.pk in live_consumers_bitmap()
    live_consumers_bitmap()
    stored = StoredBitmap.objects.get(key=LIVE_CONSUMERS_KEY)
    assert change_window_floor(LIVE_CONSUMERS_KEY, version=stored.version, source_mark=stored.source_mark) == (
        stored.source_mark
    )
    # Consumers newer than the mark are still picked up, and a new version opens a new window.
    newcomer = world.consumer()
    assert newcomer.pk in live_consumers_bitmap()
    stored = StoredBitmap.objects.get(key=LIVE_CONSUMERS_KEY)
    assert change_window_floor(LIVE_CONSUMERS_KEY, version=stored.version, source_mark=stored.source_mark) < (
        stored.source_mark
    )


def test_a_recent_mark_keeps_the_overlap(world):
    world.consumers(2)
    live_consumers_bitmap()
    live_consumers_bitmap()
    stored = StoredBitmap.objects.get(key=LIVE_CONSUMERS_KEY)
    floor = change_window_floor(LIVE_CONSUMERS_KEY, version=stored.version, source_mark=stored.source_mark)
    assert floor == stored.source_mark - change_overlap()


def test_the_overlap_is_the_operators_setting(world, settings):
    settings.FRESH_BITMAP_OVERLAP_SECONDS = 30
    world.consumers(2)
    live_consumers_bitmap()
    stored = StoredBitmap.objects.get(key=LIVE_CONSUMERS_KEY)
    floor = change_window_floor(LIVE_CONSUMERS_KEY, version=stored.version, source_mark=stored.source_mark)
    assert floor == stored.source_mark - timedelta(seconds=30)


# Reads of the universe, consumers arriving (each stamped up to the overlap before it commits, as a slow
# transaction stamps them) and the clock moving on, in any order: the incrementally kept bitmap always equals
# a full rebuild from the consumer table.
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("arrive"), st.integers(0, 119)),  # seconds between stamp and commit, under the overlap
        st.tuples(st.just("wait"), st.integers(1, 400)),
        st.tuples(st.just("read"), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_the_incremental_universe_always_equals_a_full_rebuild(world, monkeypatch, steps):
    Consumer.objects.all().delete()
    StoredBitmap.objects.all().delete()
    bitmap_cache_clear()
    clock = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC)]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    world.consumers(3)
    for action, amount in [*steps, ("read", 0)]:
        if action == "arrive":
            consumer = world.consumer()
            Consumer.objects.filter(pk=consumer.pk).update(created_at=clock[0] - timedelta(seconds=amount))
        elif action == "wait":
            clock[0] += timedelta(seconds=amount)
        else:
            with TestCase.captureOnCommitCallbacks(execute=True):
                current = set(live_consumers_bitmap())
            assert current == set(Consumer.objects.values_list("id", flat=True))
