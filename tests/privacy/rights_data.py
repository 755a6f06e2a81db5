"""Builders and probes shared by the data-subject-rights, risk and retention tests."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.utils import timezone
from pyroaring import FrozenBitMap

from consumers.models import Consumer, Event, EventType, Product
from merchants.models import Merchant
from privacy.pseudonyms import merchant_pseudonym
from tests.factories import ConsumerFactory, EventFactory, ProductFactory

# Events name a product (ingestion requires a sku); events a test sends without one are about this item.
DEFAULT_SKU = "test-item"


def make_consumer(raw_id: str, **profile) -> Consumer:
    """A consumer ingested under raw_id, by default aged 25-34, in SG, female."""
    fields = {"age_range": "25-34", "country": "SG", "gender": "f", **profile}
    return ConsumerFactory(raw_id=raw_id, **fields)


def make_product(merchant: Merchant, sku: str, **fields) -> Product:
    fields = {"title": f"Product {sku}", "category_path": "outdoor/tents", **fields}
    return ProductFactory(merchant=merchant, sku=sku, **fields)


def make_event(
    consumer: Consumer | int,
    merchant: Merchant,
    event_type: int = EventType.VIEW,
    *,
    at: datetime | None = None,
    days_ago: float = 1,
    product: Product | None = None,
    device: str = "",
    discount: str | Decimal = "0",
    order_ref: str = "",
    price: str | Decimal | None = "10.00",
) -> Event:
    """One event sent through ingestion (device and order are source ids; the service stores their digests)."""
    return EventFactory(
        consumer=consumer,
        merchant=merchant,
        sku=product.sku if product is not None else DEFAULT_SKU,
        event_type=event_type,
        occurred_at=at or timezone.now() - timedelta(days=days_ago),
        price=price,
        discount=discount,
        order_id=order_ref,
        device_id=device,
    )


def _rows(cursor, table: str):
    quoted = connection.ops.quote_name(table)
    cursor.execute(f"SELECT * FROM {quoted}")  # noqa: S608 - table names come from introspection
    names = [c[0] for c in cursor.description]
    for row in cursor.fetchall():
        yield dict(zip(names, row, strict=True))


def _as_bitmap(value) -> FrozenBitMap | None:
    if isinstance(value, memoryview):
        value = value.tobytes()
    if not isinstance(value, bytes | bytearray) or not value:
        return None
    try:
        return FrozenBitMap.deserialize(bytes(value))
    except Exception:
        return None


def consumer_traces(*, consumer_id: int, pseudonym: str, raw_id: str = "", merchant_ids=()) -> list[str]:
    """Every place in the database that still holds the consumer, introspecting every table.

    Looks for: integer columns that reference the consumer table (or are named
    like a consumer id) holding its id; text and JSON values containing its
    pseudonym, any merchant-scoped pseudonym of it, or the raw identifier;
    binary values that deserialise as a Roaring bitmap containing its id.
    """
    needles = [pseudonym] + [merchant_pseudonym(merchant_id=m, pseudonym=pseudonym) for m in merchant_ids]
    if raw_id:
        needles.append(raw_id)
    found = []
    consumer_table = Consumer._meta.db_table
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            relations = connection.introspection.get_relations(cursor, table)
            consumer_columns = {col for col, (_, other) in relations.items() if other == consumer_table}
            if table == consumer_table:
                consumer_columns.add("id")
            for row in _rows(cursor, table):
                for column, value in row.items():
                    if value is None:
                        continue
                    if isinstance(value, bool):
                        continue
                    if isinstance(value, int):
                        named_like = "consumer" in column.lower() and column.lower().endswith("id")
                        if (column in consumer_columns or named_like) and value == consumer_id:
                            found.append(f"{table}.{column} = consumer id")
                        continue
                    if isinstance(value, dict | list):
                        value = json.dumps(value)
                    if isinstance(value, str):
                        for needle in needles:
                            if needle in value:
                                found.append(f"{table}.{column} contains the consumer's identifier")
                        continue
                    bitmap = _as_bitmap(value)
                    if bitmap is not None and consumer_id in bitmap:
                        found.append(f"{table}.{column} bitmap contains the consumer id")
    return found


class LogCollector(logging.Handler):
    """Every log record, rendered as the production formatter would, fields included."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        from config.logformat import StructuredFormatter

        self.setFormatter(StructuredFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def __enter__(self):
        root = logging.getLogger()
        self._level = root.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc):
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._level)
        return False

    def text(self) -> str:
        return "\n".join(self.lines)


def populate_subject(raw_id: str, merchants: list[Merchant], *, device: str = "dev-a") -> Consumer:
    """A consumer with something in every table the consumers handler answers for.

    Needs an approved risk_control activity (the flag is recorded under it).
    """
    from privacy.models import ConsentKind, ConsentStatus, Purpose, RiskReason
    from privacy.risk_flags import RiskFinding, counter_statement_file, risk_flags_record
    from privacy.services import ConsentChange, consents_record, processing_basis_require
    from privacy.subject_rights import subject_request_submit

    consumer = make_consumer(raw_id)
    for i, merchant in enumerate(merchants):
        product = make_product(merchant, f"sku-{i}")
        make_event(consumer, merchant, EventType.VIEW, product=product, device=device, days_ago=3)
        make_event(
            consumer,
            merchant,
            EventType.PURCHASE,
            product=product,
            device=device,
            discount="2.50",
            order_ref=f"o{i}",
            days_ago=2,
        )
    now = timezone.now()
    consents_record(
        changes=[
            ConsentChange(
                consumer.pk,
                Purpose.DIRECT_MARKETING,
                ConsentStatus.GRANTED,
                ConsentKind.EXPRESS,
                "app",
                now - timedelta(days=9),
            ),
            ConsentChange(
                consumer.pk,
                Purpose.DIRECT_MARKETING,
                ConsentStatus.WITHDRAWN,
                ConsentKind.EXPRESS,
                "app",
                now - timedelta(days=5),
            ),
            ConsentChange(
                consumer.pk,
                Purpose.DIRECT_MARKETING,
                ConsentStatus.GRANTED,
                ConsentKind.EXPRESS,
                "app",
                now - timedelta(days=1),
            ),
            ConsentChange(
                consumer.pk,
                Purpose.TAGGING,
                ConsentStatus.GRANTED,
                ConsentKind.DEEMED,
                "notice",
                now - timedelta(days=9),
            ),
        ],
        actor="test",
    )
    risk_flags_record(
        findings=[RiskFinding(consumer.pk, RiskReason.SHARED_DEVICE, 6, {"accounts_on_device": 6})],
        basis=processing_basis_require(purpose=Purpose.RISK_CONTROL),
        rule_version="test",
        actor="test",
        flag_ttl_days=90,
    )
    counter_statement_file(
        pseudonym=consumer.pseudonym, statement="I share my tablet with my family.", flag_id=None, actor="test"
    )
    subject_request_submit(kind="objection", raw_identifier=raw_id, actor="test")
    return consumer
