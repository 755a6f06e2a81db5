"""Data-subject requests: segment names on access; the consumer leaves every snapshot on erasure."""

from __future__ import annotations

from django.utils import timezone

from consumers.models import EventType
from privacy.subject_data import handlers
from segments.evaluation import behaviour_bitmap, definition_resolve, evaluate_bitmap
from segments.language import ActionTerm, parse
from segments.models import MembershipTransition, SegmentSnapshot
from segments.selectors import segment_latest_snapshot, snapshot_members
from segments.services import segment_create, segment_refresh
from segments.subject_data import segments_access, segments_erase

from .conftest import event_add


def test_handler_is_registered_at_layer_5(db):
    handler = next(h for h in handlers() if h.name == "segments")
    assert handler.layer == 5 and handler.access is segments_access and handler.erase is segments_erase


def test_access_lists_segment_names_only(big_world, merchant, other_merchant, tagging_approved):
    sg = segment_create(merchant=merchant, name="Singapore", actor="test", expression="country:SG")
    sports = segment_create(merchant=other_merchant, name="Sporty", actor="test", expression="interest:sports")
    my = segment_create(merchant=merchant, name="Malaysia", actor="test", expression="country:MY")
    for segment in (sg, sports, my):
        segment_refresh(segment_id=segment.pk, actor="test")
    consumer_id = big_world.consumers[5].pk
    assert segments_access(consumer_id) == {"segments": ["Singapore", "Sporty"]}
    assert "country" not in str(segments_access(consumer_id))


def test_erasure_removes_the_consumer_from_every_snapshot_and_transition(
    big_world, merchant, products, tagging_approved
):
    segment = segment_create(merchant=merchant, name="sg", actor="test", expression="country:SG")
    segment_refresh(segment_id=segment.pk, actor="test")
    segment_refresh(segment_id=segment.pk, actor="test")
    consumer = big_world.consumers[7]
    # the consumer's event sits between others', so deleting it moves neither high-water mark
    event_add(big_world.consumers[8], products["tent"], EventType.PURCHASE)
    event_add(consumer, products["tent"], EventType.PURCHASE)
    event_add(big_world.consumers[9], products["tent"], EventType.PURCHASE)
    term = ActionTerm("purchased")
    now = timezone.now()
    assert consumer.pk in behaviour_bitmap(term, merchant_id=merchant.pk, now=now)
    nested = definition_resolve(parse(f"segment:{segment.pk}"), merchant=merchant)
    assert consumer.pk in evaluate_bitmap(nested)  # warms the per-process snapshot cache

    MembershipTransition.objects.create(
        segment=segment, consumer_id=consumer.pk, kind="entered", at=timezone.now(), source="stream"
    )
    assert segments_erase(consumer.pk) == {"segment_snapshots": 2, "membership_transitions": 1}
    assert not MembershipTransition.objects.filter(consumer_id=consumer.pk).exists()
    for snapshot in SegmentSnapshot.objects.filter(segment=segment):
        assert snapshot.size == 199 and consumer.pk not in snapshot.members_bitmap()
    assert consumer.pk not in snapshot_members(segment_latest_snapshot(segment_id=segment.pk))
    assert consumer.pk not in evaluate_bitmap(nested)
    # the cached behaviour was forgotten: with the events gone too, no stale cache entry brings the consumer back
    consumer.events.all().delete()
    assert consumer.pk not in behaviour_bitmap(term, merchant_id=merchant.pk, now=now)
    assert segments_access(consumer.pk) == {"segments": []}
    assert segments_erase(consumer.pk) == {"segment_snapshots": 0, "membership_transitions": 0}


def test_erasure_completes_past_a_snapshot_whose_members_cannot_be_read(big_world, merchant, tagging_approved, caplog):
    """A damaged snapshot cannot say whether the consumer is in it: the erasure empties it (nobody's membership is
    kept in bytes nobody can check), logs it for the operator, and goes on with every other snapshot."""
    damaged = segment_create(merchant=merchant, name="sg", actor="test", expression="country:SG")
    intact = segment_create(merchant=merchant, name="sg again", actor="test", expression="country:SG")
    for segment in (damaged, intact):
        segment_refresh(segment_id=segment.pk, actor="test")
    consumer = big_world.consumers[7]
    SegmentSnapshot.objects.filter(segment=damaged).update(members=b"not a bitmap")

    # An access request answers with the segments that can be read, instead of failing on the damaged one.
    assert segments_access(consumer.pk) == {"segments": ["sg again"]}
    caplog.clear()

    with caplog.at_level("ERROR", logger="dmp.segments"):
        outcome = segments_erase(consumer.pk)

    assert outcome["segment_snapshots"] == 2
    emptied = SegmentSnapshot.objects.get(segment=damaged)
    assert not emptied.members_kept and not emptied.members
    kept = SegmentSnapshot.objects.get(segment=intact)
    assert consumer.pk not in kept.members_bitmap() and kept.members_kept
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "could not be read" in errors[0]
    assert f"snapshot {emptied.pk} " in errors[0] and "consumer" not in errors[0]
