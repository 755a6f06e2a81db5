"""Pseudonymisation at the door: after ingesting events, profiles and consents whose consumer ids are
e-mail addresses and phone numbers, no table, log line, audit entry or response carries any of them,
in the spelling sent or in its normalised form."""

from __future__ import annotations

import json
import logging

import pytest
from django.db import connection

from config.logformat import StructuredFormatter
from consumers.consents import consents_ingest
from consumers.events import events_ingest
from consumers.profiles import profiles_ingest
from privacy.models import AuditEntry
from privacy.pseudonyms import normalise_identifier

RAW_IDS = [
    "Alice.Liddell+promo@Wonderland.example",
    "bob_the_builder@example.COM",
    "+65 9876 1234",
    "+1 (415) 555-0199",
    "+44 20 7946 0958",
    "carol-7741@mail.example.org",
]


def forbidden_strings() -> set[str]:
    values = set()
    for raw in RAW_IDS:
        normalised = normalise_identifier(raw)
        values |= {raw, raw.lower(), normalised, normalised.lstrip("+")}
        if normalised.startswith("+"):  # E.164: the national number alone is identifying too
            values.add(normalised[3:])
        if "@" in raw:
            values.add(raw.split("@")[0].lower())  # the local part alone is identifying too
    return values


def all_stored_text() -> list[tuple[str, str]]:
    """(table, value) for every non-null value of every table in the database, as text."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {quoted}")
            for row in cursor.fetchall():
                for value in row:
                    if value is None:
                        continue
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value).decode("latin-1")
                    found.append((table, value if isinstance(value, str) else json.dumps(value, default=str)))
    return found


def ingest_everything(merchant) -> list:
    rows = []
    for n, raw in enumerate(RAW_IDS):
        rows.append(
            {
                "event_id": f"priv-{n}",
                "consumer_id": raw,
                "merchant": merchant.slug,
                "sku": f"SKU-{n}",
                "event_type": "purchase",
                "occurred_at": "2024-02-02T10:00:00Z",
                "price": "9.99",
                "order_id": f"order-{n}",
                "device_id": f"device-{n}",
                "title": "Lamp",
            }
        )
        # Bad rows carrying identifiers, including in the wrong fields: rejected, never echoed.
        rows.append({"event_id": f"bad-{n}", "consumer_id": raw, "merchant": raw, "sku": raw * 5, "event_type": raw})
    reports = [events_ingest(rows=rows, actor="test")]
    reports.append(
        profiles_ingest(
            rows=[{"consumer_id": raw, "age": 30 + n, "country": "SG", "gender": "f"} for n, raw in enumerate(RAW_IDS)]
            + [{"consumer_id": raw, "country": raw} for raw in RAW_IDS],
            actor="test",
        )
    )
    reports.append(
        consents_ingest(
            rows=[
                {
                    "consumer_id": raw,
                    "purpose": "direct_marketing",
                    "status": "granted",
                    "source": "app",
                    "occurred_at": "2024-01-01T00:00:00Z",
                }
                for raw in RAW_IDS
            ]
            + [{"consumer_id": raw, "purpose": raw, "status": raw, "source": raw * 30} for raw in RAW_IDS],
            actor="test",
        )
    )
    return reports


def test_no_table_log_line_audit_entry_or_report_contains_a_raw_identifier(merchant, caplog):
    caplog.set_level(logging.DEBUG)
    reports = ingest_everything(merchant)
    assert [r.accepted for r in reports] == [len(RAW_IDS)] * 3
    assert all(r.rejected for r in reports)  # the bad rows were there, and were reported

    forbidden = forbidden_strings()
    stored = all_stored_text()
    assert any(table == "consumers_consumer" for table, _ in stored)
    leaks = [(table, value) for table, value in stored for f in forbidden if f in value.lower()]
    assert leaks == []

    formatter = StructuredFormatter()
    log_text = "\n".join(formatter.format(record) for record in caplog.records)
    assert "ingest.events" in log_text
    assert [f for f in forbidden if f in log_text.lower()] == []

    audit_text = json.dumps(
        list(AuditEntry.objects.values("actor", "action", "object_id", "counts", "details")), default=str
    ).lower()
    assert [f for f in forbidden if f in audit_text] == []

    report_text = json.dumps([r.as_dict() for r in reports]).lower()
    assert [f for f in forbidden if f in report_text] == []


@pytest.mark.django_db
def test_api_responses_never_echo_identifiers(operator_client, merchant):
    bad = [
        {"event_id": "x", "consumer_id": raw, "merchant": raw, "sku": raw * 5, "event_type": raw, "occurred_at": raw}
        for raw in RAW_IDS
    ]
    response = operator_client.post("/api/v1/ingest/events", bad, format="json")
    assert response.status_code == 422
    body = response.content.decode().lower()
    assert [f for f in forbidden_strings() if f in body] == []

    ndjson = "\n".join(json.dumps(r) for r in bad) + "\n{" + RAW_IDS[0]
    response = operator_client.post("/api/v1/ingest/events", ndjson, content_type="application/x-ndjson")
    assert response.status_code == 400
    assert [f for f in forbidden_strings() if f in response.content.decode().lower()] == []
