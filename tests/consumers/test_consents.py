"""Consent ingestion: into the ledger, the latest decision wins, nothing recorded twice."""

from __future__ import annotations

from consumers.consents import consents_ingest
from privacy.models import ConsentRecord, ConsentState
from privacy.pseudonyms import pseudonymise


def test_consents_go_to_the_ledger_and_the_latest_decision_wins(db):
    rows = [
        {
            "consumer_id": "c@example.com",
            "purpose": "direct_marketing",
            "status": "granted",
            "source": "app:signup",
            "occurred_at": "2024-01-01T00:00:00Z",
        },
        {
            "consumer_id": "C@example.com",
            "purpose": "direct_marketing",
            "status": "withdrawn",
            "kind": "express",
            "source": "app:settings",
            "occurred_at": "2024-03-01T00:00:00Z",
        },
        {
            "consumer_id": "d@example.com",
            "purpose": "direct_marketing",
            "status": "granted",
            "kind": "deemed",
            "source": "notice:v2",
            "occurred_at": "2024-02-01T00:00:00Z",
        },
    ]
    report = consents_ingest(rows=rows, actor="test")
    assert report.ok and report.accepted == 3 and report.consumers_created == 2
    assert ConsentRecord.objects.count() == 3
    states = {s.consumer.pseudonym: (s.status, s.kind) for s in ConsentState.objects.select_related("consumer")}
    assert states == {
        pseudonymise("c@example.com"): ("withdrawn", "express"),
        pseudonymise("d@example.com"): ("granted", "deemed"),
    }


def test_bad_consents_are_reported_precisely_and_not_written(db):
    good = {
        "consumer_id": "e@example.com",
        "purpose": "direct_marketing",
        "status": "granted",
        "source": "app",
        "occurred_at": "2024-01-01T00:00:00Z",
    }
    report = consents_ingest(
        rows=[
            good,
            {**good, "purpose": "spam"},
            {**good, "status": "maybe", "kind": "implied"},
            {**good, "source": ""},
            {**good, "occurred_at": "2999-01-01T00:00:00Z"},
        ],
        actor="test",
    )
    assert [(e.row, e.field) for e in report.rejected] == [
        (2, "purpose"),
        (3, "status"),
        (3, "kind"),
        (4, "source"),
        (5, "occurred_at"),
    ]
    assert ConsentRecord.objects.count() == 1


def test_resending_consents_records_nothing_twice(db):
    rows = [
        {
            "consumer_id": f"r{i}@example.com",
            "purpose": "direct_marketing",
            "status": "granted",
            "source": "app",
            "occurred_at": "2024-01-01T00:00:00+08:00",
        }
        for i in range(5)
    ]
    first = consents_ingest(rows=rows + [rows[0]], actor="test")
    assert (first.accepted, first.duplicates) == (5, 1)
    second = consents_ingest(rows=rows, actor="test", batch_size=2)
    assert (second.accepted, second.duplicates) == (0, 5)
    assert ConsentRecord.objects.count() == 5
    # A different decision for the same consumer is new.
    third = consents_ingest(rows=[{**rows[0], "status": "withdrawn", "occurred_at": "2024-02-01"}], actor="test")
    assert third.accepted == 1 and ConsentRecord.objects.count() == 6
