"""Refresh tasks through a real broker and worker (PostgreSQL + Redis runs only)."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from privacy.models import ActivityStatus, LegalBasis, ProcessingActivity, Purpose
from segments.models import Segment, SegmentStatus
from segments.selectors import segment_latest_snapshot, snapshot_members
from segments.services import segment_create, segment_refresh_request, segment_update


def _wait_for(predicate, worker, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"the worker did not {what} within {timeout:.0f} s:\n" + worker.log[-3000:])


@pytest.mark.worker
def test_a_real_worker_records_failures_and_refreshes_new_and_edited_segments(
    celery_worker_process, big_world, merchant
):
    segment = segment_create(merchant=merchant, name="SG", actor="test", expression="country:SG")
    _wait_for(
        lambda: Segment.objects.get(pk=segment.pk).status == SegmentStatus.FAILED,
        celery_worker_process,
        "record the failure (no legal basis yet)",
    )
    assert "approved processing activity" in Segment.objects.get(pk=segment.pk).last_error

    ProcessingActivity.objects.create(
        name="Tagging",
        purpose=Purpose.TAGGING,
        legal_basis=LegalBasis.BUSINESS_IMPROVEMENT,
        description="Audience building.",
        assessment="Cannot be done anonymously.",
        status=ActivityStatus.APPROVED,
        approved_at=timezone.now(),
    )
    version = segment_refresh_request(segment_id=segment.pk, actor="test")
    _wait_for(lambda: Segment.objects.get(pk=segment.pk).version == version, celery_worker_process, "refresh it")
    assert Segment.objects.get(pk=segment.pk).last_error == ""
    assert snapshot_members(segment_latest_snapshot(segment_id=segment.pk)) == big_world.ids(range(200))

    segment_update(segment=segment, actor="test", expression="country:SG AND interest:sports")
    _wait_for(
        lambda: Segment.objects.get(pk=segment.pk).version == version + 1, celery_worker_process, "refresh the edit"
    )
    assert Segment.objects.get(pk=segment.pk).status == SegmentStatus.READY
    snapshot = segment_latest_snapshot(segment_id=segment.pk)
    assert (snapshot.size, snapshot.entered, snapshot.exited) == (150, 0, 50)


@pytest.mark.worker
def test_an_event_accepted_through_the_api_reaches_a_real_time_segment_through_a_real_worker(
    celery_worker_process, big_world, merchant, products, tagging_approved, operator_client
):
    from consumers.models import EventType
    from segments.membership import current_members
    from segments.models import RefreshPolicy
    from tests.factories import event_row

    segment = segment_create(
        merchant=merchant,
        name="SG beauty buyers",
        actor="test",
        expression='country:SG AND purchased(category="beauty", within="7d")',
        refresh_policy=RefreshPolicy.REALTIME,
    )
    _wait_for(lambda: Segment.objects.get(pk=segment.pk).version >= 1, celery_worker_process, "refresh it")
    assert current_members(segment.pk) == type(current_members(segment.pk))()
    buyer = big_world.consumers[3]
    row = event_row(consumer=buyer, merchant=merchant, sku="L1", event_type=EventType.PURCHASE)
    response = operator_client.post("/api/v1/ingest/events", [row], format="json")
    assert response.status_code in (200, 201), response.content
    _wait_for(lambda: buyer.pk in current_members(segment.pk), celery_worker_process, "stream the event", 30)
    assert list(segment.transitions.filter(kind="entered").values_list("consumer_id", "source")) == [
        (buyer.pk, "stream")
    ]
