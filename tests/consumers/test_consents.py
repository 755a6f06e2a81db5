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


def test_a_large_atomic_request_is_recorded_in_one_pass_with_one_audit_entry(db):
    """More consumers than one part of the state pass (900), two purposes each, sent in several small batches.

    An atomic request is written once after every row is checked, and a batch of any size once, so its consent
    states are all locked before the audit log's lock is taken; the latest decision still wins everywhere.
    """
    from privacy.models import AuditEntry

    consumers = 950
    rows = [
        {
            "consumer_id": f"big-{n}@example.com",
            "purpose": purpose,
            "status": status,
            "source": "app:bulk",
            "occurred_at": at,
        }
        for status, at in (("withdrawn", "2024-03-01T00:00:00Z"), ("granted", "2024-01-01T00:00:00Z"))
        for n in reversed(range(consumers))
        for purpose in ("direct_marketing", "tagging")
    ]
    before = AuditEntry.objects.filter(action="consent.recorded").count()
    report = consents_ingest(rows=rows, actor="test", batch_size=700, atomic=True)
    assert report.ok and report.accepted == len(rows) and report.consumers_created == consumers
    assert AuditEntry.objects.filter(action="consent.recorded").count() == before + 1
    assert ConsentRecord.objects.count() == len(rows)
    states = list(ConsentState.objects.values_list("status", flat=True))
    assert len(states) == consumers * 2 and set(states) == {"withdrawn"}
