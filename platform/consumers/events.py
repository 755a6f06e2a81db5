"""Behaviour events from the marketplace operator: validated here, written by `consumers.writer`.

See `consumers.ingestion` for the rules every ingestion door follows.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sized
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from privacy.pseudonyms import make_pseudonymiser

from .ingestion import (
    EARLIEST,
    FUTURE_TOLERANCE,
    MAX_EVENT_ID_LENGTH,
    MAX_QUANTITY,
    ZERO,
    BadValue,
    IngestReport,
    RollBack,
    RowError,
    batch_size_of,
    consumer_pseudonym,
    identifier_text,
    ingest_log,
    make_source_digester,
    moment_value,
    money_value,
    offset_storable,
    on_postgres,
    quantity_value,
    row_batches,
    text_value,
)
from .models import EVENT_TYPE_BY_NAME
from .writer import EventRow, EventWriter, Resolver, WriterState

METHODS = ("copy", "bulk_create")

EVENT_TYPE_NAMES = {**EVENT_TYPE_BY_NAME, "favorite": EVENT_TYPE_BY_NAME["favourite"]}


def _category_path(value) -> str:
    path = text_value(value, 300)
    if not path:
        return ""
    parts = [p.strip() for p in re.split(r"[/>]", path) if p.strip()]
    return "/".join(parts)


class EventIngest:
    """One call's event ingestion: validation in the calling thread, batches handed to an EventWriter."""

    def __init__(self, *, actor: str, method: str, atomic: bool) -> None:
        self.actor = actor
        self.method = method
        self.atomic = atomic
        self.report = IngestReport(atomic=atomic)
        self.merchants = Resolver()  # merchant lookups during validation, in the calling thread
        self.pseudonymise = make_pseudonymiser()
        self.digest = make_source_digester()
        self.latest = timezone.now() + FUTURE_TOLERANCE
        self.amounts: dict[str, Decimal | None] = {}
        self.writer = EventWriter(actor=actor, method=method, report=self.report)

    # ---- validation: one pass, no per-row objects beyond the result, errors never quote values

    def validate(self, rows: list, first_row: int) -> list[EventRow]:
        good: list[EventRow] = []
        errors = self.report.rejected
        pseudonymise = self.pseudonymise
        digest = self.digest
        merchant_id_of = self.merchants.merchant_id
        event_types = EVENT_TYPE_NAMES
        latest = self.latest
        earliest = EARLIEST
        fromisoformat = datetime.fromisoformat
        amounts = self.amounts
        for offset, raw in enumerate(rows):
            row_no = first_row + offset
            if not isinstance(raw, dict):
                errors.append(RowError(row_no, "", "row must be an object with the event's fields"))
                continue
            bad: list[RowError] = []
            get = raw.get

            try:
                source_key = identifier_text(get("event_id"))
                if len(source_key) > MAX_EVENT_ID_LENGTH:
                    raise BadValue(f"is too long (at most {MAX_EVENT_ID_LENGTH} characters)")
                source_key = digest(source_key)
            except BadValue as exc:
                bad.append(RowError(row_no, "event_id", str(exc)))
                source_key = ""

            try:
                pseudonym = consumer_pseudonym(get("consumer_id"), pseudonymise)
            except BadValue as exc:
                bad.append(RowError(row_no, "consumer_id", str(exc)))
                pseudonym = ""

            try:
                merchant_id = merchant_id_of(get("merchant"))
            except BadValue as exc:
                bad.append(RowError(row_no, "merchant", str(exc)))
                merchant_id = 0

            sku = get("sku")
            if not (type(sku) is str and 0 < len(sku) <= 64 and sku.isprintable() and sku == sku.strip()):
                try:
                    sku = text_value(sku, 64, required=True)
                except BadValue as exc:
                    bad.append(RowError(row_no, "sku", str(exc)))
                    sku = ""

            kind = get("event_type")
            event_type = event_types.get(kind) if type(kind) is str else None
            if event_type is None:
                event_type = event_types.get(kind.strip().lower()) if isinstance(kind, str) else None
                if event_type is None:
                    reason = "is required" if kind in (None, "") else "must be one of " + ", ".join(EVENT_TYPE_BY_NAME)
                    bad.append(RowError(row_no, "event_type", reason))
                    event_type = 0

            occurred_at = get("occurred_at")
            try:
                # The common case inline (text with an offset, in range); anything else takes the long way.
                occurred_at = fromisoformat(occurred_at) if type(occurred_at) is str else None
            except ValueError:
                occurred_at = None
            if (
                occurred_at is None
                or (tz := occurred_at.tzinfo) is None
                or (tz is not UTC and not offset_storable(occurred_at))
                or not earliest <= occurred_at <= latest
            ):
                try:
                    occurred_at = moment_value(get("occurred_at"), latest)
                except BadValue as exc:
                    bad.append(RowError(row_no, "occurred_at", str(exc)))
                    occurred_at = EARLIEST

            quantity = get("quantity", 1)
            if type(quantity) is not int or not 0 < quantity <= MAX_QUANTITY:
                try:
                    quantity = quantity_value(quantity)
                except BadValue as exc:
                    bad.append(RowError(row_no, "quantity", str(exc)))

            # Catalogue prices repeat, so parsed amounts are cached by their text.
            price = get("price")
            amount = amounts.get(price) if type(price) is str else None
            if amount is None:
                try:
                    amount = money_value(price)
                except BadValue as exc:
                    bad.append(RowError(row_no, "price", str(exc)))
                else:
                    if type(price) is str and len(amounts) < 100_000:
                        amounts[price] = amount
            price = amount
            discount = get("discount")
            amount = amounts.get(discount) if type(discount) is str else None
            if amount is None:
                try:
                    amount = money_value(discount) or ZERO
                except BadValue as exc:
                    bad.append(RowError(row_no, "discount", str(exc)))
                    amount = ZERO
                else:
                    if type(discount) is str and len(amounts) < 100_000:
                        amounts[discount] = amount
            discount = amount

            order_ref = device = ""
            order_id = get("order_id")
            if order_id is not None and order_id != "":
                try:
                    order_ref = digest("order:" + identifier_text(order_id)[:MAX_EVENT_ID_LENGTH])
                except BadValue as exc:
                    bad.append(RowError(row_no, "order_id", str(exc)))
            device_id = get("device_id")
            if device_id is not None and device_id != "":
                try:
                    device = digest("device:" + identifier_text(device_id)[:MAX_EVENT_ID_LENGTH])
                except BadValue as exc:
                    bad.append(RowError(row_no, "device_id", str(exc)))

            product = None
            title, category_path, brand = get("title"), get("category_path"), get("brand")
            if title is not None or category_path is not None or brand is not None:
                try:
                    title = text_value(title, 300)
                except BadValue as exc:
                    bad.append(RowError(row_no, "title", str(exc)))
                    title = ""
                try:
                    category_path = _category_path(category_path)
                except BadValue as exc:
                    bad.append(RowError(row_no, "category_path", str(exc)))
                    category_path = ""
                try:
                    brand = text_value(brand, 100)
                except BadValue as exc:
                    bad.append(RowError(row_no, "brand", str(exc)))
                    brand = ""
                product = (title, category_path, brand)

            if bad:
                errors.extend(bad)
                continue
            good.append(
                EventRow(
                    row_no,
                    source_key,
                    pseudonym,
                    merchant_id,
                    sku,
                    event_type,
                    occurred_at,
                    quantity,
                    price,
                    discount,
                    order_ref,
                    device,
                    product,
                )
            )
        return good

    # ---- the whole call

    def run(self, rows: Iterable, batch_size: int, writers: int) -> IngestReport:
        report = self.report
        if self.atomic:
            state = WriterState()
            try:
                with transaction.atomic():
                    for good in self._validated(rows, batch_size):
                        if not report.rejected:
                            self.writer.write(good, state)
                    if report.rejected:
                        raise RollBack
            except RollBack:
                report.rolled_back = True
                report.accepted = report.duplicates = report.consumers_created = report.products_created = 0
        elif (
            writers > 1
            and on_postgres()
            and not connection.in_atomic_block
            and not (isinstance(rows, Sized) and len(rows) <= batch_size)  # one batch: nothing to overlap
        ):
            self._run_parallel(rows, batch_size, writers)
        else:
            state = WriterState()
            for good in self._validated(rows, batch_size):
                self.writer.write(good, state)
        return report

    def _validated(self, rows: Iterable, batch_size: int) -> Iterator[list[EventRow]]:
        report = self.report
        for chunk in row_batches(rows, batch_size):
            good = self.validate(chunk, report.received + 1)
            report.received += len(chunk)
            report.valid += len(good)
            yield good

    def _run_parallel(self, rows: Iterable, batch_size: int, writers: int) -> None:
        """Validate in this thread while `writers` threads write earlier batches, each on its own connection.

        The database does most of the work of a write (index and foreign-key
        maintenance), so several batches in flight use several server cores
        while this thread keeps validating. Each writer has its own caches: an id
        another writer has not committed yet must not be used.
        """
        work: queue.Queue[list[EventRow] | None] = queue.Queue(maxsize=writers)
        failures: list[BaseException] = []

        def writer() -> None:
            state = WriterState()
            try:
                while (good := work.get()) is not None:
                    if not failures:
                        try:
                            self.writer.write(good, state)
                        except BaseException as exc:  # handed to the calling thread, which re-raises it
                            failures.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=writer, name=f"ingest-writer-{i}", daemon=True) for i in range(writers)]
        for thread in threads:
            thread.start()
        try:
            for good in self._validated(rows, batch_size):
                if failures:
                    break
                work.put(good)
        finally:
            for _ in threads:
                work.put(None)
            for thread in threads:
                thread.join()
        if failures:
            raise failures[0]


def events_ingest(
    *,
    rows: Iterable[dict],
    actor: str,
    batch_size: int | None = None,
    atomic: bool = False,
    method: str | None = None,
    writers: int | None = None,
) -> IngestReport:
    """Validate and write behaviour events; see `consumers.ingestion` and docs/ingestion.md.

    method: "copy" (PostgreSQL only; the default there) or "bulk_create" (the default elsewhere).
    writers: batches written in parallel on PostgreSQL (each on its own connection) while the
    next batch is validated; 1 writes in the calling thread. Atomic calls and calls made inside
    a transaction always write in the calling thread.
    """
    if method is None:
        method = "copy" if on_postgres() else "bulk_create"
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    if method == "copy" and not on_postgres():
        raise ValueError("the copy method needs PostgreSQL")
    size = batch_size_of(batch_size)
    writer_count = writers if writers is not None else settings.INGEST_WRITERS
    started = time.perf_counter()
    report = EventIngest(actor=actor, method=method, atomic=atomic).run(rows, size, max(1, writer_count))
    ingest_log("ingest.events", report, started, method=method)
    return report
