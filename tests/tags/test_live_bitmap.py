"""The live-consumers bitmap (the universe for NOT) includes consumers created since the last tagging run."""

from __future__ import annotations

from datetime import timedelta

from consumers.models import Consumer
from tags.bitmaps import LIVE_CONSUMERS_KEY, bitmap_load, bitmaps_load
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
