"""Ingestion: behaviour events, consumer profiles and consents from the marketplace operator.

Every row is validated; a bad row is reported by row number (1-based), field
and reason and never written. Good rows are written in transactional batches
(each batch all or nothing); `atomic=True` writes nothing at all when any row
is bad. Raw consumer identifiers are pseudonymised the moment a row is read and
are never stored, logged, or echoed back in an error: reasons describe what is
wrong, they never quote the value.

Ingestion is collection, not one of the processing purposes of the register,
so it does not call `processing_basis_require`; every job that later uses the
data does. Each written batch records an audit entry with counts only.

On PostgreSQL the events of a batch whose source keys are not stored yet are
`COPY`-ed straight into the event table (a temporary staging table and
`INSERT ... ON CONFLICT (source_key) DO NOTHING` only when a concurrent writer
stored one of those keys meanwhile); elsewhere (and on request, for comparison)
through Django's `bulk_create(ignore_conflicts=True)`. Either way re-sending a
batch creates no duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from itertools import islice

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from psycopg.errors import UniqueViolation

from merchants.models import Merchant
from privacy.audit import audit_record
from privacy.models import ConsentKind, ConsentRecord, ConsentStatus, Purpose
from privacy.pseudonyms import make_pseudonymiser
from privacy.services import ConsentChange, consents_record

from .countries import country_code, country_from_address
from .models import EVENT_TYPE_BY_NAME, AgeRange, Consumer, Event, Product

logger = logging.getLogger("dmp.ingest")

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
MAX_MONEY = Decimal("9999999999.99")  # DecimalField(max_digits=12, decimal_places=2)
MAX_QUANTITY = 1_000_000
MAX_ID_LENGTH = 320  # longest e-mail address a mail system accepts
MAX_EVENT_ID_LENGTH = 200
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)  # clocks drift; a day ahead is a bug, not drift
METHODS = ("copy", "bulk_create")

EVENT_TYPE_NAMES = {**EVENT_TYPE_BY_NAME, "favorite": EVENT_TYPE_BY_NAME["favourite"]}
GENDERS = {
    "f": "f",
    "female": "f",
    "woman": "f",
    "m": "m",
    "male": "m",
    "man": "m",
    "x": "x",
    "other": "x",
    "non-binary": "x",
    "nonbinary": "x",
    "diverse": "x",
}
_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")
_MAX_CACHED_CONSUMERS = 1_000_000
_SQL_CHUNK = 900  # ids per IN (...) list; well under every backend's parameter limit


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class RowError:
    """One problem with one row: where (row number, field) and why. Never the value itself."""

    row: int
    field: str
    reason: str

    def as_dict(self) -> dict:
        return {"row": self.row, "field": self.field, "reason": self.reason}


@dataclass
class IngestReport:
    """What happened to a request's rows.

    accepted: rows written now; duplicates: valid rows already stored (a re-send)
    or repeated within the request; valid: rows that passed validation (in
    atomic mode with a bad row, valid rows are not written, so accepted is 0).
    """

    received: int = 0
    valid: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[RowError] = field(default_factory=list)
    consumers_created: int = 0
    products_created: int = 0
    atomic: bool = False
    rolled_back: bool = False

    @property
    def rejected_rows(self) -> int:
        return len({e.row for e in self.rejected})

    @property
    def ok(self) -> bool:
        return not self.rejected

    def as_dict(self) -> dict:
        return {
            "received": self.received,
            "valid": self.valid,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected_rows": self.rejected_rows,
            "consumers_created": self.consumers_created,
            "products_created": self.products_created,
            "atomic": self.atomic,
            "rolled_back": self.rolled_back,
            "errors": [e.as_dict() for e in self.rejected],
        }

    def reasons(self) -> dict[str, int]:
        """Rejected rows counted by "field: reason" (a row's first problem), for summaries."""
        first: dict[int, RowError] = {}
        for e in self.rejected:
            first.setdefault(e.row, e)
        counts: dict[str, int] = {}
        for e in first.values():
            key = f"{e.field}: {e.reason}" if e.field else e.reason
            counts[key] = counts.get(key, 0) + 1
        return counts


class _Bad(Exception):
    """A field's value is unusable; the message is the reason (never containing the value)."""


class _RollBack(Exception):
    """Internal: leave the atomic block so a request with bad rows writes nothing."""


# --------------------------------------------------------------------------- digests and field parsers


@lru_cache(maxsize=4)
def _digest_key(secret: str) -> bytes:
    # A key of its own, derived from the pseudonym key, so source-id digests never equal consumer pseudonyms.
    return hmac.new(secret.encode(), b"dmp:source-digest:v1", hashlib.sha256).digest()


def make_source_digester() -> Callable[[str], str]:
    """Keyed BLAKE2b digest (32 hex characters) of source ids: event, order and device ids.

    Keyed, so a leaked table cannot be joined back to the source system's ids by hashing guesses.
    """
    key = _digest_key(settings.PSEUDONYM_KEY)
    blake2b = hashlib.blake2b

    def digest(value: str) -> str:
        return blake2b(value.encode("utf-8", "surrogatepass"), key=key, digest_size=16).hexdigest()

    return digest


def _identifier(value) -> str:
    """A raw identifier (consumer, event, order or device id) as text; errors never repeat it."""
    if value is None:
        raise _Bad("is required")
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        raise _Bad("must be a string or an integer")
    if not text:
        raise _Bad("is required")
    return text


def _consumer_pseudonym(value, pseudonymise: Callable[[str], str]) -> str:
    """The pseudonym of a raw consumer identifier; _Bad (never quoting the value) when it is not a usable one."""
    consumer = _identifier(value)
    if len(consumer) > MAX_ID_LENGTH:
        raise _Bad(f"is too long (at most {MAX_ID_LENGTH} characters)")
    try:
        return pseudonymise(consumer)
    except UnicodeEncodeError:  # a lone surrogate cannot be encoded for the keyed hash
        raise _Bad("is not valid Unicode text") from None


def _text(value, max_length: int, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise _Bad("is required")
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _Bad("must be a string")
    text = value.strip()
    if required and not text:
        raise _Bad("is required")
    if len(text) > max_length:
        raise _Bad(f"is too long (at most {max_length} characters)")
    if "\x00" in text:
        raise _Bad("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad("is not valid Unicode text") from None
    return text


def _money(value) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _Bad("must be a number")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad("must be a finite number")
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise _Bad("must be a decimal number") from None
    else:
        raise _Bad("must be a number")
    if not amount.is_finite():
        raise _Bad("must be a finite number")
    if amount < 0:
        raise _Bad("must not be negative")
    if amount > MAX_MONEY:
        raise _Bad(f"is too large (at most {MAX_MONEY})")
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _quantity(value) -> int:
    if value is None or value == "":
        return 1
    if isinstance(value, bool):
        raise _Bad("must be a whole number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise _Bad("must be a whole number")
    if number < 1:
        raise _Bad("must be at least 1 (send a cancel event for returns)")
    if number > MAX_QUANTITY:
        raise _Bad(f"is too large (at most {MAX_QUANTITY:,})")
    return number


def _moment(value, latest: datetime) -> datetime:
    """ISO 8601 text (or a datetime); no offset means UTC. Not before 1970, not more than a day ahead."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Bad("must be an ISO 8601 date-time, e.g. 2024-05-01T12:30:00Z") from None
    elif value is None or value == "":
        raise _Bad("is required")
    else:
        raise _Bad("must be an ISO 8601 date-time string")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    else:
        try:
            moment.utcoffset()
        except (OverflowError, ValueError):
            raise _Bad("has an invalid time zone offset") from None
    try:
        if moment < EARLIEST:
            raise _Bad("is before 1970")
        if moment > latest:
            raise _Bad("is in the future")
    except OverflowError:
        raise _Bad("is out of range") from None
    return moment


def age_range_for(age: int) -> str:
    """The age bucket tags and segments use; the age itself is never stored."""
    if age < 18:
        return AgeRange.UNDER_18
    if age < 25:
        return AgeRange.A18_24
    if age < 35:
        return AgeRange.A25_34
    if age < 45:
        return AgeRange.A35_44
    if age < 55:
        return AgeRange.A45_54
    if age < 65:
        return AgeRange.A55_64
    return AgeRange.A65_PLUS


def _age(value) -> int:
    if isinstance(value, bool):
        raise _Bad("must be a whole number of years")
    if isinstance(value, int):
        age = value
    elif isinstance(value, str) and value.strip().isdigit():
        age = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        age = int(value)
    else:
        raise _Bad("must be a whole number of years")
    if not 0 <= age <= 130:
        raise _Bad("must be between 0 and 130")
    return age


def _age_from_birth_date(value, today: date) -> int:
    if isinstance(value, datetime):
        born = value.date()
    elif isinstance(value, date):
        born = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            born = date.fromisoformat(text[:10]) if len(text) >= 10 else date.fromisoformat(text)
        except ValueError:
            raise _Bad("must be an ISO 8601 date, e.g. 1990-04-21") from None
    else:
        raise _Bad("must be an ISO 8601 date string")
    if born > today:
        raise _Bad("is in the future")
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if age > 130:
        raise _Bad("is more than 130 years ago")
    return age


def _batches(rows: Iterable, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _chunks(items: list, size: int = _SQL_CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _batch_size(requested: int | None) -> int:
    size = settings.INGEST_BATCH_SIZE if requested is None else requested
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    return size


def _on_postgres() -> bool:
    return connection.vendor == "postgresql"


# --------------------------------------------------------------------------- shared resolvers


class _Resolver:
    """Per-call caches of merchants, consumers and products, so each is looked up once per call."""

    def __init__(self) -> None:
        self.merchants: dict[str, int | None] = {}
        self.consumer_ids: dict[str, int] = {}

    def merchant_id(self, value) -> int:
        if value is None or value == "":
            raise _Bad("is required")
        if not isinstance(value, str):
            raise _Bad("must be a merchant slug (text)")
        found = self.merchants.get(value, 0)
        if found == 0:
            slug = value.strip()
            found = (
                Merchant.objects.filter(slug=slug).values_list("id", flat=True).first() if _SLUG.match(slug) else None
            )
            if len(self.merchants) < 10_000:
                self.merchants[value] = found
        if found is None:
            raise _Bad("no merchant has this slug")
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
        if _on_postgres():
            with connection.cursor() as cursor:
                for chunk in _chunks(missing, 10_000):
                    cursor.execute(
                        f"INSERT INTO {table} (pseudonym, age_range, country, gender, created_at, updated_at) "  # noqa: S608
                        "SELECT p, '', '', '', now(), now() FROM unnest(%s::text[]) AS p "
                        "ON CONFLICT (pseudonym) DO NOTHING RETURNING id, pseudonym",
                        [chunk],
                    )
                    inserted = cursor.fetchall()
                    created += len(inserted)
                    cache.update((p, i) for i, p in inserted)
                    rest = [p for p in chunk if p not in cache]
                    if rest:
                        cursor.execute(
                            f"SELECT id, pseudonym FROM {table} WHERE pseudonym = ANY(%s::text[])",  # noqa: S608
                            [rest],
                        )
                        cache.update((p, i) for i, p in cursor.fetchall())
        else:
            for chunk in _chunks(missing):
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
                for chunk in _chunks(new):
                    cache.update(
                        (p, i) for i, p in Consumer.objects.filter(pseudonym__in=chunk).values_list("id", "pseudonym")
                    )
        return created


# --------------------------------------------------------------------------- events


_EVENT_COLUMNS = (
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
_COPY_COLUMNS = ", ".join(_EVENT_COLUMNS)
_STAGE_TABLE = "consumers_event_stage"


@dataclass(slots=True)
class _EventRow:
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


def _category_path(value) -> str:
    path = _text(value, 300)
    if not path:
        return ""
    parts = [p.strip() for p in re.split(r"[/>]", path) if p.strip()]
    return "/".join(parts)


class _EventIngest:
    def __init__(self, *, actor: str, method: str, atomic: bool) -> None:
        self.actor = actor
        self.method = method
        self.atomic = atomic
        self.report = IngestReport(atomic=atomic)
        self.merchants = _Resolver()  # merchant lookups during validation, in the calling thread
        self.lock = threading.Lock()
        self.pseudonymise = make_pseudonymiser()
        self.digest = make_source_digester()
        self.latest = timezone.now() + FUTURE_TOLERANCE
        self.amounts: dict[str, Decimal | None] = {}

    # ---- validation: one pass, no per-row objects beyond the result, errors never quote values

    def validate(self, rows: list, first_row: int) -> list[_EventRow]:
        good: list[_EventRow] = []
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
                source_key = _identifier(get("event_id"))
                if len(source_key) > MAX_EVENT_ID_LENGTH:
                    raise _Bad(f"is too long (at most {MAX_EVENT_ID_LENGTH} characters)")
                source_key = digest(source_key)
            except _Bad as exc:
                bad.append(RowError(row_no, "event_id", str(exc)))
                source_key = ""

            try:
                pseudonym = _consumer_pseudonym(get("consumer_id"), pseudonymise)
            except _Bad as exc:
                bad.append(RowError(row_no, "consumer_id", str(exc)))
                pseudonym = ""

            try:
                merchant_id = merchant_id_of(get("merchant"))
            except _Bad as exc:
                bad.append(RowError(row_no, "merchant", str(exc)))
                merchant_id = 0

            sku = get("sku")
            if not (type(sku) is str and 0 < len(sku) <= 64 and sku.isprintable() and sku == sku.strip()):
                try:
                    sku = _text(sku, 64, required=True)
                except _Bad as exc:
                    bad.append(RowError(row_no, "sku", str(exc)))
                    sku = ""

            kind = get("event_type")
            event_type = event_types.get(kind) if type(kind) is str else None
            if event_type is None:
                event_type = event_types.get(kind.strip().lower()) if isinstance(kind, str) else None
                if event_type is None:
                    reason = "is required" if kind in (None, "") else "must be one of " + ", ".join(EVENT_TYPE_BY_NAME)
                    bad.append(RowError(row_no, "event_type", reason))

            occurred_at = get("occurred_at")
            try:
                # The common case inline (text with an offset, in range); anything else takes the long way.
                occurred_at = fromisoformat(occurred_at) if type(occurred_at) is str else None
            except ValueError:
                occurred_at = None
            if occurred_at is None or occurred_at.tzinfo is None or not earliest <= occurred_at <= latest:
                try:
                    occurred_at = _moment(get("occurred_at"), latest)
                except _Bad as exc:
                    bad.append(RowError(row_no, "occurred_at", str(exc)))
                    occurred_at = EARLIEST

            quantity = get("quantity", 1)
            if type(quantity) is not int or not 0 < quantity <= MAX_QUANTITY:
                try:
                    quantity = _quantity(quantity)
                except _Bad as exc:
                    bad.append(RowError(row_no, "quantity", str(exc)))

            # Catalogue prices repeat, so parsed amounts are cached by their text.
            price = get("price")
            amount = amounts.get(price) if type(price) is str else None
            if amount is None:
                try:
                    amount = _money(price)
                except _Bad as exc:
                    bad.append(RowError(row_no, "price", str(exc)))
                else:
                    if type(price) is str and len(amounts) < 100_000:
                        amounts[price] = amount
            price = amount
            discount = get("discount")
            amount = amounts.get(discount) if type(discount) is str else None
            if amount is None:
                try:
                    amount = _money(discount) or ZERO
                except _Bad as exc:
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
                    order_ref = digest("order:" + _identifier(order_id)[:MAX_EVENT_ID_LENGTH])
                except _Bad as exc:
                    bad.append(RowError(row_no, "order_id", str(exc)))
            device_id = get("device_id")
            if device_id is not None and device_id != "":
                try:
                    device = digest("device:" + _identifier(device_id)[:MAX_EVENT_ID_LENGTH])
                except _Bad as exc:
                    bad.append(RowError(row_no, "device_id", str(exc)))

            product = None
            title, category_path, brand = get("title"), get("category_path"), get("brand")
            if title is not None or category_path is not None or brand is not None:
                try:
                    title = _text(title, 300)
                except _Bad as exc:
                    bad.append(RowError(row_no, "title", str(exc)))
                try:
                    category_path = _category_path(category_path)
                except _Bad as exc:
                    bad.append(RowError(row_no, "category_path", str(exc)))
                try:
                    brand = _text(brand, 100)
                except _Bad as exc:
                    bad.append(RowError(row_no, "brand", str(exc)))
                product = (title, category_path, brand)

            if bad:
                errors.extend(bad)
                continue
            good.append(
                _EventRow(
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

    # ---- writing one batch (in the calling thread or a writer thread, each with its own caches)

    def write(self, good: list[_EventRow], state: _WriterState) -> None:
        if not good:
            return
        unique: dict[str, _EventRow] = {}
        for event in good:
            if event.source_key not in unique:
                unique[event.source_key] = event
        events = list(unique.values())
        try:
            self._write_batch(good, events, state)
        except IntegrityError:
            # A consumer or product cached from an earlier batch was deleted meanwhile (an erasure):
            # the foreign keys refused the batch. Forget the cached ids and try once more.
            state.reset()
            self._write_batch(good, events, state)

    def _write_batch(self, good: list[_EventRow], events: list[_EventRow], state: _WriterState) -> None:
        with transaction.atomic():
            consumers_created = state.resolver.consumers_ensure(e.pseudonym for e in events)
            products_created = state.products_ensure(events)
            write_events = self._write_copy if self.method == "copy" else self._write_bulk_create
            inserted = write_events(events, state)
            if _on_postgres():
                # Run the deferred foreign-key checks now, before the audit entry takes the
                # audit log's lock, so parallel writers do not queue behind each other's checks.
                with connection.cursor() as cursor:
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
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

    def _write_copy(self, events: list[_EventRow], state: _WriterState) -> int:
        """COPY the batch's new events straight into the event table; returns how many were written.

        One indexed lookup finds the source keys already stored (a re-send), and
        only the rest is copied, so the common case needs no staging table. A
        concurrent writer can still store one of those keys between the lookup
        and the COPY: the unique index then refuses the COPY, which is undone to
        its savepoint and redone through the staging table with ON CONFLICT.
        """
        table = Event._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT source_key FROM {table} WHERE source_key = ANY(%s)",  # noqa: S608
                [[e.source_key for e in events]],
            )
            stored = {key for (key,) in cursor.fetchall()}
            new = [e for e in events if e.source_key not in stored] if stored else events
            if not new:
                return 0
            text = self._copy_text(new, state)
            try:
                # A savepoint, so only the COPY is undone on a conflict; psycopg's errors as Django's.
                with (
                    transaction.atomic(),
                    connection.wrap_database_errors,
                    cursor.cursor.copy(f"COPY {table} ({_COPY_COLUMNS}) FROM STDIN") as copy,
                ):
                    copy.write(text)
                return len(new)
            except IntegrityError as exc:
                if not isinstance(exc.__cause__, UniqueViolation):
                    raise
            return self._write_staged(cursor, text)

    @staticmethod
    def _copy_text(events: list[_EventRow], state: _WriterState) -> str:
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
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE_TABLE} ("
            "source_key varchar(32), consumer_id bigint, merchant_id bigint, product_id bigint, "
            "event_type smallint, occurred_at timestamptz, quantity integer, price numeric(12, 2), "
            "discount numeric(12, 2), order_ref varchar(32), device varchar(32))"
        )
        cursor.execute(f"TRUNCATE {_STAGE_TABLE}")
        with (
            connection.wrap_database_errors,
            cursor.cursor.copy(f"COPY {_STAGE_TABLE} ({_COPY_COLUMNS}) FROM STDIN") as copy,
        ):
            copy.write(text)
        cursor.execute(
            f"INSERT INTO {Event._meta.db_table} ({_COPY_COLUMNS}) "  # noqa: S608
            f"SELECT {_COPY_COLUMNS} FROM {_STAGE_TABLE} ON CONFLICT (source_key) DO NOTHING"
        )
        inserted = cursor.rowcount
        cursor.execute(f"TRUNCATE {_STAGE_TABLE}")
        return inserted

    def _write_bulk_create(self, events: list[_EventRow], state: _WriterState) -> int:
        keys = [e.source_key for e in events]
        already: set[str] = set()
        for chunk in _chunks(keys):
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

    # ---- the whole call

    def run(self, rows: Iterable, batch_size: int, writers: int) -> IngestReport:
        report = self.report
        if self.atomic:
            state = _WriterState()
            try:
                with transaction.atomic():
                    for good in self._validated(rows, batch_size):
                        if not report.rejected:
                            self.write(good, state)
                    if report.rejected:
                        raise _RollBack
            except _RollBack:
                report.rolled_back = True
                report.accepted = report.duplicates = report.consumers_created = report.products_created = 0
        elif (
            writers > 1
            and _on_postgres()
            and not connection.in_atomic_block
            and not (isinstance(rows, Sized) and len(rows) <= batch_size)  # one batch: nothing to overlap
        ):
            self._run_parallel(rows, batch_size, writers)
        else:
            state = _WriterState()
            for good in self._validated(rows, batch_size):
                self.write(good, state)
        return report

    def _validated(self, rows: Iterable, batch_size: int) -> Iterator[list[_EventRow]]:
        report = self.report
        for chunk in _batches(rows, batch_size):
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
        work: queue.Queue[list[_EventRow] | None] = queue.Queue(maxsize=writers)
        failures: list[BaseException] = []

        def writer() -> None:
            state = _WriterState()
            try:
                while (good := work.get()) is not None:
                    if not failures:
                        try:
                            self.write(good, state)
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


class _WriterState:
    """What one writer (thread) knows: consumer and product ids it has itself seen committed or created."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.resolver = _Resolver()
        self.products: dict[tuple[int, str], int] = {}
        self.product_attrs: dict[tuple[int, str], tuple[str, str, str]] = {}

    def products_ensure(self, events: list[_EventRow]) -> int:
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
            for chunk in _chunks(keys, 1000):
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
        for chunk in _chunks(keys, 500):
            where = " OR ".join(["(merchant_id = %s AND sku = %s)"] * len(chunk))
            cursor.execute(
                f"SELECT id, merchant_id, sku FROM {Product._meta.db_table} WHERE {where}",  # noqa: S608
                [value for key in chunk for value in key],
            )
            found.update(((merchant_id, sku), pk) for pk, merchant_id, sku in cursor.fetchall())
        return found


_PRODUCT_ATTRS = ("title", "category_path", "brand")


def events_ingest(
    *,
    rows: Iterable[dict],
    actor: str,
    batch_size: int | None = None,
    atomic: bool = False,
    method: str | None = None,
    writers: int | None = None,
) -> IngestReport:
    """Validate and write behaviour events; see the module docstring and docs/ingestion.md.

    method: "copy" (PostgreSQL only; the default there) or "bulk_create" (the default elsewhere).
    writers: batches written in parallel on PostgreSQL (each on its own connection) while the
    next batch is validated; 1 writes in the calling thread. Atomic calls and calls made inside
    a transaction always write in the calling thread.
    """
    if method is None:
        method = "copy" if _on_postgres() else "bulk_create"
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    if method == "copy" and not _on_postgres():
        raise ValueError("the copy method needs PostgreSQL")
    size = _batch_size(batch_size)
    writer_count = writers if writers is not None else settings.INGEST_WRITERS
    started = time.perf_counter()
    report = _EventIngest(actor=actor, method=method, atomic=atomic).run(rows, size, max(1, writer_count))
    _log("ingest.events", report, started, method=method)
    return report


def _log(event: str, report: IngestReport, started: float, **extra) -> None:
    elapsed = time.perf_counter() - started
    logger.info(
        event,
        extra={
            "fields": {
                "received": report.received,
                "accepted": report.accepted,
                "duplicates": report.duplicates,
                "rejected_rows": report.rejected_rows,
                "consumers_created": report.consumers_created,
                "products_created": report.products_created,
                "rolled_back": report.rolled_back,
                "seconds": round(elapsed, 3),
                **extra,
            }
        },
    )


# --------------------------------------------------------------------------- profiles


def _gender(value) -> str:
    if not isinstance(value, str):
        raise _Bad("must be text: f, m or x")
    found = GENDERS.get(value.strip().lower())
    if found is None:
        raise _Bad("must be one of f (female), m (male), x (other)")
    return found


def _country(row: dict) -> str:
    """Country from `country` (code or name) or else `address`; '' when neither is given."""
    country = row.get("country")
    if country not in (None, ""):
        if not isinstance(country, str):
            raise _Bad("must be a country code or name (text)")
        code = country_code(country)
        if code is None:
            raise _Bad("is not a recognised country code or name")
        return code
    address = row.get("address")
    if address not in (None, ""):
        if not isinstance(address, str):
            raise _Bad("must be text")
        code = country_from_address(address)
        if code is None:
            raise _Bad("names no recognisable country (put the country on the last line)")
        return code
    return ""


@dataclass(slots=True)
class _ProfileRow:
    pseudonym: str
    age_range: str
    country: str
    gender: str


def _profiles_validate(
    rows: list, first_row: int, errors: list[RowError], pseudonymise: Callable[[str], str], today: date
) -> list[_ProfileRow]:
    good = []
    for offset, raw in enumerate(rows):
        row_no = first_row + offset
        if not isinstance(raw, dict):
            errors.append(RowError(row_no, "", "row must be an object with the profile's fields"))
            continue
        bad = []
        pseudonym = age_range = country = gender = ""
        try:
            pseudonym = _consumer_pseudonym(raw.get("consumer_id"), pseudonymise)
        except _Bad as exc:
            bad.append(RowError(row_no, "consumer_id", str(exc)))
        birth_date, age = raw.get("birth_date"), raw.get("age")
        if birth_date not in (None, ""):
            try:
                age_range = age_range_for(_age_from_birth_date(birth_date, today))
            except _Bad as exc:
                bad.append(RowError(row_no, "birth_date", str(exc)))
        elif age not in (None, ""):
            try:
                age_range = age_range_for(_age(age))
            except _Bad as exc:
                bad.append(RowError(row_no, "age", str(exc)))
        try:
            country = _country(raw)
        except _Bad as exc:
            bad.append(RowError(row_no, "country" if raw.get("country") not in (None, "") else "address", str(exc)))
        if raw.get("gender") not in (None, ""):
            try:
                gender = _gender(raw.get("gender"))
            except _Bad as exc:
                bad.append(RowError(row_no, "gender", str(exc)))
        if bad:
            errors.extend(bad)
            continue
        good.append(_ProfileRow(pseudonym, age_range, country, gender))
    return good


def _profiles_write(profiles: list[_ProfileRow]) -> tuple[int, int]:
    """Upsert consumers with their attributes; an attribute a row leaves out keeps its stored value."""
    merged: dict[str, _ProfileRow] = {}
    for p in profiles:
        seen = merged.get(p.pseudonym)
        if seen is None:
            merged[p.pseudonym] = _ProfileRow(p.pseudonym, p.age_range, p.country, p.gender)
        else:
            seen.age_range = p.age_range or seen.age_range
            seen.country = p.country or seen.country
            seen.gender = p.gender or seen.gender
    pseudonyms = sorted(merged)
    existing: set[str] = set()
    for chunk in _chunks(pseudonyms):
        existing.update(Consumer.objects.filter(pseudonym__in=chunk).values_list("pseudonym", flat=True))
    table = Consumer._meta.db_table
    now = timezone.now()
    keep = "CASE WHEN excluded.{0} <> '' THEN excluded.{0} ELSE " + table + ".{0} END"
    with connection.cursor() as cursor:
        for chunk in _chunks(pseudonyms, 1000):
            values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
            params: list = []
            for pseudonym in chunk:
                p = merged[pseudonym]
                params.extend((pseudonym, p.age_range, p.country, p.gender, now, now))
            cursor.execute(
                f"INSERT INTO {table} (pseudonym, age_range, country, gender, created_at, updated_at) "  # noqa: S608
                f"VALUES {values} ON CONFLICT (pseudonym) DO UPDATE SET "
                f"age_range = {keep.format('age_range')}, country = {keep.format('country')}, "
                f"gender = {keep.format('gender')}, updated_at = excluded.updated_at",
                params,
            )
    return len(pseudonyms) - len(existing), len(existing)


def profiles_ingest(
    *, rows: Iterable[dict], actor: str, batch_size: int | None = None, atomic: bool = False
) -> IngestReport:
    """Consumer attributes: age (or birth date) as an age range, country (or address) as ISO alpha-2, gender.

    Only the derived values are stored; the age, birth date and address are dropped at once.
    """
    started = time.perf_counter()
    report = IngestReport(atomic=atomic)
    pseudonymise = make_pseudonymiser()
    today = timezone.now().date()
    size = _batch_size(batch_size)
    next_row = 1

    def write(good: list[_ProfileRow]) -> None:
        if not good:
            return
        with transaction.atomic():
            created, updated = _profiles_write(good)
            audit_record(
                actor=actor,
                action="ingest.profiles",
                object_type="Consumer",
                counts={"rows": len(good), "consumers_created": created, "consumers_updated": updated},
            )
        report.accepted += len(good)
        report.consumers_created += created

    try:
        with transaction.atomic() if atomic else nullcontext():
            for chunk in _batches(rows, size):
                good = _profiles_validate(chunk, next_row, report.rejected, pseudonymise, today)
                next_row += len(chunk)
                report.valid += len(good)
                if not (atomic and report.rejected):
                    write(good)
            if atomic and report.rejected:
                raise _RollBack
    except _RollBack:
        report.rolled_back = True
        report.accepted = report.consumers_created = 0
    report.received = next_row - 1
    _log("ingest.profiles", report, started)
    return report


# --------------------------------------------------------------------------- consents


@dataclass(slots=True)
class _ConsentRow:
    pseudonym: str
    purpose: str
    status: str
    kind: str
    source: str
    occurred_at: datetime


def _choice(value, choices: Iterable[str], default: str | None = None) -> str:
    allowed = list(choices)
    if value is None or value == "":
        if default is not None:
            return default
        raise _Bad("is required (one of " + ", ".join(allowed) + ")")
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise _Bad("must be one of " + ", ".join(allowed))
    return value.strip().lower()


def _consents_validate(
    rows: list, first_row: int, errors: list[RowError], pseudonymise: Callable[[str], str], latest: datetime
) -> list[_ConsentRow]:
    good = []
    for offset, raw in enumerate(rows):
        row_no = first_row + offset
        if not isinstance(raw, dict):
            errors.append(RowError(row_no, "", "row must be an object with the consent's fields"))
            continue
        bad = []
        values: dict = {}
        try:
            values["pseudonym"] = _consumer_pseudonym(raw.get("consumer_id"), pseudonymise)
        except _Bad as exc:
            bad.append(RowError(row_no, "consumer_id", str(exc)))
        checks = (
            ("purpose", lambda v: _choice(v, Purpose.values)),
            ("status", lambda v: _choice(v, ConsentStatus.values)),
            ("kind", lambda v: _choice(v, ConsentKind.values, default=ConsentKind.EXPRESS)),
            ("source", lambda v: _text(v, 100, required=True)),
            ("occurred_at", lambda v: _moment(v, latest)),
        )
        for name, check in checks:
            try:
                values[name] = check(raw.get(name))
            except _Bad as exc:
                bad.append(RowError(row_no, name, str(exc)))
        if bad:
            errors.extend(bad)
            continue
        good.append(_ConsentRow(**values))
    return good


_CONSENT_RECORD_CHUNK = 1000


def _consents_not_yet_recorded(changes: list[ConsentChange]) -> list[ConsentChange]:
    """Drop decisions the ledger already holds (same consumer, purpose, status, kind, source and time).

    The ledger is append-only and has no natural key, so a re-sent batch is
    recognised here: it records nothing twice.
    """
    if not changes:
        return []
    recorded: set[ConsentChange] = set()
    consumer_ids = sorted({c.consumer_id for c in changes})
    for chunk in _chunks(consumer_ids):
        for values in ConsentRecord.objects.filter(consumer_id__in=chunk).values_list(
            "consumer_id", "purpose", "status", "kind", "source", "occurred_at"
        ):
            recorded.add(ConsentChange(*values))
    return [c for c in changes if c not in recorded]


def consents_ingest(
    *, rows: Iterable[dict], actor: str, batch_size: int | None = None, atomic: bool = False
) -> IngestReport:
    """Consent events (granted or withdrawn, express or deemed) into the consent ledger.

    Unknown consumers are created (known by pseudonym only). The ledger keeps
    every event; the current state follows the latest by occurred_at, so a
    withdrawal takes effect before the next campaign send.
    """
    started = time.perf_counter()
    report = IngestReport(atomic=atomic)
    pseudonymise = make_pseudonymiser()
    latest = timezone.now() + FUTURE_TOLERANCE
    resolver = _Resolver()
    size = _batch_size(batch_size)
    next_row = 1

    def write(good: list[_ConsentRow]) -> None:
        if not good:
            return
        with transaction.atomic():
            created = resolver.consumers_ensure(c.pseudonym for c in good)
            ids = resolver.consumer_ids
            changes = list(
                dict.fromkeys(
                    ConsentChange(
                        consumer_id=ids[c.pseudonym],
                        purpose=c.purpose,
                        status=c.status,
                        kind=c.kind,
                        source=c.source,
                        occurred_at=c.occurred_at,
                    )
                    for c in good
                )
            )
            new = _consents_not_yet_recorded(changes)
            # Sub-batches keep the ledger's state update (one UPDATE ... CASE per call) small.
            for chunk in _chunks(new, _CONSENT_RECORD_CHUNK):
                consents_record(changes=chunk, actor=actor)
        report.accepted += len(new)
        report.duplicates += len(good) - len(new)
        report.consumers_created += created

    try:
        with transaction.atomic() if atomic else nullcontext():
            for chunk in _batches(rows, size):
                good = _consents_validate(chunk, next_row, report.rejected, pseudonymise, latest)
                next_row += len(chunk)
                report.valid += len(good)
                if not (atomic and report.rejected):
                    write(good)
            if atomic and report.rejected:
                raise _RollBack
    except _RollBack:
        report.rolled_back = True
        report.accepted = report.duplicates = report.consumers_created = 0
    report.received = next_row - 1
    _log("ingest.consents", report, started)
    return report


# --------------------------------------------------------------------------- retention


@dataclass(frozen=True)
class PurgeRound:
    """What one round of an event purge did, and what should follow it once it commits."""

    cutoff: datetime
    round_number: int
    deleted: int  # this round
    total: int  # this run so far
    more: bool  # events past the cutoff remain
    requeue: bool  # another round of this run should follow
    retag: bool  # the run is over and deleted something: the event-derived tags need recomputing


def events_purge_batch(*, cutoff: datetime, batch_size: int) -> int:
    """Delete up to batch_size events older than cutoff, oldest ids first. Returns how many went."""
    ids = list(Event.objects.filter(occurred_at__lt=cutoff).order_by("pk").values_list("pk", flat=True)[:batch_size])
    if not ids:
        return 0
    deleted, _ = Event.objects.filter(pk__in=ids).delete()
    return deleted


def events_purge_expired_run(
    *,
    cutoff: datetime,
    round_number: int,
    deleted_before: int,
    batch_size: int,
    batches_per_task: int,
    max_rounds: int,
    actor: str,
) -> PurgeRound:
    """One round of a retention purge: at most `batches_per_task` batches and its audit entry, in one transaction.

    Says whether another round should follow (more to delete and fewer than `max_rounds` so far) or, when the
    run ends having deleted something, that the event-derived tags need recomputing; the caller acts on that
    after commit.
    """
    deleted = 0
    more = True
    with transaction.atomic():
        for _ in range(batches_per_task):
            n = events_purge_batch(cutoff=cutoff, batch_size=batch_size)
            deleted += n
            if n < batch_size:
                more = False
                break
        total = deleted_before + deleted
        requeue = more and round_number + 1 < max_rounds
        audit_record(
            actor=actor,
            action="retention.events_purged",
            object_type="Event",
            counts={"deleted": deleted, "deleted_this_run": total},
            details={
                "cutoff": cutoff.isoformat(),
                "retention_days": settings.EVENT_RETENTION_DAYS,
                "round": round_number,
                "batch_size": batch_size,
                "more_to_delete": more,
                "hard_limit_reached": more and not requeue,
            },
        )
    return PurgeRound(
        cutoff=cutoff,
        round_number=round_number,
        deleted=deleted,
        total=total,
        more=more,
        requeue=requeue,
        retag=not requeue and total > 0,
    )
