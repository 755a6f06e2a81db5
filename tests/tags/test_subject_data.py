"""Access and erasure requests for tags."""

from __future__ import annotations

from pyroaring import FrozenBitMap

from consumers.models import Consumer
from privacy.models import ConsentKind, ConsentStatus, Purpose
from privacy.services import ConsentChange, consents_record
from privacy.subject_data import handlers
from tags.bitmaps import DIRECT_MARKETING_CONSENT_KEY, LIVE_CONSUMERS_KEY, bitmap_load, bitmap_store, tag_key
from tags.models import ConsumerTag, StoredBitmap, Tag
from tags.selectors import direct_marketing_consent_bitmap
from tags.services import tags_compute
from tags.subject_data import tags_access, tags_erase

from .conftest import AS_OF


def test_the_handler_is_registered_at_layer_three():
    handler = next(h for h in handlers() if h.name == "tags")
    assert handler.layer == 3
    assert handler.access is tags_access and handler.erase is tags_erase


def test_access_lists_the_consumers_tags_with_definitions(world, approve_activity):
    approve_activity("tagging")
    consumer = world.consumer(country="SG", age_range="25-34")
    world.consumer(country="GB")
    tags_compute(families=["country", "age_range"], actor="test", as_of=AS_OF)
    document = tags_access(consumer.pk)
    assert [entry["tag"] for entry in document] == ["age_range:25-34", "country:SG"]
    assert document[1]["label"] == "Singapore"
    assert "country of residence" in document[1]["definition"]
    assert document[1]["assigned_at"]


def test_erase_removes_rows_and_the_id_from_every_bitmap(world, approve_activity):
    approve_activity("tagging")
    leaving = world.consumer(country="SG", age_range="25-34")
    staying = world.consumer(country="SG", age_range="25-34")
    consents_record(
        changes=[
            ConsentChange(c.pk, Purpose.DIRECT_MARKETING, ConsentStatus.GRANTED, ConsentKind.EXPRESS, "app", AS_OF)
            for c in (leaving, staying)
        ],
        actor="test",
    )
    tags_compute(families=["country", "age_range"], actor="test", as_of=AS_OF)
    bitmap_store(key="segment:1:members", bitmap=bitmap_load(LIVE_CONSUMERS_KEY))  # a higher layer's bitmap
    sg = Tag.objects.get(family="country", value="SG")
    assert sg.consumer_count == 2

    counts = tags_erase(leaving.pk)

    assert counts == {"consumer_tags": 2, "bitmaps": 5}  # 2 tags, live, consent, the segment's
    assert not ConsumerTag.objects.filter(consumer=leaving).exists()
    assert ConsumerTag.objects.filter(consumer=staying).count() == 2
    for stored in StoredBitmap.objects.all():  # as stored (a fresh read would see the consumer row, still there)
        assert leaving.pk not in FrozenBitMap.deserialize(bytes(stored.data)), stored.key
    assert staying.pk in bitmap_load(tag_key(sg.pk))
    stored_consent = StoredBitmap.objects.get(key=DIRECT_MARKETING_CONSENT_KEY)
    assert set(FrozenBitMap.deserialize(bytes(stored_consent.data))) == {staying.pk}
    sg.refresh_from_db()
    assert sg.consumer_count == 1
    assert tags_access(leaving.pk) == []
    # The lower layers then delete the consumer and its consent state; the next fresh reads stay clean.
    Consumer.objects.filter(pk=leaving.pk).delete()
    assert set(direct_marketing_consent_bitmap()) == {staying.pk}
    assert set(bitmap_load(LIVE_CONSUMERS_KEY)) == {staying.pk}


def test_erasing_a_consumer_without_tags_is_harmless(world):
    consumer = world.consumer()
    assert tags_erase(consumer.pk) == {"consumer_tags": 0, "bitmaps": 0}
