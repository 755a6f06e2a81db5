import pytest

from consumers.ingestion import make_source_digester
from privacy.models import AuditEntry, Purpose, RequestStatus
from privacy.subject_data import handlers
from privacy.subject_rights import (
    subject_access_document,
    subject_request_process,
    subject_request_submit,
)
from tests.privacy.rights_data import populate_subject

RAW = "carol@example.test"
OTHER = "dave@example.test"


@pytest.fixture
def carol(merchant, other_merchant, approve_activity):
    approve_activity(Purpose.RISK_CONTROL)
    populate_subject(OTHER, [merchant], device="dev-1")
    return populate_subject(RAW, [merchant, other_merchant], device="dev-1")


def access(raw_id: str, officer) -> dict:
    request = subject_request_submit(kind="access", raw_identifier=raw_id, actor="apikey:1")
    done = subject_request_process(request_id=request.pk, officer=officer)
    assert done.status == RequestStatus.COMPLETED
    assert done.handled_by == officer
    return done.result


def test_access_document_holds_everything_about_the_consumer_and_nothing_else(carol, officer, merchant):
    document = access(RAW, officer)
    assert document["subject_known"] is True
    section = document["sections"]["consumers"]

    assert section["profile"] == [
        {
            "pseudonym": carol.pseudonym,
            "age_range": "25-34",
            "country": "SG",
            "gender": "f",
            "created_at": section["profile"][0]["created_at"],
            "updated_at": section["profile"][0]["updated_at"],
        }
    ]
    assert len(section["events"]) == 4  # Dave's events on the same device are not Carol's
    purchase = next(
        e for e in section["events"] if e["event_type"] == "purchase" and e["merchant_name"] == merchant.name
    )
    assert purchase["product_sku"] == "sku-0"
    assert purchase["discount"] == "2.50"
    assert purchase["device"] == make_source_digester()("device:dev-1")  # as ingestion stores it

    history = section["consent_history"]
    assert [(c["purpose"], c["status"]) for c in history if c["purpose"] == "direct_marketing"] == [
        ("direct_marketing", "granted"),
        ("direct_marketing", "withdrawn"),
        ("direct_marketing", "granted"),
        ("direct_marketing", "withdrawn"),  # the objection
    ]
    assert {(c["purpose"], c["status"]) for c in section["consent_current"]} == {
        ("direct_marketing", "withdrawn"),
        ("tagging", "granted"),
    }
    assert {(s["reason"], s["scope"]) for s in section["suppressions"]} == {
        ("risk_flag", "offers"),
        ("objection", "all"),
    }
    assert [(f["reason"], f["status"], f["evidence"]) for f in section["risk_flags"]] == [
        ("shared_device", "active", {"accounts_on_device": 6})
    ]
    assert section["counter_statements"][0]["statement"] == "I share my tablet with my family."
    assert [r["kind"] for r in document["subject_requests"]] == ["objection", "access"]


def test_access_returns_everything_the_erasure_would_remove_for_the_same_consumer(carol, officer):
    document = subject_access_document(pseudonym=carol.pseudonym)
    request = subject_request_submit(kind="erasure", raw_identifier=RAW, actor="apikey:1")
    removed = subject_request_process(request_id=request.pk, officer=officer).result["removed"]

    for handler in handlers():
        counts = removed.get(handler.name, {})
        section = document["sections"][handler.name]
        for table, n in counts.items():
            assert not table.startswith("cascaded:"), f"{handler.name} left {table} to the cascade"
            if not n:
                continue
            assert section, f"{handler.name} removed {n} from {table} but showed nothing"
            if isinstance(section, dict) and isinstance(section.get(table), list):
                assert len(section[table]) == n, (
                    f"{handler.name}.{table}: access showed {len(section[table])}, erased {n}"
                )
    consumers = removed["consumers"]
    assert set(consumers) == set(document["sections"]["consumers"]), "the same tables, by the same names"
    for table, rows in document["sections"]["consumers"].items():
        assert consumers[table] == len(rows), table


def test_access_for_an_unknown_consumer_says_nothing_is_held(db, officer):
    document = access("nobody@example.test", officer)
    assert document["subject_known"] is False
    assert document["sections"] == {}


def test_access_is_audited_with_counts_only(carol, officer):
    document = access(RAW, officer)
    entry = AuditEntry.objects.filter(action="subject_request.completed", details__kind="access").get()
    assert entry.actor == f"user:{officer.pk}"
    assert entry.counts["consumers.events"] == 4
    assert carol.pseudonym not in str(entry.counts) + str(entry.details)
    assert document["request_id"] == int(entry.object_id)
