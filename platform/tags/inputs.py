"""What the tagging rules read: consumers, products and events as numpy arrays, loaded once per run.

Rules work set-wise over these arrays (grouping, sorting, bincount) instead of
looping over consumers. On PostgreSQL the arrays come from binary COPY
(tags.pgcopy); elsewhere (SQLite in development and tests) from the ORM. Both
paths produce identical arrays, so every rule runs the same code on both.

Events are read for the retention window ending at `as_of` (events older than
EVENT_RETENTION_DAYS are purged anyway); rules narrow that window further.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection, connections
from django.utils.text import slugify

from consumers.models import Consumer, Event, EventType, Product

from .pgcopy import Column, copy_out_all, packed_decode, packed_expression, page_range_condition, page_ranges

SECONDS_PER_DAY = 86_400


class IdIndex:
    """Positions of database ids in a sorted id array; unknown ids map to -1."""

    def __init__(self, ids: np.ndarray):
        self.ids = np.unique(np.asarray(ids, dtype=np.int64))
        self._dense: np.ndarray | None = None
        if self.ids.size and self.ids[0] >= 0 and self.ids[-1] <= 4 * self.ids.size + 1_000_000:
            # Ids from a sequence are nearly dense: a direct lookup table beats a binary search.
            dense = np.full(int(self.ids[-1]) + 1, -1, dtype=np.int32)
            dense[self.ids] = np.arange(self.ids.size, dtype=np.int32)
            self._dense = dense

    def __len__(self) -> int:
        return int(self.ids.size)

    def positions(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.int64)
        if self.ids.size == 0:
            return np.full(values.shape, -1, dtype=np.int32)
        if self._dense is not None:
            inside = (values >= 0) & (values < self._dense.size)
            out = np.full(values.shape, -1, dtype=np.int32)
            out[inside] = self._dense[values[inside]]
            return out
        found = np.searchsorted(self.ids, values)
        found = np.minimum(found, self.ids.size - 1)
        return np.where(self.ids[found] == values, found, -1).astype(np.int32)


@dataclass(frozen=True)
class Encoded:
    """A text column dictionary-encoded: row ids, a code per row, the distinct values."""

    ids: np.ndarray  # int64
    codes: np.ndarray  # int32 index into vocabulary
    vocabulary: list[str]


@dataclass(frozen=True)
class EventArrays:
    consumer: np.ndarray  # int32 position in TaggingInput.consumers
    product: np.ndarray  # int32 position in TaggingInput.products, -1 without a known product
    event_type: np.ndarray  # int8 EventType
    age_days: np.ndarray  # float32, days from the event to as_of

    def __len__(self) -> int:
        return int(self.consumer.size)


@dataclass(frozen=True)
class PurchaseArrays:
    consumer: np.ndarray  # int32 position in TaggingInput.consumers
    merchant: np.ndarray  # int64 merchant id
    product: np.ndarray  # int32 position in TaggingInput.products, -1 without a known product
    age_days: np.ndarray  # float32
    amount: np.ndarray  # float64, price x quantity
    discounted: np.ndarray  # bool, bought with a discount
    order: np.ndarray  # int64: one value per order (hash of the order reference, else the calendar day)

    def __len__(self) -> int:
        return int(self.consumer.size)


@dataclass(frozen=True)
class ProductArrays:
    index: IdIndex
    category: np.ndarray  # int32 per product position, -1 none
    categories: list[str]  # stable identifiers (slugs)
    category_labels: list[str]  # as merchants named them
    brand: np.ndarray  # int32 per product position, -1 none
    brands: list[str]


def _timed(name: str) -> Callable:
    """Record how long a loader took in the input's timings (reported apart from the rules' own time)."""

    def decorate(method):
        def wrapper(self, *args):
            start = time.perf_counter()
            try:
                return method(self, *args)
            finally:
                key = f"{name}:{args[0]}" if args and isinstance(args[0], str) else name
                self.timings[key] = round(self.timings.get(key, 0.0) + time.perf_counter() - start, 3)

        wrapper.__name__ = method.__name__
        wrapper.__doc__ = method.__doc__
        return wrapper

    return decorate


class TaggingInput:
    """The data one tagging run reads, loaded lazily and at most once."""

    def __init__(self, *, as_of: datetime, lookback_days: int | None = None):
        self.as_of = as_of
        self.as_of_ts = as_of.timestamp()
        self.lookback_days = lookback_days or settings.EVENT_RETENTION_DAYS
        self.since = as_of - timedelta(days=self.lookback_days)
        self._loader: _Loader = _PostgresLoader() if connection.vendor == "postgresql" else _OrmLoader()
        self._profiles: dict[str, Encoded] = {}
        self.timings: dict[str, float] = {}

    @cached_property
    @_timed("consumers")
    def consumers(self) -> IdIndex:
        return IdIndex(self._loader.consumer_ids())

    def profile(self, field: str) -> Encoded:
        """A non-blank Consumer profile field (age_range, country), dictionary-encoded."""
        if field not in self._profiles:
            self._profiles[field] = self._profile_load(field)
        return self._profiles[field]

    @_timed("profile")
    def _profile_load(self, field: str) -> Encoded:
        return self._loader.encoded_column(Consumer, field)

    @cached_property
    @_timed("products")
    def products(self) -> ProductArrays:
        category = self._loader.encoded_column(Product, "category")
        brand = self._loader.encoded_column(Product, "brand")
        index = IdIndex(self._loader.product_ids())
        category_codes, categories, category_labels = _normalise(category, slugify)
        brand_codes, brands, _ = _normalise(brand, lambda name: " ".join(name.split()).casefold())
        by_product_category = np.full(len(index), -1, dtype=np.int32)
        by_product_category[index.positions(category.ids)] = category_codes
        by_product_brand = np.full(len(index), -1, dtype=np.int32)
        by_product_brand[index.positions(brand.ids)] = brand_codes
        return ProductArrays(index, by_product_category, categories, category_labels, by_product_brand, brands)

    def _age_days(self, ts: np.ndarray) -> np.ndarray:
        return ((self.as_of_ts - ts) / SECONDS_PER_DAY).astype(np.float32)

    @cached_property
    def events(self) -> EventArrays:
        return self._activity[0]

    @cached_property
    def purchases(self) -> PurchaseArrays:
        return self._activity[1]

    @cached_property
    def _activity(self) -> tuple[EventArrays, PurchaseArrays]:
        consumers, products = self.consumers, self.products.index  # loaded (and timed) first
        return self._activity_load(consumers, products)

    @_timed("events")
    def _activity_load(self, consumers: IdIndex, products: IdIndex) -> tuple[EventArrays, PurchaseArrays]:
        """One pass over the events in the window: every event, and the purchase details of purchases."""
        event_parts: dict[str, list[np.ndarray]] = {"consumer": [], "product": [], "event_type": [], "age_days": []}
        purchase_names = ("consumer", "merchant", "product", "age_days", "amount", "discounted", "order")
        purchase_parts: dict[str, list[np.ndarray]] = {name: [] for name in purchase_names}
        purchase_type = int(EventType.PURCHASE)
        for block in self._loader.activity(self.since, self.as_of):
            consumer = consumers.positions(block["consumer"])
            keep = consumer >= 0  # consumers erased since the run began
            if not keep.all():
                block = {name: values[keep] for name, values in block.items()}
                consumer = consumer[keep]
            product = products.positions(block["product"])
            event_type = block["event_type"].astype(np.int8)
            age_days = self._age_days(block["ts"])
            event_parts["consumer"].append(consumer)
            event_parts["product"].append(product)
            event_parts["event_type"].append(event_type)
            event_parts["age_days"].append(age_days)

            bought = event_type == purchase_type
            ts = block["ts"][bought]
            order_hash = block["order_hash"][bought].astype(np.int64)
            # Orders without a reference count once per consumer and calendar day (negative, so never a hash).
            purchase_parts["order"].append(np.where(order_hash != 0, order_hash, -(ts // SECONDS_PER_DAY) - 1))
            purchase_parts["consumer"].append(consumer[bought])
            purchase_parts["merchant"].append(block["merchant"][bought])
            purchase_parts["product"].append(product[bought])
            purchase_parts["age_days"].append(age_days[bought])
            purchase_parts["amount"].append(block["amount"][bought])
            purchase_parts["discounted"].append(block["discounted"][bought])
        event_types = (np.int32, np.int32, np.int8, np.float32)
        events = EventArrays(
            **{name: _concat(arrays, t) for (name, arrays), t in zip(event_parts.items(), event_types, strict=True)}
        )
        purchase_types = (np.int32, np.int64, np.int32, np.float32, np.float64, bool, np.int64)
        purchases = PurchaseArrays(
            **{name: _concat(purchase_parts[name], t) for name, t in zip(purchase_names, purchase_types, strict=True)}
        )
        return events, purchases


def _concat(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.empty(0, dtype=dtype)


def _normalise(encoded: Encoded, normalise) -> tuple[np.ndarray, list[str], list[str]]:
    """Merge vocabulary entries that normalise to the same identifier; drop those that normalise to nothing."""
    identifiers: dict[str, int] = {}
    labels: list[str] = []
    remap = np.full(len(encoded.vocabulary) + 1, -1, dtype=np.int32)
    for code, raw in enumerate(encoded.vocabulary):
        identifier = normalise(raw)
        if not identifier:
            continue
        if identifier not in identifiers:
            identifiers[identifier] = len(identifiers)
            labels.append(" ".join(raw.split()))
        remap[code] = identifiers[identifier]
    codes = remap[encoded.codes] if encoded.codes.size else encoded.codes.astype(np.int32)
    keep = codes >= 0
    return codes[keep], list(identifiers), labels


class _Loader:
    def consumer_ids(self) -> np.ndarray:
        raise NotImplementedError

    def product_ids(self) -> np.ndarray:
        raise NotImplementedError

    def encoded_column(self, model, field: str) -> Encoded:
        raise NotImplementedError

    def activity(self, since: datetime, until: datetime) -> Iterator[dict[str, np.ndarray]]:
        """Blocks of events in (since, until]: consumer, product (0: none), event_type, ts (Unix seconds),
        merchant, amount (price x quantity), discounted, order_hash (0: no order reference)."""
        raise NotImplementedError


class _PostgresLoader(_Loader):
    """Binary COPY straight into numpy.

    Table and column names in these statements come from model metadata, never
    from input; values are bound parameters (hence the S608 exemptions).
    """

    def _ids(self, model) -> np.ndarray:
        with connection.cursor() as cursor:
            query = f'SELECT id FROM "{model._meta.db_table}"'  # noqa: S608
            return copy_out_all(cursor.cursor, query, None, [Column("id", "int8")])["id"]

    def consumer_ids(self) -> np.ndarray:
        return self._ids(Consumer)

    def product_ids(self) -> np.ndarray:
        return self._ids(Product)

    def encoded_column(self, model, field: str) -> Encoded:
        table, column = model._meta.db_table, model._meta.get_field(field).column
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT DISTINCT "{column}" FROM "{table}" WHERE "{column}" <> \'\' ORDER BY 1')  # noqa: S608
            vocabulary = [row[0] for row in cursor.fetchall()]
            if not vocabulary:
                return Encoded(np.empty(0, np.int64), np.empty(0, np.int32), [])
            # A hash join against the vocabulary, not a per-row search.
            query = (
                f'SELECT t.id, (v.code - 1)::int4 FROM "{table}" t '  # noqa: S608
                f'JOIN unnest(%s::text[]) WITH ORDINALITY AS v(name, code) ON t."{column}" = v.name'
            )
            arrays = copy_out_all(cursor.cursor, query, [vocabulary], [Column("id", "int8"), Column("code", "int4")])
        return Encoded(arrays["id"], arrays["code"], vocabulary)

    # (expression, column) pairs packed per event; all NOT NULL. Purchase details only for purchases.
    ACTIVITY = [
        ("consumer_id", Column("consumer", "int8")),
        ("COALESCE(product_id, 0)", Column("product", "int8")),
        ("event_type::int2", Column("event_type", "int2")),
        ("occurred_at", Column("ts", "timestamptz")),
        ("merchant_id", Column("merchant", "int8")),
        (
            "CASE WHEN event_type = 5 THEN (COALESCE(price, 0) * quantity)::float8 ELSE 0 END",
            Column("amount", "float8"),
        ),
        ("event_type = 5 AND discount > 0", Column("discounted", "bool")),
        (
            "CASE WHEN event_type = 5 AND order_ref <> '' THEN hashtext(order_ref) ELSE 0 END",
            Column("order_hash", "int4"),
        ),
    ]
    PAGES_PER_RANGE = 4096
    READERS = 2  # connections reading page ranges at once (the server packs rows; this process only decodes)

    def activity(self, since, until):
        table = Event._meta.db_table
        columns = [column for _, column in self.ACTIVITY]
        statement = (
            f'SELECT {packed_expression(self.ACTIVITY)} FROM "{table}" '  # noqa: S608
            "WHERE occurred_at > %s AND occurred_at <= %s AND {pages}"
        )
        with connection.cursor() as cursor:
            ranges = page_ranges(cursor, table, self.PAGES_PER_RANGE)

        def read(page_range) -> dict[str, np.ndarray]:
            condition, params = page_range_condition(page_range)
            connection.ensure_connection()
            # A plain (server-binding) psycopg cursor: Django's client-binding cursors cannot ask for binary
            # results, and bytea in text form would travel hex-encoded at twice the size.
            with psycopg.Cursor(connection.connection) as cursor:
                cursor.execute(statement.format(pages=condition), [since, until, *params], binary=True)
                return packed_decode(cursor.fetchone()[0], columns)

        yield from _read_ranges(read, ranges, self.READERS)


def _read_ranges(read, ranges, readers: int) -> Iterator[dict[str, np.ndarray]]:
    """read(range) for every range, in order; on several connections at once unless inside a transaction.

    Inside a caller's transaction (tests) another connection could not see its
    uncommitted rows, so ranges are read one by one on the caller's connection.
    """
    if connection.in_atomic_block or readers <= 1:
        for page_range in ranges:
            yield read(page_range)
        return

    def read_and_release(page_range):
        try:
            return read(page_range)
        finally:
            connections.close_all()  # this worker thread's own connection

    with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="tags-reader") as pool:
        window = readers * 2  # bounded read-ahead: at most this many ranges in memory
        pending = [pool.submit(read_and_release, r) for r in ranges[:window]]
        next_index = len(pending)
        while pending:
            block = pending.pop(0).result()
            if next_index < len(ranges):
                pending.append(pool.submit(read_and_release, ranges[next_index]))
                next_index += 1
            yield block


class _OrmLoader(_Loader):
    """The portable path (SQLite): the same arrays through the ORM, in bounded blocks."""

    def consumer_ids(self) -> np.ndarray:
        return np.fromiter(Consumer.objects.values_list("id", flat=True).iterator(), dtype=np.int64)

    def product_ids(self) -> np.ndarray:
        return np.fromiter(Product.objects.values_list("id", flat=True).iterator(), dtype=np.int64)

    def encoded_column(self, model, field: str) -> Encoded:
        vocabulary: dict[str, int] = {}
        ids, codes = [], []
        for row_id, value in model.objects.exclude(**{field: ""}).values_list("id", field).iterator():
            ids.append(row_id)
            codes.append(vocabulary.setdefault(value, len(vocabulary)))
        return Encoded(np.array(ids, dtype=np.int64), np.array(codes, dtype=np.int32), list(vocabulary))

    @staticmethod
    def _blocks(rows, convert) -> Iterator[dict[str, np.ndarray]]:
        batch = []
        for row in rows:
            batch.append(row)
            if len(batch) >= 100_000:
                yield convert(batch)
                batch = []
        if batch:
            yield convert(batch)

    def activity(self, since, until):
        rows = (
            Event.objects.filter(occurred_at__gt=since, occurred_at__lte=until)
            .values_list(
                "consumer_id",
                "product_id",
                "event_type",
                "occurred_at",
                "merchant_id",
                "price",
                "quantity",
                "discount",
                "order_ref",
            )
            .iterator(chunk_size=10_000)
        )
        purchase = int(EventType.PURCHASE)

        def order_hash(ref: str) -> int:
            return (zlib.crc32(ref.encode()) or 1) if ref else 0

        def convert(batch):
            bought = [r[2] == purchase for r in batch]
            return {
                "consumer": np.array([r[0] for r in batch], dtype=np.int64),
                "product": np.array([r[1] or 0 for r in batch], dtype=np.int64),
                "event_type": np.array([r[2] for r in batch], dtype=np.int16),
                "ts": np.array([int(r[3].timestamp()) for r in batch], dtype=np.int64),
                "merchant": np.array([r[4] for r in batch], dtype=np.int64),
                "amount": np.array(
                    [float(r[5] or 0) * r[6] if b else 0.0 for r, b in zip(batch, bought, strict=True)],
                    dtype=np.float64,
                ),
                "discounted": np.array([b and (r[7] or 0) > 0 for r, b in zip(batch, bought, strict=True)]),
                "order_hash": np.array(
                    [order_hash(r[8]) if b else 0 for r, b in zip(batch, bought, strict=True)], dtype=np.int64
                ),
            }

        return self._blocks(rows, convert)
