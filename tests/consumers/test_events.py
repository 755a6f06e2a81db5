"""Event ingestion: precise rejection, nothing half-written, idempotence, COPY and bulk_create alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.consents import consents_ingest
from consumers.events import events_ingest
from consumers.ingestion import make_source_digester
from consumers.models import Consumer, Event, EventType, Product
from dbtools.backend import on_postgresql
from privacy.models import AuditEntry, ConsentRecord
from privacy.pseudonyms import pseudonymise


def errors_of(report) -> list[tuple[int, str]]:
    return [(e.row, e.field) for e in report.rejected]


def stored_source_keys() -> set[str]:
    return set(Event.objects.values_list("source_key", flat=True))


def digests(*event_ids: str) -> set[str]:
    digest = make_source_digester()
    return {digest(e) for e in event_ids}


# ------------------------------------------------------------------ events: validation


def test_a_batch_with_bad_rows_reports_each_precisely_and_writes_only_the_good_ones(event_row, merchant):
    rows = [
        event_row(event_id="good-1"),
        event_row(event_id="bad-type", event_type="teleport"),
        event_row(event_id="good-2", event_type="purchase", quantity=2, price="5.00", discount="1.00"),
        event_row(event_id="bad-merchant", merchant="no-such-shop"),
        event_row(event_id="bad-many", occurred_at="yesterday", price="-3", quantity=0),
        "not an object",
        event_row(event_id="bad-consumer", consumer_id=""),
        event_row(event_id="good-3", event_type="Favourite"),
    ]
    report = events_ingest(rows=rows, actor="test")

    assert errors_of(report) == [
        (2, "event_type"),
        (4, "merchant"),
        (5, "occurred_at"),
        (5, "quantity"),
        (5, "price"),
        (6, ""),
        (7, "consumer_id"),
    ]
    reasons = {(e.row, e.field): e.reason for e in report.rejected}
    assert reasons[(2, "event_type")] == "must be one of view, click, cart, favourite, purchase, cancel"
    assert reasons[(4, "merchant")] == "no merchant has this slug"
    assert "ISO 8601" in reasons[(5, "occurred_at")]
    assert reasons[(5, "price")] == "must not be negative"
    assert reasons[(7, "consumer_id")] == "is required"
    assert (report.received, report.valid, report.accepted, report.rejected_rows) == (8, 3, 3, 5)
    assert stored_source_keys() == digests("good-1", "good-2", "good-3")
    purchase = Event.objects.get(source_key__in=digests("good-2"))
    assert (purchase.event_type, purchase.quantity, purchase.price, purchase.discount) == (
        EventType.PURCHASE,
        2,
        Decimal("5.00"),
        Decimal("1.00"),
    )
    assert Event.objects.get(source_key__in=digests("good-3")).event_type == EventType.FAVOURITE


def test_resending_the_same_batch_creates_no_duplicates(event_row):
    rows = [event_row() for _ in range(30)] + [event_row(event_type="nope")]
    first = events_ingest(rows=rows, actor="test", batch_size=7)
    counts = (Event.objects.count(), Consumer.objects.count(), Product.objects.count())
    second = events_ingest(rows=rows, actor="test", batch_size=11)

    assert (first.accepted, first.duplicates) == (30, 0)
    assert (second.accepted, second.duplicates) == (0, 30)
    assert second.consumers_created == second.products_created == 0
    assert (Event.objects.count(), Consumer.objects.count(), Product.objects.count()) == counts
    assert errors_of(second) == [(31, "event_type")]


def test_a_row_repeated_within_one_request_is_written_once(event_row):
    row = event_row()
    report = events_ingest(rows=[row, dict(row), dict(row)], actor="test")
    assert (report.accepted, report.duplicates) == (1, 2)
    assert Event.objects.count() == 1


def test_atomic_mode_writes_nothing_when_any_row_is_bad(event_row):
    rows = [event_row() for _ in range(10)] + [event_row(sku="")] + [event_row() for _ in range(10)]
    audit_before = AuditEntry.objects.count()
    report = events_ingest(rows=rows, actor="test", atomic=True, batch_size=4)

    assert report.rolled_back
    assert (report.accepted, report.valid, report.consumers_created, report.products_created) == (0, 20, 0, 0)
    assert errors_of(report) == [(11, "sku")]
    assert Event.objects.count() == Consumer.objects.count() == Product.objects.count() == 0
    assert AuditEntry.objects.count() == audit_before

    clean = events_ingest(rows=rows[:10] + rows[11:], actor="test", atomic=True, batch_size=4)
    assert (clean.accepted, clean.rolled_back) == (20, False)


def test_without_atomic_each_batch_stands_on_its_own(event_row):
    rows = [event_row() for _ in range(5)] + [event_row(quantity="many")] + [event_row() for _ in range(4)]
    report = events_ingest(rows=rows, actor="test", batch_size=3)
    assert report.accepted == 9
    assert errors_of(report) == [(6, "quantity")]


@pytest.mark.parametrize(
    "field,value,reason",
    [
        ("event_id", None, "is required"),
        ("event_id", {"x": 1}, "must be a string or an integer"),
        ("event_id", "x" * 201, "is too long (at most 200 characters)"),
        ("consumer_id", True, "must be a string or an integer"),
        ("consumer_id", "a" * 321, "is too long (at most 320 characters)"),
        ("sku", "", "is required"),
        ("sku", "s" * 65, "is too long (at most 64 characters)"),
        ("sku", "bad\x00sku", "must not contain NUL characters"),
        ("event_type", None, "is required"),
        ("occurred_at", "2024-13-45T00:00:00", "must be an ISO 8601 date-time, e.g. 2024-05-01T12:30:00Z"),
        ("occurred_at", "1969-12-31T23:59:59Z", "is before 1970"),
        ("occurred_at", 1714566600, "must be an ISO 8601 date-time string"),
        ("quantity", -2, "must be at least 1 (send a cancel event for returns)"),
        ("quantity", 1.5, "must be a whole number"),
        ("quantity", True, "must be a whole number"),
        ("quantity", 10_000_000, "is too large (at most 1,000,000)"),
        ("price", "NaN", "must be a finite number"),
        ("price", "12,50", "must be a decimal number"),
        ("price", "1e12", "is too large (at most 9999999999.99)"),
        ("price", [1], "must be a number"),
        ("discount", -0.5, "must not be negative"),
        ("title", "t" * 301, "is too long (at most 300 characters)"),
        ("brand", ["x"], "must be a string"),
        ("order_id", 1.5, "must be a string or an integer"),
        ("device_id", {}, "must be a string or an integer"),
        ("merchant", 7, "must be a merchant slug (text)"),
        ("merchant", "acme'; drop table", "no merchant has this slug"),
    ],
)
def test_each_field_rule_names_the_field_and_the_reason(event_row, field, value, reason):
    report = events_ingest(rows=[event_row(**{field: value})], actor="test")
    assert [(e.row, e.field, e.reason) for e in report.rejected] == [(1, field, reason)]
    assert Event.objects.count() == 0


def test_an_event_in_the_future_is_rejected_but_a_naive_time_is_taken_as_utc(event_row):
    tomorrow_plus = (datetime.now(tz=UTC) + timedelta(days=2)).isoformat()
    report = events_ingest(
        rows=[event_row(occurred_at=tomorrow_plus), event_row(occurred_at="2024-05-01 08:00:00")], actor="test"
    )
    assert [(e.row, e.field, e.reason) for e in report.rejected] == [(1, "occurred_at", "is in the future")]
    assert Event.objects.get().occurred_at == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def test_offsets_are_respected(event_row):
    events_ingest(rows=[event_row(occurred_at="2024-05-01T20:00:00+08:00")], actor="test")
    assert Event.objects.get().occurred_at == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


UNSTORABLE_OFFSETS = [
    "2024-05-01T12:30:00+16:00",  # beyond PostgreSQL's +15:59
    "2024-05-01T12:30:00-23:59",
    "2024-05-01T12:30:00+05:30:15",  # sub-minute
    "2024-05-01T12:30:00+05:30:00.5",  # fractional seconds
]


@pytest.mark.parametrize("moment", UNSTORABLE_OFFSETS)
def test_an_offset_the_database_cannot_store_is_rejected_with_its_row_on_every_backend(event_row, moment):
    """Python parses these and SQLite kept them; PostgreSQL refused them and rolled back the whole batch (a 500)."""
    report = events_ingest(rows=[event_row(), event_row(occurred_at=moment), event_row()], actor="test")
    assert [(e.row, e.field) for e in report.rejected] == [(2, "occurred_at")]
    assert "offset" in report.rejected[0].reason
    assert Event.objects.count() == report.accepted == 2


@pytest.mark.parametrize("moment", ["2024-05-01T12:30:00+15:59", "2024-05-01T12:30:00-15:59", "2024-05-01T12:30+05:45"])
def test_offsets_up_to_fifteen_fifty_nine_in_whole_minutes_are_kept(event_row, moment):
    report = events_ingest(rows=[event_row(occurred_at=moment)], actor="test")
    assert report.ok and Event.objects.count() == 1


@pytest.mark.parametrize("moment", UNSTORABLE_OFFSETS[:2])
def test_a_consent_with_an_unstorable_offset_is_rejected_with_its_row(db, moment):
    rows = [
        {
            "consumer_id": "someone@example.com",
            "purpose": "direct_marketing",
            "status": "granted",
            "source": "test",
            "occurred_at": moment,
        }
    ]
    report = consents_ingest(rows=rows, actor="test")
    assert [(e.row, e.field) for e in report.rejected] == [(1, "occurred_at")]
    assert ConsentRecord.objects.count() == 0


def test_prices_are_rounded_to_cents_and_integers_accepted(event_row):
    events_ingest(rows=[event_row(price=12.345, discount=2, quantity="3")], actor="test")
    event = Event.objects.get()
    assert (event.price, event.discount, event.quantity) == (Decimal("12.35"), Decimal("2.00"), 3)


def test_order_and_device_ids_are_stored_only_as_keyed_digests(event_row):
    events_ingest(rows=[event_row(order_id="ORDER-7781", device_id="device-abc-123")], actor="test")
    event = Event.objects.get()
    digest = make_source_digester()
    assert event.order_ref == digest("order:ORDER-7781")
    assert event.device == digest("device:device-abc-123")
    assert len(event.order_ref) == len(event.device) == len(event.source_key) == 32


def test_one_consumer_per_person_whatever_the_spelling(event_row):
    events_ingest(
        rows=[
            event_row(consumer_id="Jane.Doe@Example.com"),
            event_row(consumer_id="  jane.doe@example.com "),
            event_row(consumer_id="+65 9123-4567"),
            event_row(consumer_id="+6591234567"),
        ],
        actor="test",
    )
    assert set(Consumer.objects.values_list("pseudonym", flat=True)) == {
        pseudonymise("jane.doe@example.com"),
        pseudonymise("+6591234567"),
    }


def test_product_attributes_upsert_the_merchants_catalogue(event_row, merchant, other_merchant):
    events_ingest(
        rows=[
            event_row(sku="TENT", title="Tent", category_path=" outdoor / camping > tents ", brand="Trailhead"),
            event_row(sku="TENT", merchant=other_merchant.slug),
            event_row(sku="MUG"),
        ],
        actor="test",
    )
    tent = Product.objects.get(merchant=merchant, sku="TENT")
    assert (tent.title, tent.category_path, tent.category, tent.brand) == (
        "Tent",
        "outdoor/camping/tents",
        "outdoor",
        "Trailhead",
    )
    assert Product.objects.get(merchant=other_merchant, sku="TENT").title == ""
    assert Product.objects.get(merchant=merchant, sku="MUG").price == Decimal("19.90")

    # A later row renames it; a row that leaves an attribute empty keeps the stored value.
    report = events_ingest(rows=[event_row(sku="TENT", title="Two-person tent", brand="")], actor="test")
    assert report.products_created == 0
    tent.refresh_from_db()
    assert (tent.title, tent.brand, tent.category) == ("Two-person tent", "Trailhead", "outdoor")


def test_each_written_batch_records_an_audit_entry_with_counts(event_row, merchant):
    rows = [event_row() for _ in range(5)]
    events_ingest(rows=rows, actor="apikey:9", batch_size=2)
    entries = list(AuditEntry.objects.filter(action="ingest.events").order_by("id"))
    assert [e.counts["written"] for e in entries] == [2, 2, 1]
    assert {e.actor for e in entries} == {"apikey:9"}
    assert entries[0].merchant_id == merchant.pk
    assert entries[0].purpose == ""  # collection, not a processing purpose
    assert entries[0].details["rows"] == [1, 2]


def test_bad_arguments_are_refused(event_row):
    with pytest.raises(ValueError, match="method"):
        events_ingest(rows=[], actor="t", method="insert")
    with pytest.raises(ValueError, match="batch_size"):
        events_ingest(rows=[], actor="t", batch_size=0)
    if not on_postgresql():
        with pytest.raises(ValueError, match="PostgreSQL"):
            events_ingest(rows=[], actor="t", method="copy")


# ------------------------------------------------------------------ COPY and bulk_create agree (PostgreSQL)


def _stored_events() -> list[tuple]:
    return sorted(
        Event.objects.values_list(
            "source_key",
            "consumer__pseudonym",
            "merchant_id",
            "product__sku",
            "event_type",
            "occurred_at",
            "quantity",
            "price",
            "discount",
            "order_ref",
            "device",
        )
    )


row_values = st.fixed_dictionaries(
    {
        "consumer_id": st.sampled_from(["a@example.com", "+65 8000 0001", "user-3", "B@EXAMPLE.COM"]),
        "sku": st.sampled_from(["S1", "S2", "S3"]),
        "event_type": st.sampled_from(["view", "click", "cart", "favourite", "purchase", "cancel", "bogus"]),
        "occurred_at": st.datetimes(
            min_value=datetime(1990, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
        ).map(lambda d: d.isoformat()),
        "quantity": st.integers(min_value=-1, max_value=5),
        "price": st.one_of(st.none(), st.decimals(min_value=0, max_value=1000, places=3).map(str)),
        "discount": st.sampled_from(["0", "1.5", "-1", None]),
        "order_id": st.one_of(st.none(), st.sampled_from(["o1", "o2"])),
    }
)


@pytest.mark.postgres
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(row_values, max_size=15), batch_size=st.integers(min_value=1, max_value=6))
def test_copy_and_bulk_create_store_the_same_events(merchant, batch, batch_size):
    rows = [{**values, "event_id": f"e{i % 9}", "merchant": merchant.slug} for i, values in enumerate(batch)]
    results = {}
    for method in ("copy", "bulk_create"):
        Event.objects.all().delete()
        report = events_ingest(rows=rows, actor="test", method=method, batch_size=batch_size, writers=1)
        results[method] = (
            report.accepted,
            report.duplicates,
            [e.as_dict() for e in report.rejected],
            _stored_events(),
        )
    assert results["copy"] == results["bulk_create"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_writers_write_every_batch_once(merchant, event_row):
    rows = [event_row() for _ in range(400)] + [event_row(price="free")]
    report = events_ingest(rows=rows, actor="test", batch_size=37, writers=3, method="copy")
    assert (report.accepted, report.duplicates, errors_of(report)) == (400, 0, [(401, "price")])
    again = events_ingest(rows=rows, actor="test", batch_size=50, writers=3)
    assert (again.accepted, again.duplicates) == (0, 400)
    assert Event.objects.count() == 400
    assert sum(e.counts["written"] for e in AuditEntry.objects.filter(action="ingest.events")) == 400


@pytest.mark.postgres
def test_a_partly_re_sent_file_writes_only_its_new_events_in_every_batch(event_row):
    """Batches mixing stored and new events, then wholly new ones: each event is stored once and counted right."""
    sent = [event_row(event_id=f"old-{i}") for i in range(30)]
    events_ingest(rows=sent, actor="test", method="copy")
    mixed = [row for i in range(30) for row in (sent[i], event_row(event_id=f"new-{i}"))]
    fresh = [event_row(event_id=f"fresh-{i}") for i in range(25)]
    report = events_ingest(rows=mixed + fresh, actor="test", batch_size=10, writers=1, method="copy")
    assert (report.received, report.accepted, report.duplicates) == (85, 55, 30)
    assert stored_source_keys() == digests(
        *(f"old-{i}" for i in range(30)), *(f"new-{i}" for i in range(30)), *(f"fresh-{i}" for i in range(25))
    )
    audited = AuditEntry.objects.filter(action="ingest.events").order_by("id")
    assert [e.counts["written"] for e in audited][1:] == [5, 5, 5, 5, 5, 5, 10, 10, 5]


@pytest.mark.postgres
def test_a_consumer_erased_between_batches_is_recreated_not_referenced(event_row):
    """The writer's cached id is stale after an erasure: the foreign key refuses it and the batch is retried."""

    def rows():
        yield event_row(event_id="before", consumer_id="gone@example.com")
        consumer = Consumer.objects.get(pseudonym=pseudonymise("gone@example.com"))
        consumer.events.all().delete()
        consumer.delete()
        yield event_row(event_id="after", consumer_id="gone@example.com")

    report = events_ingest(rows=rows(), actor="test", batch_size=1, method="copy")
    assert report.accepted == 2
    event = Event.objects.select_related("consumer").get()
    assert event.source_key in digests("after")
    assert event.consumer.pseudonym == pseudonymise("gone@example.com")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_stored_by_a_concurrent_writer_after_the_lookup_is_a_duplicate_not_an_error(event_row):
    """The direct COPY meets a key another transaction commits meanwhile: the batch falls back to ON CONFLICT."""
    import threading
    import time

    from django.db import connections, transaction

    same = {"consumer_id": "racer@example.com", "sku": "SKU-RACE"}
    rows = [event_row(event_id="contested", **same), event_row(event_id="mine", **same)]
    events_ingest(rows=[event_row(event_id="earlier", **same)], actor="test", method="copy", writers=1)
    other_may_commit = threading.Event()

    earlier = Event.objects.get()

    def other_writer() -> None:
        try:
            with transaction.atomic():
                Event.objects.create(
                    source_key=make_source_digester()("contested"),
                    consumer_id=earlier.consumer_id,
                    merchant_id=earlier.merchant_id,
                    product_id=earlier.product_id,
                    event_type=EventType.VIEW,
                    occurred_at=earlier.occurred_at,
                )
                other_may_commit.wait(timeout=10)
                time.sleep(0.3)  # long enough for the main thread's COPY to be waiting on this key
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_writer)
    thread.start()
    time.sleep(0.5)  # the other writer holds "contested", uncommitted: invisible to the lookup
    other_may_commit.set()
    report = events_ingest(rows=rows, actor="test", method="copy", writers=1)
    thread.join()
    assert (report.accepted, report.duplicates, report.rejected) == (1, 1, [])
    assert Event.objects.count() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_batches_writing_the_same_new_events_in_opposite_orders_both_succeed(event_row):
    """Each COPY holds the keys it has inserted until its batch commits. Were rows written in the order they came,
    a batch holding one key while waiting for a second, held by a concurrent batch that waits for the first, would
    be a deadlock, and PostgreSQL would fail one of the two. Written in key order, one simply waits for the other.

    The concurrent batch is played step by step inside one transaction, as its COPY would insert its rows: the
    lower key, then (once this batch is seen waiting) the higher one."""
    import threading
    import time

    from django.db import connection, connections, transaction

    same = {"consumer_id": "racer@example.com", "sku": "SKU-RACE"}
    events_ingest(rows=[event_row(event_id="earlier", **same)], actor="test", method="copy", writers=1)
    digest = make_source_digester()
    low, high = sorted(["one", "two"], key=digest)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (this_backend,) = cursor.fetchone()
    low_held, reports, errors = threading.Event(), [], []

    def concurrent_batch() -> None:
        try:
            with transaction.atomic():
                reports.append(events_ingest(rows=[event_row(event_id=low, **same)], actor="t", method="copy"))
                low_held.set()
                with connection.cursor() as cursor:
                    for _ in range(600):  # until this test's batch waits for a key (at most a minute)
                        cursor.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", [this_backend])
                        if cursor.fetchone()[0]:
                            break
                        time.sleep(0.1)
                reports.append(events_ingest(rows=[event_row(event_id=high, **same)], actor="t", method="copy"))
        except Exception as exc:
            errors.append(exc)
        finally:
            low_held.set()
            connections.close_all()

    thread = threading.Thread(target=concurrent_batch)
    thread.start()
    low_held.wait(timeout=60)
    try:
        mine = events_ingest(
            rows=[event_row(event_id=high, **same), event_row(event_id=low, **same)],
            actor="test",
            method="copy",
            writers=1,
        )
    finally:
        thread.join()
    assert errors == []
    assert [r.accepted for r in reports] == [1, 1]
    assert (mine.accepted, mine.duplicates, mine.rejected) == (0, 2, [])
    assert stored_source_keys() == digests("earlier", "one", "two")
