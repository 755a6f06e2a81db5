import importlib.util

import pytest

from consumers.models import Consumer, Event
from privacy.models import (
    AuditEntry,
    ConsentRecord,
    ConsentState,
    CounterStatement,
    DataSubjectRequest,
    Purpose,
    RequestStatus,
    RiskFlag,
    Suppression,
)
from privacy.subject_data import SubjectDataHandler, _registry, register
from privacy.subject_rights import subject_request_process, subject_request_submit
from tests.privacy.rights_data import LogCollector, consumer_traces, make_consumer, populate_subject

RAW = "Alice.Example@Mail.test"
BYSTANDER = "+65 9123 4567"


@pytest.fixture
def two_consumers(merchant, other_merchant, approve_activity):
    approve_activity(Purpose.RISK_CONTROL)
    alice = populate_subject(RAW, [merchant, other_merchant], device="dev-shared")
    bob = populate_subject(BYSTANDER, [merchant], device="dev-shared")
    return alice, bob


def erase(raw_id: str, officer) -> DataSubjectRequest:
    request = subject_request_submit(kind="erasure", raw_identifier=raw_id, actor="apikey:1")
    return subject_request_process(request_id=request.pk, officer=officer)


def test_erasure_leaves_no_trace_of_the_consumer_in_any_table(two_consumers, officer, merchant, other_merchant):
    alice, bob = two_consumers
    # An earlier access request carries the whole document; it must not survive the erasure either.
    access = subject_request_submit(kind="access", raw_identifier=RAW, actor="apikey:1")
    subject_request_process(request_id=access.pk, officer=officer)
    before = consumer_traces(
        consumer_id=alice.pk, pseudonym=alice.pseudonym, raw_id=RAW, merchant_ids=[merchant.pk, other_merchant.pk]
    )
    assert before, "the probe must see the consumer before erasure"

    erase(RAW, officer)

    assert (
        consumer_traces(
            consumer_id=alice.pk,
            pseudonym=alice.pseudonym,
            raw_id=RAW,
            merchant_ids=[merchant.pk, other_merchant.pk],
        )
        == []
    )
    # The bystander on the same device is untouched.
    assert Consumer.objects.filter(pk=bob.pk).exists()
    assert Event.objects.filter(consumer=bob).count() == 2
    assert RiskFlag.objects.filter(consumer=bob).count() == 1
    assert ConsentRecord.objects.filter(consumer=bob).count() == 5  # 4 + the objection's withdrawal


def test_erasure_proves_what_it_removed_with_counts_per_table(two_consumers, officer):
    alice, _ = two_consumers
    request = erase(RAW, officer)

    assert request.status == RequestStatus.COMPLETED
    assert request.pseudonym == ""
    removed = request.result["removed"]["consumers"]
    assert removed["profile"] == 1
    assert removed["events"] == 4
    assert removed["consent_history"] == 5
    assert removed["consent_current"] == 2
    assert removed["suppressions"] == 2  # the risk flag's offers suppression and the objection's
    assert removed["risk_flags"] == 1
    assert removed["counter_statements"] == 1
    assert not [key for key in removed if key.startswith("cascaded:")], "every table is answered for by a handler"
    assert request.result["total_rows_removed"] >= 16

    entry = AuditEntry.objects.filter(action="subject_request.completed", object_id=str(request.pk)).get()
    assert entry.counts["consumers.events"] == 4
    assert entry.details == {"kind": "erasure", "subject_known": True}
    assert alice.pseudonym not in str(entry.counts) + str(entry.details) + entry.object_id


def test_erasure_blanks_the_pseudonym_on_every_request_of_the_subject(two_consumers, officer):
    alice, bob = two_consumers
    access = subject_request_submit(kind="access", raw_identifier=RAW, actor="apikey:1")
    subject_request_process(request_id=access.pk, officer=officer)
    bob_access = subject_request_submit(kind="access", raw_identifier=BYSTANDER, actor="apikey:1")
    subject_request_process(request_id=bob_access.pk, officer=officer)

    erase(RAW, officer)

    access.refresh_from_db()
    assert access.pseudonym == ""
    assert access.result == {"redacted": "the subject was erased"}
    assert not DataSubjectRequest.objects.filter(pseudonym=alice.pseudonym).exists()
    # The keyed digest stays, so a repeat request is still recognised as the same subject.
    assert DataSubjectRequest.objects.filter(subject_digest=access.subject_digest).count() == 3
    bob_access.refresh_from_db()
    assert bob_access.pseudonym == bob.pseudonym
    assert bob_access.result["sections"]["consumers"]["events"]


