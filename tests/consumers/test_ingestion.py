"""What the three ingestion doors share: the same rules for a consumer identifier."""

from __future__ import annotations

import pytest

from consumers.consents import consents_ingest
from consumers.events import events_ingest
from consumers.models import Consumer
from consumers.profiles import profiles_ingest


@pytest.mark.parametrize(
    "value,reason",
    [
        (None, "is required"),
        (True, "must be a string or an integer"),
        ("a" * 321, "is too long (at most 320 characters)"),
        ("\ud800@example.com", "is not valid Unicode text"),
    ],
)
def test_events_profiles_and_consents_reject_a_bad_consumer_id_alike(event_row, value, reason):
    consent = {
        "purpose": "direct_marketing",
        "status": "granted",
        "source": "app",
        "occurred_at": "2024-01-01T00:00:00Z",
    }
    reports = [
        events_ingest(rows=[event_row(consumer_id=value)], actor="test"),
        profiles_ingest(rows=[{"consumer_id": value, "country": "MY"}], actor="test"),
        consents_ingest(rows=[{"consumer_id": value, **consent}], actor="test"),
    ]
    for report in reports:
        assert [(e.row, e.field, e.reason) for e in report.rejected] == [(1, "consumer_id", reason)]
    assert Consumer.objects.count() == 0
