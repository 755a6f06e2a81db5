"""The change feed of ingestion: listeners hear which consumers a batch wrote, after commit, never on rollback."""

from __future__ import annotations

import pytest

from consumers.changes import CONSENTS, EVENTS, PROFILES, consumer_changes_subscribe, consumer_changes_unsubscribe
from consumers.consents import consents_ingest
from consumers.events import events_ingest
from consumers.models import Consumer, EventType
from tests.factories import consumers_create, event_row, events_ingest_rows


@pytest.fixture
def heard():
    changes = []
    consumer_changes_subscribe(name="test", listener=changes.append)
    yield changes
    consumer_changes_unsubscribe(name="test")


def test_every_door_reports_the_consumers_it_wrote_after_commit(
    db, merchant, heard, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as pending:
        (shopper,) = consumers_create(1, prefix="feed")
    assert [c.input for c in heard] == []  # nothing before the commit
    for callback in pending:
        callback()
    assert [(c.input, c.consumer_ids) for c in heard] == [(PROFILES, (shopper.pk,))]

    with django_capture_on_commit_callbacks(execute=True):
        events_ingest_rows([event_row(consumer=shopper, merchant=merchant, sku="S1", event_type=EventType.PURCHASE)])
        consents_ingest(
            rows=[
                {
                    "consumer_id": shopper.raw_id,
                    "purpose": "direct_marketing",
                    "status": "granted",
                    "kind": "express",
                    "source": "app",
                    "occurred_at": "2026-01-01T00:00:00Z",
                }
            ],
            actor="test",
        )
    assert heard[1].input == EVENTS and heard[1].consumer_ids == (shopper.pk,)
    assert heard[1].event_types == {EventType.PURCHASE}
    assert heard[2].input == CONSENTS and heard[2].consumer_ids == (shopper.pk,)


def test_a_rejected_atomic_request_tells_nobody(db, merchant, heard, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        report = events_ingest(
            rows=[
                event_row(consumer="raw-feed-1", merchant=merchant, sku="S1"),
                {"event_id": "bad"},
            ],
            actor="test",
            atomic=True,
        )
    assert report.rolled_back
    assert heard == []
    assert not Consumer.objects.exists()