def test_nothing_logged_during_or_after_erasure_names_the_consumer(two_consumers, officer, merchant):
    from consumers.risk import risk_scan

    alice, _ = two_consumers
    with LogCollector() as logs:
        erase(RAW, officer)
        risk_scan(actor="test")
        make_consumer("someone-else")
    text = logs.text()
    assert "subject_request.completed" in text
    assert alice.pseudonym not in text
    assert RAW not in text and RAW.lower() not in text


def test_an_unknown_subject_is_answered_with_nothing_removed(db, officer):
    request = erase("never-seen@example.test", officer)
    assert request.status == RequestStatus.COMPLETED
    assert request.result["subject_known"] is False
    assert request.result["removed"]["privacy_requests"]["pseudonyms_blanked"] == 1
    assert request.result["total_rows_removed"] == 0


def test_a_failing_handler_rolls_the_whole_erasure_back(two_consumers, officer):
    alice, _ = two_consumers

    def broken(consumer_id: int) -> dict[str, int]:
        raise RuntimeError(f"boom for consumer {consumer_id}")

    register(SubjectDataHandler(name="broken_test_handler", layer=1, access=lambda cid: {}, erase=broken))
    try:
        request = subject_request_submit(kind="erasure", raw_identifier=RAW, actor="apikey:1")
        with pytest.raises(RuntimeError):
            subject_request_process(request_id=request.pk, officer=officer)
    finally:
        _registry.pop("broken_test_handler")

    request.refresh_from_db()
    assert request.status == RequestStatus.IN_PROGRESS
    assert request.error.startswith("erasure by broken_test_handler failed: RuntimeError")
    assert str(alice.pk) not in request.error
    assert request.pseudonym == alice.pseudonym
    # Layer 2 ran before the broken layer-1 handler, and its deletions were rolled back with it.
    assert Consumer.objects.filter(pk=alice.pk).exists()
    assert Event.objects.filter(consumer=alice).count() == 4
    assert ConsentState.objects.filter(consumer=alice).count() == 2
    assert Suppression.objects.filter(consumer=alice).count() == 2
    assert CounterStatement.objects.filter(consumer=alice).count() == 1
    assert not AuditEntry.objects.filter(action="subject_request.completed", object_id=str(request.pk)).exists()

    # Fixed, the officer retries and it completes.
    done = subject_request_process(request_id=request.pk, officer=officer)
    assert done.status == RequestStatus.COMPLETED and done.error == ""
    assert not Consumer.objects.filter(pk=alice.pk).exists()


@pytest.mark.skipif(importlib.util.find_spec("tags.subject_data") is None, reason="needs the tags layer's handler")
def test_erasure_removes_the_consumer_from_every_stored_bitmap(two_consumers, officer):
    from pyroaring import BitMap

    from tags.bitmaps import LIVE_CONSUMERS_KEY, bitmap_cache_clear, bitmaps_load, tag_key
    from tags.models import StoredBitmap, Tag
    from tests.factories import tags_assign

    alice, bob = two_consumers
    tags_assign({("interest", "outdoor"): [alice.pk]})  # stores the tag's bitmap and the live consumers'
    tag = Tag.objects.get(family="interest", value="outdoor")
    bitmap_cache_clear()
    assert bitmaps_load([LIVE_CONSUMERS_KEY, tag_key(tag.pk)]) == {
        LIVE_CONSUMERS_KEY: BitMap([alice.pk, bob.pk]),
        tag_key(tag.pk): BitMap([alice.pk]),
    }
    erase(RAW, officer)
    bitmap_cache_clear()
    for key, bitmap in bitmaps_load(StoredBitmap.objects.values_list("key", flat=True)).items():
        assert alice.pk not in bitmap, key
    assert bob.pk in bitmaps_load([LIVE_CONSUMERS_KEY])[LIVE_CONSUMERS_KEY]
