"""What the tagging rules read: consumers, products and events as numpy arrays, loaded once per run.

Rules work set-wise over these arrays (grouping, sorting, bincount) instead of
looping over consumers. On PostgreSQL the arrays come from binary COPY
(dbtools.pgcopy); elsewhere (SQLite in development and tests) from the ORM. Both
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
from dbtools.backend import on_postgresql
from dbtools.pgcopy import Column, packed_decode, packed_expression, page_range_condition, page_ranges

from .arrays import sorted_unique

SECONDS_PER_DAY = 86_400


class IdIndex:
    """Positions of database ids in a sorted id array; unknown ids map to -1."""

    def __init__(self, ids: np.ndarray):
        self.ids = sorted_unique(np.asarray(ids, dtype=np.int64))
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
        self._loader: _Loader = _PostgresLoader() if on_postgresql() else _OrmLoader()
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
        consumers, products = self.consumers, self.products.index  # loaded (and timed) first
        return self._events_load(consumers, products)

    @_timed("events")
    def _events_load(self, consumers: IdIndex, products: IdIndex) -> EventArrays:
        """Every event in the window: who, which product, what, how long ago."""
        names = ("consumer", "product", "event_type", "age_days")
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for block in self._loader.events(self.since, self.as_of):
            consumer = consumers.positions(block["consumer"])
            keep = consumer >= 0  # consumers erased since the run began
            parts["consumer"].append(consumer[keep])
            parts["product"].append(products.positions(block["product"][keep]))
            parts["event_type"].append(block["event_type"][keep].astype(np.int8))
            parts["age_days"].append(self._age_days(block["ts"][keep]))
        types = (np.int32, np.int32, np.int8, np.float32)
        return EventArrays(**{name: _concat(parts[name], t) for name, t in zip(names, types, strict=True)})

    @cached_property
    def purchases(self) -> PurchaseArrays:
        consumers, products = self.consumers, self.products.index
        return self._purchases_load(consumers, products)

    @_timed("purchases")
    def _purchases_load(self, consumers: IdIndex, products: IdIndex) -> PurchaseArrays:
        """The purchases in the window, with merchant, amount, discount and order."""
        names = ("consumer", "merchant", "product", "age_days", "amount", "discounted", "order")
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for block in self._loader.purchases(self.since, self.as_of):
            consumer = consumers.positions(block["consumer"])
            keep = consumer >= 0
            ts = block["ts"][keep]
            order_hash = block["order_hash"][keep].astype(np.int64)
            # Orders without a reference count once per consumer and calendar day (negative, so never a hash).
            parts["order"].append(np.where(order_hash != 0, order_hash, -(ts // SECONDS_PER_DAY) - 1))
            parts["consumer"].append(consumer[keep])
            parts["merchant"].append(block["merchant"][keep])
            parts["product"].append(products.positions(block["product"][keep]))
            parts["age_days"].append(self._age_days(ts))
            parts["amount"].append(block["amount"][keep])
            parts["discounted"].append(block["discounted"][keep])
        types = (np.int32, np.int64, np.int32, np.float32, np.float64, bool, np.int64)
        return PurchaseArrays(**{name: _concat(parts[name], t) for name, t in zip(names, types, strict=True)})


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

    def events(self, since: datetime, until: datetime) -> Iterator[dict[str, np.ndarray]]:
        """Blocks of events in (since, until]: consumer, product (0: none), event_type, ts (Unix seconds)."""
        raise NotImplementedError

    def purchases(self, since: datetime, until: datetime) -> Iterator[dict[str, np.ndarray]]:
        """Blocks of purchases in (since, until]: consumer, merchant, product, ts, amount (price x quantity),
        discounted, order_hash (0: no order reference)."""
        raise NotImplementedError


class _PostgresLoader(_Loader):
    """Binary COPY straight into numpy.

    Table and column names in these statements come from model metadata, never
    from input; values are bound parameters (hence the S608 exemptions).
    """

    def _ids(self, model) -> np.ndarray:
        query = f'SELECT {packed_expression([("id", Column("id", "int8"))])} FROM "{model._meta.db_table}"'  # noqa: S608
        return packed_query(query, [], [Column("id", "int8")])["id"]

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
        columns = [Column("id", "int8"), Column("code", "int4")]
        packed = packed_expression([("t.id", columns[0]), ("(v.code - 1)::int4", columns[1])])
        # A hash join against the vocabulary, not a per-row search.
        query = (
            f'SELECT {packed} FROM "{table}" t '  # noqa: S608
            f'JOIN unnest(%s::text[]) WITH ORDINALITY AS v(name, code) ON t."{column}" = v.name'
        )
        arrays = packed_query(query, [vocabulary], columns)
        return Encoded(arrays["id"], arrays["code"], vocabulary)

    # (expression, column) pairs, all NOT NULL (string_agg would silently skip a NULL row).
    EVENTS = [
        ("consumer_id", Column("consumer", "int8")),
        ("COALESCE(product_id, 0)", Column("product", "int8")),
        ("event_type::int2", Column("event_type", "int2")),
        ("occurred_at", Column("ts", "timestamptz")),
    ]
    PURCHASES = [
        ("consumer_id", Column("consumer", "int8")),
        ("merchant_id", Column("merchant", "int8")),
        ("COALESCE(product_id, 0)", Column("product", "int8")),
        ("occurred_at", Column("ts", "timestamptz")),
        ("(COALESCE(price, 0) * quantity)::float8", Column("amount", "float8")),
        ("discount > 0", Column("discounted", "bool")),
        ("CASE WHEN order_ref = '' THEN 0 ELSE hashtext(order_ref) END", Column("order_hash", "int4")),
    ]
    PAGES_PER_RANGE = 4096
    READERS = 2  # connections reading page ranges at once (the server packs rows; this process only decodes)

    def _scan(self, expressions, condition: str, params: list) -> Iterator[dict[str, np.ndarray]]:
        """The events table read in page ranges, each packed by the server into one value."""
        table = Event._meta.db_table
        columns = [column for _, column in expressions]
        statement = f'SELECT {packed_expression(expressions)} FROM "{table}" WHERE {condition} AND {{pages}}'  # noqa: S608
        with connection.cursor() as cursor:
            ranges = page_ranges(cursor, table, self.PAGES_PER_RANGE)

        def read(page_range) -> dict[str, np.ndarray]:
            pages, page_params = page_range_condition(page_range)
            return packed_query(statement.format(pages=pages), [*params, *page_params], columns)

        yield from _read_ranges(read, ranges, self.READERS)

    def events(self, since, until):
        yield from self._scan(self.EVENTS, "occurred_at > %s AND occurred_at <= %s", [since, until])

    def purchases(self, since, until):
        yield from self._scan(
            self.PURCHASES,
            "event_type = %s AND occurred_at > %s AND occurred_at <= %s",
            [int(EventType.PURCHASE), since, until],
        )


def consumer_ids_all() -> np.ndarray:
    """Every consumer id, as an int64 array."""
    loader = _PostgresLoader() if on_postgresql() else _OrmLoader()
    return loader.consumer_ids()


def packed_query(statement: str, params: list, columns: list[Column]) -> dict[str, np.ndarray]:
    """Run a query returning one packed bytea (see dbtools.pgcopy.packed_expression) and decode it."""
    connection.ensure_connection()
    # A plain (server-binding) psycopg cursor: Django's client-binding cursors cannot ask for binary
    # results, and bytea in text form would travel hex-encoded at twice the size.
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(statement, params, binary=True)
        return packed_decode(cursor.fetchone()[0], columns)


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

    def events(self, since, until):
        rows = (
            Event.objects.filter(occurred_at__gt=since, occurred_at__lte=until)
            .values_list("consumer_id", "product_id", "event_type", "occurred_at")
            .iterator(chunk_size=10_000)
        )

        def convert(batch):
            return {
                "consumer": np.array([r[0] for r in batch], dtype=np.int64),
                "product": np.array([r[1] or 0 for r in batch], dtype=np.int64),
                "event_type": np.array([r[2] for r in batch], dtype=np.int16),
                "ts": np.array([int(r[3].timestamp()) for r in batch], dtype=np.int64),
            }

        return self._blocks(rows, convert)

    def purchases(self, since, until):
        rows = (
            Event.objects.filter(event_type=EventType.PURCHASE, occurred_at__gt=since, occurred_at__lte=until)
            .values_list(
                "consumer_id", "merchant_id", "product_id", "occurred_at", "price", "quantity", "discount", "order_ref"
            )
            .iterator(chunk_size=10_000)
        )

        def order_hash(ref: str) -> int:
            return (zlib.crc32(ref.encode()) or 1) if ref else 0

        def convert(batch):
            return {
                "consumer": np.array([r[0] for r in batch], dtype=np.int64),
                "merchant": np.array([r[1] for r in batch], dtype=np.int64),
                "product": np.array([r[2] or 0 for r in batch], dtype=np.int64),
                "ts": np.array([int(r[3].timestamp()) for r in batch], dtype=np.int64),
                "amount": np.array([float(r[4] or 0) * r[5] for r in batch], dtype=np.float64),
                "discounted": np.array([(r[6] or 0) > 0 for r in batch], dtype=bool),
                "order_hash": np.array([order_hash(r[7]) for r in batch], dtype=np.int64),
            }

        return self._blocks(rows, convert)
