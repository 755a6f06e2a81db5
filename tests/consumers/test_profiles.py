"""Profile ingestion: only derived attributes are stored, and bad rows are reported precisely."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumers.ingestion import age_range_for
from consumers.models import Consumer
from consumers.profiles import profiles_ingest
from privacy.pseudonyms import pseudonymise


@pytest.mark.parametrize(
    "age,bucket",
    [(0, "under-18"), (17, "under-18"), (18, "18-24"), (24, "18-24"), (25, "25-34"), (44, "35-44"), (64, "55-64")]
    + [(65, "65-plus"), (130, "65-plus")],
)
def test_age_buckets(age, bucket):
    assert age_range_for(age) == bucket


def test_profiles_store_only_age_range_country_and_gender(db):
    today = datetime.now(tz=UTC).date()
    born = today.replace(year=today.year - 30)
    report = profiles_ingest(
        rows=[
            {"consumer_id": "p1@example.com", "age": 41, "country": "United Kingdom", "gender": "Female"},
            {"consumer_id": "p2@example.com", "birth_date": born.isoformat(), "country": "EIRE"},
            {"consumer_id": "p3@example.com", "address": "1 Raffles Place\n#20-01\nSingapore 048616", "gender": "m"},
            {"consumer_id": "p4@example.com", "country": "sgp", "age": "19"},
        ],
        actor="test",
    )
    assert report.ok and report.accepted == 4 and report.consumers_created == 4
    got = {c.pseudonym: (c.age_range, c.country, c.gender) for c in Consumer.objects.all()}
    assert got == {
        pseudonymise("p1@example.com"): ("35-44", "GB", "f"),
        pseudonymise("p2@example.com"): ("25-34", "IE", ""),
        pseudonymise("p3@example.com"): ("", "SG", "m"),
        pseudonymise("p4@example.com"): ("18-24", "SG", ""),
    }


def test_a_profile_update_keeps_attributes_it_does_not_mention(db):
    profiles_ingest(rows=[{"consumer_id": "k@example.com", "age": 30, "country": "MY", "gender": "x"}], actor="t")
    report = profiles_ingest(rows=[{"consumer_id": "K@example.com", "country": "Thailand"}], actor="t")
    assert (report.accepted, report.consumers_created) == (1, 0)
    consumer = Consumer.objects.get()
    assert (consumer.age_range, consumer.country, consumer.gender) == ("25-34", "TH", "x")


def test_bad_profiles_are_reported_precisely_and_not_written(db):
    report = profiles_ingest(
        rows=[
            {"consumer_id": "ok@example.com", "age": 22},
            {"consumer_id": "x@example.com", "age": 140},
            {"consumer_id": "y@example.com", "birth_date": "31/12/1990"},
            {"consumer_id": "z@example.com", "country": "Atlantis"},
            {"consumer_id": "w@example.com", "address": "somewhere nice"},
            {"consumer_id": "v@example.com", "gender": "sometimes"},
            {"age": 30},
        ],
        actor="test",
    )
    assert [(e.row, e.field) for e in report.rejected] == [
        (2, "age"),
        (3, "birth_date"),
        (4, "country"),
        (5, "address"),
        (6, "gender"),
        (7, "consumer_id"),
    ]
    assert Consumer.objects.count() == 1
    atomic = profiles_ingest(rows=[{"consumer_id": "n@example.com"}, {"age": 1}], actor="test", atomic=True)
    assert atomic.rolled_back and Consumer.objects.count() == 1
