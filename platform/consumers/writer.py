"""The database writer of ingestion: consumers and products ensured, events written in one batch transaction.

On PostgreSQL a batch's events are `COPY`-ed straight into the event table (a
temporary staging table and `INSERT ... ON CONFLICT (source_key) DO NOTHING`
only when one of their source keys is stored already: a re-send, or a
concurrent writer); elsewhere (and on request, for comparison)
through Django's `bulk_create(ignore_conflicts=True)`. Either way re-sending a
batch creates no duplicates.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import attrgetter

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from psycopg.errors import UniqueViolation

from dbtools.backend import on_postgresql
from dbtools.pgcopy import copy_text, staging_table
from merchants.models import Merchant
from privacy.audit import audit_record

from .changes import EVENTS, consumers_changed
from .ingestion import BadValue, IngestReport, sql_chunks
from .models import Consumer, Event, Product

_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")
_MAX_CACHED_CONSUMERS = 1_000_000
# A list of digests (pseudonyms, source keys: hex, never a comma) passed as one comma-separated text parameter:
# binding it as a text[] array costs the driver a Python call per element, a noticeable share of a small batch.
_DIGEST_ARRAY_SQL = "string_to_array(%s, ',')"


def _digest_list(values: list[str]) -> str:
    joined = ",".join(values)
    if values and joined.count(",") != len(values) - 1:
        raise ValueError("a digest list holds a value with a comma")
    return joined


class Resolver:
    """Per-call caches of merchants, consumers and products, so each is looked up once per call."""

    def __init__(self) -> None:
        self.merchants: dict[str, int | None] = {}
        self.consumer_ids: dict[str, int] = {}

    def merchant_id(self, value) -> int:
        if value is None or value == "":
            raise BadValue("is required")
        if not isinstance(value, str):
            raise BadValue("must be a merchant slug (text)")
        found = self.merchants.get(value, 0)
        if found == 0:
            slug = value.strip()
            found = (
                Merchant.objects.filter(slug=slug).values_list("id", flat=True).first() if _SLUG.match(slug) else None
            )
            if len(self.merchants) < 10_000:
                self.merchants[value] = found
        if found is None:
            raise BadValue("no merchant has this slug")
        return found

    def consumers_ensure(self, pseudonyms: Iterable[str]) -> int:
        """Make sure a Consumer row exists for each pseudonym; return how many were created.

        ON CONFLICT DO NOTHING, then one read for the ids, so two ingests racing
        on the same new consumer both end with the same row.
        """
        cache = self.consumer_ids
        needed = set(pseudonyms)
        if len(cache) + len(needed) > _MAX_CACHED_CONSUMERS:
            cache.clear()  # bounded memory on huge imports; this batch's ids are fetched again below
        missing = sorted(p for p in needed if p not in cache)
        if not missing:
            return 0
        created = 0
        table = Consumer._meta.db_table
        if on_postgresql():
            with connection.cursor() as cursor:
                for chunk in sql_chunks(missing, 10_000):
                    # Read first: most consumers of a steady stream are stored already, and a plain indexed read
                    # costs about half of an insert that finds its conflict (measured at 1M consumers).
                    cursor.execute(
                        f"SELECT id, pseudonym FROM {table} WHERE pseudonym = ANY({_DIGEST_ARRAY_SQL})",  # noqa: S608
                        [_digest_list(chunk)],
                    )
                    cache.update((p, i) for i, p in cursor.fetchall())
                    new = [p for p in chunk if p not in cache]
                    if not new:
                        continue
                    cursor.execute(
                        f"INSERT INTO {table} (pseudonym, age_range, country, gender, created_at, updated_at) "  # noqa: S608
                        f"SELECT p, '', '', '', now(), now() FROM unnest({_DIGEST_ARRAY_SQL}) AS p "
                        "ON CONFLICT (pseudonym) DO NOTHING RETURNING id, pseudonym",
                        [_digest_list(new)],
                    )
                    inserted = cursor.fetchall()
                    created += len(inserted)
                    cache.update((p, i) for i, p in inserted)
                    # A consumer another writer stored between the read and the insert: read it now.
                    rest = [p for p in new if p not in cache]
                    if rest:
                        cursor.execute(
                            f"SELECT id, pseudonym FROM {table} WHERE pseudonym = ANY({_DIGEST_ARRAY_SQL})",  # noqa: S608
                            [_digest_list(rest)],
                        )
                        cache.update((p, i) for i, p in cursor.fetchall())
        else:
            for chunk in sql_chunks(missing):
                found = Consumer.objects.filter(pseudonym__in=chunk).values_list("id", "pseudonym")
                cache.update((p, i) for i, p in found)
            new = [p for p in missing if p not in cache]
            if new:
                now = timezone.now()
                Consumer.objects.bulk_create(
                    [Consumer(pseudonym=p, created_at=now, updated_at=now) for p in new],
                    ignore_conflicts=True,
                    batch_size=2000,
                )
                created = len(new)
                for chunk in sql_chunks(new):
                    cache.update(
                        (p, i) for i, p in Consumer.objects.filter(pseudonym__in=chunk).values_list("id", "pseudonym")
                    )
        return created


EVENT_COLUMNS = (
    "source_key",
    "consumer_id",
    "merchant_id",
    "product_id",
    "event_type",
    "occurred_at",
    "quantity",
    "price",
    "discount",
    "order_ref",
    "device",
)
COPY_COLUMNS = ", ".join(EVENT_COLUMNS)
_STAGE_TABLE = "consumers_event_stage"
_STAGE_COLUMNS = (
    "source_key varchar(32), consumer_id bigint, merchant_id bigint, product_id bigint, event_type smallint, "
    "occurred_at timestamptz, quantity integer, price numeric(12, 2), discount numeric(12, 2), "
    "order_ref varchar(32), device varchar(32)"
)


@dataclass(slots=True)
class EventRow:
    row: int
    source_key: str
    pseudonym: str
    merchant_id: int
    sku: str
    event_type: int
    occurred_at: datetime
    quantity: int
    price: Decimal | None
    discount: Decimal
    order_ref: str
    device: str
    product: tuple[str, str, str] | None  # (title, category_path, brand) when the row carries any


class EventWriter:
    """Writes validated event batches (in the calling thread or a writer thread, each with its own WriterState)
    and adds what it wrote to the shared report."""

    def __init__(self, *, actor: str, method: str, report: IngestReport) -> None:
        self.actor = actor
        self.method = method
        self.report = report
        self.lock = threading.Lock()

    def write(self, good: list[EventRow], state: WriterState) -> None:
        if not good:
            return
        unique: dict[str, EventRow] = {}
        for event in good:
            if event.source_key not in unique:
                unique[event.source_key] = event
        events = list(unique.values())  # in the rows' order: a product's attributes are the last row's
        try:
            self._write_batch(good, events, state)
        except IntegrityError:
            # A consumer or product cached from an earlier batch was deleted meanwhile (an erasure):
            # the foreign keys refused the batch. Forget the cached ids and try once more.
            state.reset()
            self._write_batch(good, events, state)

    def _write_batch(self, good: list[EventRow], events: list[EventRow], state: WriterState) -> None:
        with transaction.atomic():
            consumers_created = state.resolver.consumers_ensure(e.pseudonym for e in events)
            products_created = state.products_ensure(events)
            write_events = self._write_copy if self.method == "copy" else self._write_bulk_create
            # One order for every writer, as consumers_ensure and products_ensure have: an insert holds its key
            # until the batch commits, so two concurrent batches inserting the same new keys in different orders
            # could each hold one the other waits for (a deadlock: one batch failed); in key order one just waits.
            inserted = write_events(sorted(events, key=attrgetter("source_key")), state)
            if on_postgresql():
                # Run the deferred foreign-key checks now, before the audit entry takes the
                # audit log's lock, so parallel writers do not queue behind each other's checks.
                with connection.cursor() as cursor:
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            consumers_changed(
                consumer_ids=[state.resolver.consumer_ids[e.pseudonym] for e in events],
                input=EVENTS,
                event_types={e.event_type for e in events},
            )
            per_merchant: dict[int, int] = {}
            for event in events:
                per_merchant[event.merchant_id] = per_merchant.get(event.merchant_id, 0) + 1
            audit_record(
                actor=self.actor,
                action="ingest.events",
                merchant_id=next(iter(per_merchant)) if len(per_merchant) == 1 else None,
                object_type="Event",
                counts={
                    "rows": len(good),
                    "written": inserted,
                    "duplicates": len(good) - inserted,
                    "consumers_created": consumers_created,
                    "products_created": products_created,
                },
                details={
                    "rows": [good[0].row, good[-1].row],
                    "method": self.method,
                    "events_by_merchant": {str(k): v for k, v in sorted(per_merchant.items())},
                },
            )
        with self.lock:
            report = self.report
            report.accepted += inserted
            report.duplicates += len(good) - inserted
            report.consumers_created += consumers_created
            report.products_created += products_created

    def _write_copy(self, events: list[EventRow], state: WriterState) -> int:
        """COPY the batch's new events straight into the event table; returns how many were written.

        The common batch holds no stored source key, so it is copied without a look first. When one is
        stored (a re-send, or a concurrent writer storing the same key) the unique index refuses the COPY,
        which is undone to its savepoint and redone through the staging table with ON CONFLICT, skipping
        the stored ones. After a batch with duplicates the writer looks first (one indexed lookup) and
        copies only the rest: a re-sent file is mostly duplicates, and a refused COPY is wasted work.
        """
        table = Event._meta.db_table
        with connection.cursor() as cursor:
            new = events
            if state.expect_duplicates:
                cursor.execute(
                    f"SELECT source_key FROM {table} WHERE source_key = ANY({_DIGEST_ARRAY_SQL})",  # noqa: S608
                    [_digest_list([e.source_key for e in events])],
                )
                stored = {key for (key,) in cursor.fetchall()}
                new = [e for e in events if e.source_key not in stored] if stored else events
                state.expect_duplicates = bool(stored)
                if not new:
                    return 0
            text = self._copy_text(new, state)
            try:
                # A savepoint, so only the COPY is undone on a conflict (errors come out as Django's).
                with transaction.atomic():
                    copy_text(cursor, table, EVENT_COLUMNS, text)
                return len(new)
            except IntegrityError as exc:
                if not isinstance(exc.__cause__, UniqueViolation):
                    raise
            state.expect_duplicates = True
            return self._write_staged(cursor, text)

    @staticmethod
    def _copy_text(events: list[EventRow], state: WriterState) -> str:
        """The events as COPY text, one buffer.

        Every value is a digest, a number or a timestamp, so nothing needs COPY escaping.
        """
        consumers = state.resolver.consumer_ids
        products = state.products
        null = "\\N"
        return "".join(
            [
                f"{e.source_key}\t{consumers[e.pseudonym]}\t{e.merchant_id}\t{products[(e.merchant_id, e.sku)]}\t"
                f"{e.event_type}\t{e.occurred_at.isoformat()}\t{e.quantity}\t"
                f"{null if e.price is None else e.price}\t{e.discount}\t{e.order_ref}\t{e.device}\n"
                for e in events
            ]
        )

    @staticmethod
    def _write_staged(cursor, text: str) -> int:
        """COPY into a temporary staging table, then INSERT ... ON CONFLICT DO NOTHING: conflicts are skipped."""
        with staging_table(cursor, _STAGE_TABLE, _STAGE_COLUMNS) as stage:
            copy_text(cursor, stage, EVENT_COLUMNS, text)
            cursor.execute(
                f"INSERT INTO {Event._meta.db_table} ({COPY_COLUMNS}) "  # noqa: S608
                f"SELECT {COPY_COLUMNS} FROM {stage} ON CONFLICT (source_key) DO NOTHING"
            )
            inserted = cursor.rowcount
        return inserted

    def _write_bulk_create(self, events: list[EventRow], state: WriterState) -> int:
        keys = [e.source_key for e in events]
        already: set[str] = set()
        for chunk in sql_chunks(keys):
            already.update(Event.objects.filter(source_key__in=chunk).values_list("source_key", flat=True))
        consumers = state.resolver.consumer_ids
        products = state.products
        Event.objects.bulk_create(
            [
                Event(
                    source_key=e.source_key,
                    consumer_id=consumers[e.pseudonym],
                    merchant_id=e.merchant_id,
                    product_id=products[(e.merchant_id, e.sku)],
                    event_type=e.event_type,
                    occurred_at=e.occurred_at,
                    quantity=e.quantity,
                    price=e.price,
                    discount=e.discount,
                    order_ref=e.order_ref,
                    device=e.device,
                )
                for e in events
                if e.source_key not in already
            ],
            ignore_conflicts=True,
            batch_size=2000,
        )
        return len(events) - len(already)


class WriterState:
    """What one writer (thread) knows: consumer and product ids it has itself seen committed or created."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.expect_duplicates = False  # the last batch had stored source keys: look before copying
        self.resolver = Resolver()
        self.products: dict[tuple[int, str], int] = {}
        self.product_attrs: dict[tuple[int, str], tuple[str, str, str]] = {}

    def products_ensure(self, events: list[EventRow]) -> int:
        """Create unknown (merchant, sku) products and apply the attributes rows carry (the last row wins).

        One upsert for the products that are new or whose attributes changed; an
        attribute a row leaves empty keeps its stored value.
        """
        cache = self.products
        attrs = self.product_attrs
        wanted: dict[tuple[int, str], tuple[tuple[str, str, str] | None, Decimal | None]] = {}
        for event in events:
            key = (event.merchant_id, event.sku)
            known = key in cache and (event.product is None or attrs.get(key) == event.product)
            if not known and (event.product is not None or key not in wanted):
                wanted[key] = (event.product, event.price)
        if not wanted:
            return 0
        keys = sorted(wanted)  # one order for every writer: concurrent upserts cannot deadlock
        table = Product._meta.db_table
        now = timezone.now()
        keep = "CASE WHEN excluded.{0} <> '' THEN excluded.{0} ELSE " + table + ".{0} END"
        changed = " OR ".join(f"(excluded.{c} <> '' AND excluded.{c} <> {table}.{c})" for c in _PRODUCT_ATTRS)
        with connection.cursor() as cursor:
            before = self._product_ids(cursor, keys)
            # Only products that are new or whose rows carry attributes need the upsert: the common batch (known
            # products, no catalogue attributes) costs this one read.
            upserts = [key for key in keys if key not in before or wanted[key][0] is not None]
            for chunk in sql_chunks(upserts, 1000):
                params: list = []
                for merchant_id, sku in chunk:
                    product, price = wanted[(merchant_id, sku)]
                    title, path, brand = product or ("", "", "")
                    params.extend((merchant_id, sku, title, path, path.split("/", 1)[0][:100], brand, price, now))
                values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
                cursor.execute(
                    f"INSERT INTO {table} (merchant_id, sku, title, category_path, category, brand, price, created_at) "  # noqa: S608
                    f"VALUES {values} ON CONFLICT (merchant_id, sku) DO UPDATE SET "
                    + ", ".join(f"{c} = {keep.format(c)}" for c in (*_PRODUCT_ATTRS, "category"))
                    + f" WHERE {changed}",
                    params,
                )
            cache.update(before)
            cache.update(self._product_ids(cursor, [key for key in keys if key not in before]))
        for key, (product, _price) in wanted.items():
            if product is not None:
                attrs[key] = product
        return len(keys) - len(before)

    @staticmethod
    def _product_ids(cursor, keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
        found: dict[tuple[int, str], int] = {}
        for chunk in sql_chunks(keys, 500):
            where = " OR ".join(["(merchant_id = %s AND sku = %s)"] * len(chunk))
            cursor.execute(
                f"SELECT id, merchant_id, sku FROM {Product._meta.db_table} WHERE {where}",  # noqa: S608
                [value for key in chunk for value in key],
            )
            found.update(((merchant_id, sku), pk) for pk, merchant_id, sku in cursor.fetchall())
        return found


_PRODUCT_ATTRS = ("title", "category_path", "brand")
